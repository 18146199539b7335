"""Retry classification, Retry-After parsing, backoff, and idempotency keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier_cases import alert, request

from stages.notifier.classify import (
    TransportError,
    backoff,
    classify_smtp,
    classify_status,
    classify_transport,
    next_delay,
    parse_retry_after,
)
from stages.notifier.payloads import idempotency_key


@pytest.mark.parametrize(
    ("status", "ok", "retryable", "reason"),
    [
        (200, True, False, ""),
        (202, True, False, ""),
        (204, True, False, ""),
        (301, False, False, "other"),
        (400, False, False, "clientError"),
        (401, False, False, "authError"),
        (403, False, False, "authError"),
        (404, False, False, "clientError"),
        (408, False, True, "clientError"),
        (413, False, False, "clientError"),
        (429, False, True, "rateLimited"),
        (500, False, True, "serverError"),
        (502, False, True, "serverError"),
        (503, False, True, "serverError"),
        (504, False, True, "serverError"),
    ],
    ids=lambda v: str(v),
)
def test_classify_status(status: int, ok: bool, retryable: bool, reason: str) -> None:
    verdict = classify_status(status)
    assert (verdict.ok, verdict.retryable, verdict.reason) == (ok, retryable, reason)


def test_integration_retry_codes_make_a_status_retryable() -> None:
    # PagerDuty's v1 API: 403 means rate limited, retry
    assert classify_status(403, retry_codes={403}).retryable
    assert classify_status(403, retry_codes={403}).reason == "authError"


@given(st.integers(min_value=400, max_value=499).filter(lambda s: s not in (408, 429)))
def test_other_client_errors_are_permanent(status: int) -> None:
    assert not classify_status(status).retryable


@pytest.mark.parametrize(
    ("kind", "retryable", "reason"),
    [
        ("timeout", True, "contextDeadlineExceeded"),
        ("connect", True, "other"),
        ("network", True, "other"),
        ("tls", True, "other"),
        ("canceled", False, "contextCanceled"),
    ],
    ids=lambda v: str(v),
)
def test_classify_transport(kind: TransportError, retryable: bool, reason: str) -> None:
    verdict = classify_transport(kind)
    assert (verdict.ok, verdict.retryable, verdict.reason) == (False, retryable, reason)


@pytest.mark.parametrize(
    ("code", "ok", "retryable", "reason"),
    [
        (250, True, False, ""),
        (354, True, False, ""),
        (421, False, True, "serverError"),
        (451, False, True, "serverError"),
        (535, False, False, "authError"),
        (550, False, False, "clientError"),
        (554, False, False, "clientError"),
    ],
    ids=lambda v: str(v),
)
def test_classify_smtp(code: int, ok: bool, retryable: bool, reason: str) -> None:
    verdict = classify_smtp(code)
    assert (verdict.ok, verdict.retryable, verdict.reason) == (ok, retryable, reason)


NOW = datetime(1994, 11, 6, 8, 49, 7, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "delay"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 30.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 30.0),
        ("Sun Nov  6 08:49:37 1994", 30.0),
        ("Sun, 06 Nov 1994 08:48:07 GMT", 0.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
    ids=["seconds", "padded", "zero", "imf-date", "rfc850-date", "asctime-date", "past-date",
         "negative", "fraction", "garbage", "empty", "absent"],
)  # fmt: skip
def test_parse_retry_after(value: str | None, delay: float | None) -> None:
    assert parse_retry_after(value, NOW) == delay


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_date_round_trips(seconds: int) -> None:
    when = datetime.fromtimestamp(NOW + seconds, UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == seconds


@given(
    st.integers(min_value=0, max_value=5000),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
    st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_full_jitter_bounds(attempt: int, base: float, cap: float, rand: float) -> None:
    delay = backoff(attempt, base, cap, rand)
    ceiling = float(min(Fraction(cap), Fraction(base) * 2**attempt))  # exact arithmetic as the oracle
    assert 0 <= delay <= ceiling <= cap
    assert delay == pytest.approx(rand * ceiling, rel=1e-12, abs=0)
    assert backoff(attempt, base, cap, 1.0) == ceiling


@given(st.integers(min_value=0, max_value=60), st.floats(min_value=0, max_value=1))
def test_backoff_ceiling_grows_with_attempts_until_the_cap(attempt: int, rand: float) -> None:
    assert backoff(attempt, 0.5, 300, rand) <= backoff(attempt + 1, 0.5, 300, rand)


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1, 1, 10, 0.5), "attempt"), ((0, -1, 10, 0.5), "base"), ((0, 1, float("inf"), 0.5), "cap"),
     ((0, 1, 10, 1.5), "rand")],
    ids=["negative-attempt", "negative-base", "infinite-cap", "rand-out-of-range"],
)  # fmt: skip
def test_backoff_rejects_bad_arguments(args: tuple[int, float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff(*args)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, 2.0), (30.0, 30.0), (7200.0, 600.0), (-5.0, 0.0)],
    ids=["backoff", "retry-after", "retry-after-capped", "negative-retry-after"],
)
def test_next_delay_prefers_retry_after(retry_after: float | None, expected: float) -> None:
    delay = next_delay(2, base=1.0, cap=60.0, rand=0.5, retry_after=retry_after, max_retry_after=600.0)
    assert delay == expected


@pytest.mark.parametrize(
    ("req_id", "readable"),
    [("acme/g1/ops/webhook/0/3", True), ("acme/g1/team ops/webhook/0/3", False), ("acme/g1/équipe/slack/0/1", False),
     ("x" * 300, False)],
    ids=["ascii", "space", "non-ascii", "too-long"],
)  # fmt: skip
def test_idempotency_key_is_a_stable_header_value(req_id: str, readable: bool) -> None:
    req = request([alert()], req_id=req_id)
    key = idempotency_key(req)
    assert key == idempotency_key(request([alert()], req_id=req_id, flush_seq=99))  # depends on the id only
    assert re.fullmatch(r"[\x21-\x7e]{1,200}", key)
    assert (key == req_id) is readable
    if not readable:
        assert re.fullmatch(r"sha256-[0-9a-f]{64}", key)
    assert key != idempotency_key(request([alert()], req_id=req_id + "x"))
