"""Limits of the API: request body size (413), per-identity request rate (429), silence size.

The rate limit is a token bucket per identity; ``take`` is pure (time is an argument) and
``RateLimiter`` only keeps the buckets. Silence limits are pure checks returning the
message to answer with (Alertmanager's wording where it has one), or ``None``.

::

    limits:
      max_body_bytes: 8388608   # 0: unlimited
      rate: 20                  # requests per second per identity (0: unlimited)
      burst: 100                # bucket size (0: the rate rounded up)
      max_silences: 1000        # per organisation, as Alertmanager's --silences.max-silences
      max_silence_matchers: 50
      max_silence_bytes: 10240  # as --silences.max-silence-size-bytes
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, Self

from pipeline.amconfig.model import Node, Problem
from pipeline.api.auth_errors import ApiError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Bucket",
    "LimitsConfig",
    "RateLimited",
    "RateLimiter",
    "TooLarge",
    "check_silence",
    "check_silence_count",
    "check_silence_matchers",
    "check_silence_size",
    "read_body",
    "retry_after_header",
    "take",
]

DEFAULT_MAX_BODY_BYTES: Final = 8 << 20  # far above any real Alertmanager client's batch
_MAX_BUCKETS: Final = 10_000  # beyond this, idle (full) buckets are dropped

Message = MutableMapping[str, Any]


class LimitsConfig(Node, frozen=True, forbid_unknown_fields=True):
    """Zero means unlimited everywhere (Alertmanager has none of these by default but the body size)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate: float = 0.0
    burst: int = 0
    max_silences: int = 0
    max_silence_matchers: int = 0
    max_silence_bytes: int = 0

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
        return f"silence has too many matchers: {count} (limit: {limit})"
    return None


def check_silence_size(size: int, limit: int) -> str | None:
    """``size``: the silence's encoded size in bytes."""
    if limit > 0 and size > limit:
        return f"silence exceeded maximum size: {size} bytes (limit: {limit} bytes)"
    return None


def check_silence(
    limits: LimitsConfig, *, existing: int, matchers: int, size: int, new: bool = True
) -> str | None:
    """The first limit a silence breaks, or ``None``. ``new``: it adds a silence (not an
    in-place update), so the per-organisation count applies."""
    return (
        check_silence_matchers(matchers, limits.max_silence_matchers)
        or check_silence_size(size, limits.max_silence_bytes)
        or (check_silence_count(existing, limits.max_silences) if new else None)
    )
