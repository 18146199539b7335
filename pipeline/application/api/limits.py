"""Limits of the API: request body size (413), per-identity request rate (429), the size of
what a request writes (400).

The rate limit is a token bucket per identity; ``take`` is pure (time is an argument) and
``RateLimiter`` only keeps the buckets. The other limits are pure checks returning the
message to answer with (Alertmanager's wording where it has one, else one naming the
``limits.`` setting), or ``None``. They are checked once, here, for every request that
writes (pushes, silences, acknowledgements); identifiers (organisations, fingerprints, ids)
are checked by ``contracts.ids``.

Defaults (0 means unlimited)::

    limits:
      max_body_bytes: 8388608          # 413 beyond (Alertmanager: none)
      rate: 0                          # requests per second per identity (0: unlimited)
      burst: 0                         # bucket size (0: the rate rounded up)
      max_silences: 0                  # per organisation, as Alertmanager's --silences.max-silences
      max_silence_matchers: 100
      max_silence_bytes: 262144        # as --silences.max-silence-size-bytes
      max_silence_regex_length: 16384  # characters of one regex matcher
      max_label_name_length: 1024      # characters, pushed alerts
      max_label_value_length: 16384
      max_labels_per_alert: 128
      max_annotation_bytes: 32768      # UTF-8 bytes of an alert's annotation names and values
      max_alert_bytes: 65536           # an alert as the API publishes it (JSON)
      max_alerts_per_push: 0           # Alertmanager: none
      max_ack_comment_length: 4096
      auth_failure_rate: 10            # failed authentications per second per client address, then 429
      auth_failure_burst: 20

Why these defaults: Alertmanager has none but the silence ones, and a limit that refuses
real alerts is worse than none; but every pushed alert becomes NATS messages (the push, the
rules state, a router group that inlines up to 8 alerts, each flush), and nats-server refuses
a message over ``max_payload`` (1 MiB by default). ``max_alert_bytes`` keeps one alert at
1/16 of that, so the eight a group head inlines still fit in half of it; a 16 KiB label
value is far beyond any real one (Prometheus' own are a few hundred bytes), and 128 labels
more than any rule adds. Silences get the same kind of bound: 100 matchers and 256 KiB, as
the filter keeps each silence in one message and matches every alert against them. The
push itself is split by the API into messages of at most 200 alerts and half the server's
``max_payload`` (``pipeline.application.api.push.split_push``), so the number of alerts per push is
unlimited, as in Alertmanager, bounded only by ``max_body_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from pipeline.application.api.auth_errors import ApiError
from pipeline.foundation.amconfig.model import Node, Problem

__all__ = [
    "DEFAULT_MAX_ALERT_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "Bucket",
    "LimitsConfig",
    "RateLimited",
    "RateLimiter",
    "TooLarge",
    "check_ack_comment",
    "check_alert",
    "check_alert_bytes",
    "check_push_count",
    "check_silence",
    "check_silence_count",
    "check_silence_matchers",
    "check_silence_regex",
    "check_silence_size",
    "read_body",
    "retry_after_header",
    "take",
]

DEFAULT_MAX_BODY_BYTES: Final = 8 << 20  # far above any real Alertmanager client's batch
DEFAULT_MAX_SILENCE_MATCHERS: Final = 100
DEFAULT_MAX_SILENCE_BYTES: Final = 256 << 10
DEFAULT_MAX_REGEX_LENGTH: Final = 16 << 10  # ~1,000 host names in one alternation
DEFAULT_MAX_LABEL_NAME_LENGTH: Final = 1024  # as Mimir's max_label_name_length
DEFAULT_MAX_LABEL_VALUE_LENGTH: Final = 16 << 10
DEFAULT_MAX_LABELS: Final = 128
DEFAULT_MAX_ANNOTATION_BYTES: Final = 32 << 10
DEFAULT_MAX_ALERT_BYTES: Final = 64 << 10  # 1/16 of NATS' default max_payload (1 MiB)
DEFAULT_MAX_ACK_COMMENT_LENGTH: Final = 4096
_MAX_BUCKETS: Final = 10_000  # beyond this, idle (full) buckets are dropped

Message = MutableMapping[str, Any]


class LimitsConfig(Node, frozen=True, forbid_unknown_fields=True):
    """Zero means unlimited everywhere; the defaults and why: the module's docstring."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate: float = 0.0
    burst: int = 0
    max_silences: int = 0
    max_silence_matchers: int = DEFAULT_MAX_SILENCE_MATCHERS
    max_silence_bytes: int = DEFAULT_MAX_SILENCE_BYTES
    max_silence_regex_length: int = DEFAULT_MAX_REGEX_LENGTH
    max_label_name_length: int = DEFAULT_MAX_LABEL_NAME_LENGTH
    max_label_value_length: int = DEFAULT_MAX_LABEL_VALUE_LENGTH
    max_labels_per_alert: int = DEFAULT_MAX_LABELS
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES
    max_alert_bytes: int = DEFAULT_MAX_ALERT_BYTES
    max_alerts_per_push: int = 0
    max_ack_comment_length: int = DEFAULT_MAX_ACK_COMMENT_LENGTH
    # failed authentications per second per client address, then 429 (0: unlimited); burst = bucket
    auth_failure_rate: float = 10.0
    auth_failure_burst: int = 20

    @property
    def bucket_size(self) -> float:
        return float(self.burst) if self.burst > 0 else float(max(1, math.ceil(self.rate)))

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for name in (
            "max_body_bytes",
            "rate",
            "burst",
            "max_silences",
            "max_silence_matchers",
            "max_silence_bytes",
            "max_silence_regex_length",
            "max_label_name_length",
            "max_label_value_length",
            "max_labels_per_alert",
            "max_annotation_bytes",
            "max_alert_bytes",
            "max_alerts_per_push",
            "max_ack_comment_length",
            "auth_failure_rate",
            "auth_failure_burst",
        ):
            if getattr(self, name) < 0:
                problems.append((name, "must not be negative (0: unlimited)"))
        if self.burst > 0 and self.rate == 0:
            problems.append(("burst", "a burst needs a rate"))
        return self, problems


class TooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    status = 429

    def __init__(self, subject: str, retry_after: float) -> None:
        super().__init__(
            f"rate limit exceeded for {subject}: retry in {retry_after_header(retry_after)}s",
            {"Retry-After": retry_after_header(retry_after)},
        )
        self.retry_after = retry_after


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up and at least 1 (``Retry-After: 0`` invites an immediate retry)."""
    return str(max(1, math.ceil(seconds)))


# --------------------------------------------------------------------------- rate


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: float


def take(
    bucket: Bucket | None, now: float, rate: float, size: float, cost: float = 1.0
) -> tuple[Bucket, float]:
    """Spend ``cost`` tokens at ``now``: the new bucket and 0, or the unchanged level and the
    seconds until enough tokens are there. A new bucket starts full; a clock going
    backwards refills nothing.
    """
    if bucket is None:
        bucket = Bucket(size, now)
    at = max(now, bucket.at)
    tokens = min(size, bucket.tokens + (at - bucket.at) * rate)
    if tokens >= cost:
        return Bucket(tokens - cost, at), 0.0
    return Bucket(tokens, at), (cost - tokens) / rate if rate > 0 else math.inf


class RateLimiter:
    """A token bucket per key (the identity's subject)."""

    def __init__(self, rate: float, size: float, *, max_buckets: int = _MAX_BUCKETS) -> None:
        if rate <= 0 or size < 1:
            raise ValueError("a rate limiter needs a positive rate and a bucket of at least 1")
        self.rate = rate
        self.size = size
        self.max_buckets = max_buckets
        self._buckets: dict[str, Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str, now: float) -> float:
        """0 when the request may go ahead (and is counted), else seconds to wait."""
        bucket, wait = take(self._buckets.get(key), now, self.rate, self.size)
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_buckets:
            self._sweep(now)
        return wait

    def _sweep(self, now: float) -> None:
        full_after = self.size / self.rate  # a bucket idle this long is full: same as a new one
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}


# --------------------------------------------------------------------------- body


async def read_body(receive: Callable[[], Awaitable[Message]], limit: int) -> list[Message]:
    """Read a request body's ASGI messages, raising ``TooLarge`` as soon as it passes ``limit``.

    Returns the messages (to replay to the application). A disconnect ends the reading.
    """
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            return messages


