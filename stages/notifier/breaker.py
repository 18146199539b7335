"""Pacing of sends to one endpoint (pure; time is always passed in).

- :class:`CircuitBreaker`: after ``threshold`` consecutive failures the circuit opens and
  no request is sent for ``cooldown`` seconds; then one probe is let through (half-open):
  its success closes the circuit, its failure opens it again for another cooldown.
- :class:`TokenBucket`: at most ``rate`` sends per second on average, bursts of ``burst``.
- :func:`retry_delay`: whether a failed send is tried again and after how long, within a
  retry budget of attempts and seconds.
- :class:`Gates`: one breaker and one bucket per endpoint key, created on first use.

A worker asks :meth:`Gates.wait` before each attempt: ``0`` means go, anything else is how
long to wait. Callers turn long waits into a delayed redelivery, so a request waiting for
an open circuit holds no worker slot and does not spend its retry budget.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal

from .classify import Verdict, next_delay

__all__ = ["BreakerState", "CircuitBreaker", "Gates", "RetryBudget", "TokenBucket", "retry_delay"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    """A consecutive-failure circuit breaker with a single half-open probe."""

    threshold: int = 5
    cooldown: float = 30.0
    probe_timeout: float = 60.0  # a probe not reported after this long is presumed lost
    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probe_started: float | None = None

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")

    def wait(self, now: float) -> float:
        """Seconds before a request may be sent; ``0`` lets it through (and, half-open, makes
        it the probe: the next request waits until the probe is reported)."""
        if self.state == "closed":
            return 0.0
        if self.state == "open":
            left = self.opened_at + self.cooldown - now
            if left > 0:
                return left
            self.state = "half_open"
            self.probe_started = None
        if self.probe_started is not None and now - self.probe_started < self.probe_timeout:
            # one probe at a time; check again soon, it usually answers quickly
            return min(1.0, self.cooldown)
        self.probe_started = now
        return 0.0

    def success(self, now: float) -> None:
        self.state = "closed"
        self.failures = 0
        self.probe_started = None

    def failure(self, now: float) -> None:
        self.failures += 1
        self.probe_started = None
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self.opened_at = now

    def release(self, now: float) -> None:
        """A request let through ended without a verdict on the endpoint (e.g. cancelled)."""
        self.probe_started = None


@dataclass
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a rate of 0 never limits."""

    rate: float
    burst: float
    tokens: float = -1.0  # -1: full at first use
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens = self.burst
        elif now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait(self, now: float) -> float:
        """Take a token and return 0, or return how long until one is available (taking none)."""
        if self.rate == 0:
            return 0.0
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class RetryBudget:
    """How long one send may be retried: ``max_attempts`` and ``seconds`` of trying and waiting."""

    seconds: float = 300.0
    max_attempts: int = 20
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0


def retry_delay(budget: RetryBudget, verdict: Verdict, *, attempts: int, spent: float, rand: float,
                retry_after: float | None = None) -> float | None:
    """The wait before the next attempt, or ``None`` to give up.

    ``attempts`` counts the attempts made so far (>= 1), ``spent`` the seconds of the budget
    used so far (attempts and waits). A permanent failure gives up at once; a retryable one
    waits :func:`~stages.notifier.classify.next_delay` (the receiver's ``Retry-After`` when
    given) unless that wait would end past the budget or no attempt is left.
    """
    if verdict.ok or not verdict.retryable:
        return None
    if attempts >= budget.max_attempts:
        return None
    delay = next_delay(attempts - 1, base=budget.backoff_base, cap=budget.backoff_cap, rand=rand,
                       retry_after=retry_after, max_retry_after=budget.max_retry_after)
    if spent + delay >= budget.seconds:
        return None
    return delay


@dataclass
class Gates:
    """A circuit breaker and a token bucket per endpoint key."""

    make_breaker: Callable[[], CircuitBreaker]
    make_bucket: Callable[[Hashable], TokenBucket]
    breakers: dict[Hashable, CircuitBreaker] = field(default_factory=dict)
    buckets: dict[Hashable, TokenBucket] = field(default_factory=dict)

    def breaker(self, key: Hashable) -> CircuitBreaker:
        b = self.breakers.get(key)
        if b is None:
            b = self.breakers[key] = self.make_breaker()
        return b

    def bucket(self, key: Hashable) -> TokenBucket:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = self.make_bucket(key)
        return b

    def wait(self, key: Hashable, now: float) -> tuple[float, Literal["", "breaker", "rate"]]:
        """``(0, "")`` when a send to ``key`` may start now (a token is then taken), else
        the wait and what imposes it. The breaker is asked first: no token is spent on a
        request an open circuit holds back."""
        breaker = self.breaker(key)
        wait = breaker.wait(now)
        if wait > 0:
            return wait, "breaker"
        wait = self.bucket(key).wait(now)
        if wait > 0:
            breaker.release(now)  # a probe that waits for a token is not in flight yet
            return wait, "rate"
        return 0.0, ""
