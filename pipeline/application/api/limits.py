"""Limits of the API: request body size (413), per-identity request rate (429), the size of
what a request writes (400). The settings, their defaults and why are
``pipeline.application.config.limits``.

The rate limit is a token bucket per identity; ``take`` is pure (time is an argument) and
``RateLimiter`` only keeps the buckets. The other limits are pure checks returning the
message to answer with (Alertmanager's wording where it has one, else one naming the
``limits.`` setting), or ``None``. They are checked once, here, for every request that
writes (pushes, silences, acknowledgements); identifiers (organisations, fingerprints, ids)
are checked by ``contracts.ids``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipeline.application.api.auth.errors import ApiError
from pipeline.application.config.limits import LimitsConfig

__all__ = [
    "Bucket",
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

_MAX_BUCKETS: Final = 10_000  # beyond this, idle (full) buckets are dropped

Message = MutableMapping[str, Any]


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