# --------------------------------------------------------------------------- silences


def check_silence_count(existing: int, limit: int) -> str | None:
    """A new silence in an organisation holding ``existing`` silences (replacing one counts
    as new, updating one in place does not, as in Alertmanager)."""
    if limit > 0 and existing + 1 > limit:
        return f"exceeded maximum number of silences: {existing} (limit: {limit})"
    return None


def check_silence_matchers(count: int, limit: int) -> str | None:
    if limit > 0 and count > limit:
        return f"silence has too many matchers: {count} (limit: {limit}, limits.max_silence_matchers)"
    return None


def check_silence_size(size: int, limit: int) -> str | None:
    """``size``: the silence's encoded size in bytes."""
    if limit > 0 and size > limit:
        return f"silence exceeded maximum size: {size} bytes (limit: {limit} bytes)"
    return None


def check_silence_regex(length: int, limit: int, index: int = 0) -> str | None:
    """``length``: characters of the regex of matcher ``index``."""
    if limit > 0 and length > limit:
        return (f"silence matcher {index} has a regex of {length} characters, more than "
                f"limits.max_silence_regex_length ({limit})")
    return None


def check_silence(
    limits: LimitsConfig, *, existing: int, matchers: int, size: int, new: bool = True,
    regex_lengths: Sequence[int] = (),
) -> str | None:
    """The first limit a silence breaks, or ``None``. ``new``: it adds a silence (not an
    in-place update), so the per-organisation count applies. ``regex_lengths``: the length
    of each matcher's value that is a regex (0 for the others), in matcher order."""
    return (
        check_silence_matchers(matchers, limits.max_silence_matchers)
        or next((p for i, n in enumerate(regex_lengths)
                 if (p := check_silence_regex(n, limits.max_silence_regex_length, i))), None)
        or check_silence_size(size, limits.max_silence_bytes)
        or (check_silence_count(existing, limits.max_silences) if new else None)
    )


# --------------------------------------------------------------------------- pushes and acks


def _shown(text: str, keep: int = 64) -> str:
    """``text`` quoted, cut to ``keep`` characters: an error never echoes a huge value back."""
    return repr(text if len(text) <= keep else text[:keep] + "...")


def check_push_count(count: int, limits: LimitsConfig) -> str | None:
    limit = limits.max_alerts_per_push
    if limit > 0 and count > limit:
        return f"request holds {count} alerts, more than limits.max_alerts_per_push ({limit})"
    return None


def check_alert(limits: LimitsConfig, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    """The first limit a pushed alert's labels or annotations break, or ``None``."""
    if 0 < limits.max_labels_per_alert < len(labels):
        return f"alert has {len(labels)} labels, more than limits.max_labels_per_alert ({limits.max_labels_per_alert})"
    name_limit, value_limit = limits.max_label_name_length, limits.max_label_value_length
    for name, value in labels.items():
        if 0 < name_limit < len(name):
            return (f"label name {_shown(name)} is {len(name)} characters, more than "
                    f"limits.max_label_name_length ({name_limit})")
        if 0 < value_limit < len(value):
            return (f"value of label {_shown(name)} is {len(value)} characters, more than "
                    f"limits.max_label_value_length ({value_limit})")
    limit = limits.max_annotation_bytes
    if limit > 0:
        size = sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
                   for k, v in annotations.items())
        if size > limit:
            return f"annotations are {size} bytes, more than limits.max_annotation_bytes ({limit})"
    return None


def check_alert_bytes(size: int, limits: LimitsConfig) -> str | None:
    """``size``: the alert's bytes as the API publishes it."""
    limit = limits.max_alert_bytes
    if limit > 0 and size > limit:
        return f"alert is {size} bytes encoded, more than limits.max_alert_bytes ({limit})"
    return None


def check_ack_comment(comment: str, limits: LimitsConfig) -> str | None:
    limit = limits.max_ack_comment_length
    if limit > 0 and len(comment) > limit:
        return f"comment is {len(comment)} characters, more than limits.max_ack_comment_length ({limit})"
    return None
