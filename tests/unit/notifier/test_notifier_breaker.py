"""Circuit breaker, token bucket, retry budget and gates (pure, time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.notifier.breaker import CircuitBreaker, Gates, RetryBudget, TokenBucket, retry_delay
from stages.notifier.classify import Verdict

RETRYABLE = Verdict(ok=False, retryable=True, reason="serverError")
PERMANENT = Verdict(ok=False, retryable=False, reason="clientError")
OK = Verdict(ok=True, retryable=False, reason="")


# --------------------------------------------------------------------------- circuit breaker

# Each step: (time, event) where event is "ask" (expected wait after), "ok" or "fail".
@pytest.mark.parametrize(("steps", "final_state"), [
    ([(0, "fail"), (1, "fail"), (2, "ask", 0.0)], "closed"),
    ([(0, "fail"), (1, "fail"), (2, "fail"), (3, "ask", 9.0)], "open"),
    ([(0, "fail"), (1, "ok"), (2, "fail"), (3, "fail"), (4, "ask", 0.0)], "closed"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0)], "half_open"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0), (10.5, "ask", 1.0)], "half_open"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0), (11, "ok"), (11, "ask", 0.0)], "closed"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0), (11, "fail"), (12, "ask", 9.0)], "open"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0), (11, "release"), (11, "ask", 0.0)], "half_open"),
    ([(0, "fail"), (0, "fail"), (0, "fail"), (10, "ask", 0.0), (200, "ask", 0.0)], "half_open"),
], ids=["under-threshold", "opens", "success-resets-count", "half-open-after-cooldown", "one-probe-at-a-time",
        "probe-success-closes", "probe-failure-reopens", "released-probe-frees-slot", "lost-probe-times-out"])
def test_breaker_transitions(steps: list[tuple], final_state: str) -> None:
    b = CircuitBreaker(threshold=3, cooldown=10.0, probe_timeout=60.0)
    for step in steps:
        now, event = step[0], step[1]
        if event == "ask":
            assert b.wait(now) == pytest.approx(step[2])
        elif event == "ok":
            b.success(now)
        elif event == "fail":
            b.failure(now)
        else:
            b.release(now)
    assert b.state == final_state


@given(st.lists(st.tuples(st.floats(0, 5), st.sampled_from(["ask", "ok", "fail"])), max_size=60))
def test_breaker_never_lets_a_request_through_while_open(events: list[tuple[float, str]]) -> None:
    b = CircuitBreaker(threshold=2, cooldown=3.0)
    now = 0.0
    in_flight_probe = False
    for dt, event in events:
        now += dt
        if event == "ask":
            was_open_until = b.opened_at + b.cooldown if b.state == "open" else None
            wait = b.wait(now)
            assert wait >= 0
            if was_open_until is not None and now < was_open_until:
                assert wait == pytest.approx(was_open_until - now)
            if wait == 0 and b.state == "half_open":
                assert not in_flight_probe  # never two probes at once
                in_flight_probe = True
        else:
            (b.success if event == "ok" else b.failure)(now)
            in_flight_probe = False


# --------------------------------------------------------------------------- token bucket


@pytest.mark.parametrize(("rate", "burst", "asks", "waits"), [
    (0, 1, [0, 0, 0], [0, 0, 0]),
    (2, 1, [0, 0, 0.5], [0, 0.5, 0]),
    (2, 3, [0, 0, 0, 0], [0, 0, 0, 0.5]),
    (1, 2, [0, 0, 0, 1.0, 1.0], [0, 0, 1.0, 0, 1.0]),
    (10, 1, [0, 0.05], [0, 0.05]),
], ids=["unlimited", "rate-2", "burst-3", "refill", "partial-token"])
def test_bucket_waits(rate: float, burst: int, asks: list[float], waits: list[float]) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    assert [pytest.approx(bucket.wait(t)) for t in asks] == waits


@settings(max_examples=200)
@given(rate=st.floats(0.5, 50), burst=st.integers(1, 10),
       times=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_bucket_never_exceeds_rate_plus_burst(rate: float, burst: int, times: list[float]) -> None:
    """Over any span of T seconds at most burst + rate*T sends are let through."""
    bucket = TokenBucket(rate=rate, burst=burst)
    now, granted = 0.0, []
    for dt in times:
        now += dt
        if bucket.wait(now) == 0:
            granted.append(now)
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            span = granted[j] - start
            assert j - i + 1 <= burst + rate * span + 1e-6


def test_bucket_wait_is_enough() -> None:
    bucket = TokenBucket(rate=3, burst=1)
    assert bucket.wait(0) == 0
    w = bucket.wait(0.1)
    assert w > 0
    assert bucket.wait(0.1 + w) == 0  # after the announced wait a token is there


# --------------------------------------------------------------------------- retry budget

BUDGET = RetryBudget(seconds=10.0, max_attempts=4, backoff_base=1.0, backoff_cap=8.0, max_retry_after=5.0)


@pytest.mark.parametrize(("verdict", "attempts", "spent", "rand", "retry_after", "expected"), [
    (OK, 1, 0.0, 1.0, None, None),
    (PERMANENT, 1, 0.0, 1.0, None, None),
    (RETRYABLE, 1, 0.0, 1.0, None, 1.0),
    (RETRYABLE, 2, 0.0, 1.0, None, 2.0),
    (RETRYABLE, 3, 0.0, 0.5, None, 2.0),
    (RETRYABLE, 4, 0.0, 1.0, None, None),
    (RETRYABLE, 2, 8.5, 1.0, None, None),
    (RETRYABLE, 1, 0.0, 0.0, 3.0, 3.0),
    (RETRYABLE, 1, 0.0, 0.0, 60.0, 5.0),
    (RETRYABLE, 1, 6.0, 0.0, 60.0, None),
], ids=["ok", "permanent", "first-backoff", "doubles", "jitter", "attempts-exhausted", "budget-exhausted",
        "retry-after", "retry-after-capped", "retry-after-past-budget"])
def test_retry_delay(verdict: Verdict, attempts: int, spent: float, rand: float, retry_after: float | None,
                     expected: float | None) -> None:
    got = retry_delay(BUDGET, verdict, attempts=attempts, spent=spent, rand=rand, retry_after=retry_after)
    assert got == (None if expected is None else pytest.approx(expected))


@given(attempts=st.integers(1, 50), spent=st.floats(0, 20), rand=st.floats(0, 1),
       retry_after=st.none() | st.floats(0, 1000))
def test_retry_delay_stays_in_budget(attempts: int, spent: float, rand: float, retry_after: float | None) -> None:
    got = retry_delay(BUDGET, RETRYABLE, attempts=attempts, spent=spent, rand=rand, retry_after=retry_after)
    if got is not None:
        assert 0 <= got <= max(BUDGET.backoff_cap, BUDGET.max_retry_after)
        assert spent + got < BUDGET.seconds
        assert attempts < BUDGET.max_attempts


# --------------------------------------------------------------------------- gates


def _gates(rate: float = 0.0) -> Gates:
    return Gates(make_breaker=lambda: CircuitBreaker(threshold=1, cooldown=5.0),
                 make_bucket=lambda key: TokenBucket(rate=rate, burst=1))


def test_gates_are_per_key_and_breaker_first() -> None:
    g = _gates(rate=1.0)
    assert g.wait(("a", "webhook", 0), 0.0) == (0.0, "")
    wait, cause = g.wait(("a", "webhook", 0), 0.0)
    assert cause == "rate" and wait == pytest.approx(1.0)
    assert g.wait(("b", "webhook", 0), 0.0) == (0.0, "")  # another endpoint has its own bucket
    g.breaker(("a", "webhook", 0)).failure(0.0)
    wait, cause = g.wait(("a", "webhook", 0), 2.0)
    assert cause == "breaker" and wait == pytest.approx(3.0)
    # no token was taken while the circuit held the request back
    assert g.bucket(("a", "webhook", 0)).tokens == pytest.approx(0.0)
    assert g.wait(("a", "webhook", 0), 5.0) == (0.0, "")


def test_gates_rate_wait_releases_the_probe() -> None:
    g = _gates(rate=0.1)
    key = ("a", "webhook", 0)
    assert g.wait(key, 0.0) == (0.0, "")  # takes the only token
    g.breaker(key).failure(0.0)
    wait, cause = g.wait(key, 5.0)  # half-open now, but the bucket has half a token
    assert cause == "rate" and wait == pytest.approx(5.0)
    assert g.breaker(key).probe_started is None  # waiting for a token, it is not the probe
    assert g.wait(key, 10.0) == (0.0, "")
    assert g.breaker(key).probe_started == 10.0
