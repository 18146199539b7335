"""How an attempt ended, whether a failed send is worth retrying, why it failed, and how long to wait (pure).

The reason labels are Alertmanager's (``notify.Reason``), as on its
``alertmanager_notifications_failed_total{reason=...}``: ``clientError``, ``serverError``,
``authError`` (401, 403), ``rateLimited`` (429), ``contextDeadlineExceeded`` (timeout),
``contextCanceled`` and ``other``. Retrying follows Alertmanager's retrier: 5xx retries,
other non-2xx does not, plus 408 and 429, which say "later" by definition, and any codes
an integration adds (PagerDuty's v1 API asks for retries on 403).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal, NamedTuple

__all__ = [
    "OK",
    "Outcome",
    "Reason",
    "TransportError",
    "Verdict",
    "backoff",
    "classify_smtp",
    "classify_status",
    "classify_transport",
    "is_success",
    "next_delay",
    "parse_retry_after",
    "permanent",
    "transport_outcome",
]

Reason = Literal[
    "", "clientError", "serverError", "authError", "rateLimited", "contextDeadlineExceeded", "contextCanceled", "other"
]
TransportError = Literal["timeout", "connect", "network", "tls", "canceled"]

_ALWAYS_RETRY = frozenset({408, 429})
_SMTP_AUTH = frozenset({530, 534, 535, 538})


class Verdict(NamedTuple):
    """The outcome of one attempt: ``ok``, else whether to retry and the failure reason."""

    ok: bool
    retryable: bool
    reason: Reason


_OK = Verdict(ok=True, retryable=False, reason="")


class Outcome(NamedTuple):
    """How one attempt ended. ``error`` is safe to log and store (no secrets)."""

    verdict: Verdict
    error: str = ""
    status: int = 0
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok


OK = Outcome(_OK)


def permanent(error: str) -> Outcome:
    """A failure not worth retrying (a configuration or request that cannot work)."""
    return Outcome(Verdict(ok=False, retryable=False, reason="other"), error)


def transport_outcome(kind: TransportError, error: str) -> Outcome:
    """A request that got no response (see :func:`classify_transport`)."""
    return Outcome(classify_transport(kind), error)


def is_success(status: int) -> bool:
    return 200 <= status < 300


def _status_reason(status: int) -> Reason:
    if status in (401, 403):
        return "authError"
    if status == 429:
        return "rateLimited"
    if 400 <= status < 500:
        return "clientError"
    if 500 <= status < 600:
        return "serverError"
    return "other"


def classify_status(status: int, *, retry_codes: Collection[int] = ()) -> Verdict:
    """The verdict on an HTTP response status (2xx is success)."""
    if is_success(status):
        return _OK
    retryable = 500 <= status < 600 or status in _ALWAYS_RETRY or status in retry_codes
    return Verdict(ok=False, retryable=retryable, reason=_status_reason(status))


def classify_transport(kind: TransportError) -> Verdict:
    """The verdict on a request that got no response.

    Alertmanager retries every failed request that did not get a response, so do we: the
    request may not have reached the receiver. Only a cancellation (shutdown) is final.
    """
    if kind == "canceled":
        return Verdict(ok=False, retryable=False, reason="contextCanceled")
    if kind == "timeout":
        return Verdict(ok=False, retryable=True, reason="contextDeadlineExceeded")
    return Verdict(ok=False, retryable=True, reason="other")


def classify_smtp(code: int) -> Verdict:
    """The verdict on an SMTP reply code: 4xx is transient, 5xx permanent (RFC 5321)."""
    if 200 <= code < 400:
        return _OK
    if 400 <= code < 500:
        return Verdict(ok=False, retryable=True, reason="serverError")
    if code in _SMTP_AUTH:
        return Verdict(ok=False, retryable=False, reason="authError")
    if 500 <= code < 600:
        return Verdict(ok=False, retryable=False, reason="clientError")
    return Verdict(ok=False, retryable=True, reason="other")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds from ``now`` (Unix seconds).

    Delay-seconds or an HTTP date (a date without a zone is taken as GMT, a past date is
    0). ``None`` when the header is absent or malformed.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with full jitter: ``rand * min(cap, base * 2**attempt)``.

    ``attempt`` counts from 0 (the wait after the first failure); ``rand`` in [0, 1] is
    the caller's random draw, so the function is pure and testable.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not (0 <= base < math.inf and 0 <= cap < math.inf):
        raise ValueError("base and cap must be finite and >= 0")
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must be in [0, 1]")
    try:
        raw = math.ldexp(base, attempt)  # base * 2**attempt, exact in binary
    except OverflowError:
        raw = math.inf  # past any finite cap
    ceiling = min(cap, raw)
    return rand * ceiling


def next_delay(
    attempt: int, *, base: float, cap: float, rand: float, retry_after: float | None = None, max_retry_after: float
) -> float:
    """The wait before the next attempt: the receiver's ``Retry-After`` when it gave one
    (at most ``max_retry_after``), else :func:`backoff`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_retry_after)
    return backoff(attempt, base, cap, rand)
