"""API limits (pipeline.application.api.limits): token buckets, body reading, silence checks."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.limits import (
    Bucket,
    RateLimited,
    RateLimiter,
    TooLarge,
    check_ack_comment,
    check_push_count,
    check_silence,
    check_silence_count,
    check_silence_matchers,
    check_silence_size,
    read_body,
    retry_after_header,
    take,
)
from pipeline.application.config.limits import LimitsConfig


def test_a_bucket_allows_its_burst_then_one_per_interval() -> None:
    bucket: Bucket | None = None
    waits = []
    for _ in range(4):
        bucket, wait = take(bucket, 100.0, rate=2.0, size=3)
        waits.append(wait)
    assert waits == [0.0, 0.0, 0.0, 0.5]
    bucket, wait = take(bucket, 100.5, rate=2.0, size=3)
    assert wait == 0.0
    _, wait = take(bucket, 100.5, rate=2.0, size=3)
    assert wait == pytest.approx(0.5)


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket, _ = take(None, 100.0, rate=1.0, size=1)
    bucket, wait = take(bucket, 50.0, rate=1.0, size=1)
    assert wait == pytest.approx(1.0)
    _, wait = take(bucket, 100.5, rate=1.0, size=1)
    assert wait == pytest.approx(0.5)


def test_zero_rate_never_refills() -> None:
    bucket, _ = take(None, 0.0, rate=0.0, size=1)
    assert take(bucket, 1e9, rate=0.0, size=1)[1] == math.inf


@given(
    rate=st.floats(0.1, 100),
    size=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
def test_admitted_requests_never_exceed_burst_plus_refill(rate: float, size: int, gaps: list[float]) -> None:
    bucket: Bucket | None = None
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        bucket, wait = take(bucket, now, rate, size)
        if wait == 0:
            admitted += 1
        else:
            assert wait > 0 and bucket.tokens < 1
            # waiting the advertised time is enough
            assert take(bucket, now + wait, rate, size)[1] == pytest.approx(0, abs=1e-9)
    assert admitted <= size + now * rate + 1e-9


def test_rate_limiter_keeps_one_bucket_per_key_and_drops_idle_ones() -> None:
    limiter = RateLimiter(1.0, 1, max_buckets=2)
    assert limiter.check("a", 0.0) == 0 and limiter.check("b", 0.0) == 0
    assert limiter.check("a", 0.0) == pytest.approx(1.0)  # a's bucket is its own
    assert limiter.check("c", 5.0) == 0  # third key: a and b are full again, so dropped
    assert len(limiter) == 1


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.001, "1"), (1.0, "1"), (1.2, "2"), (59.9, "60")],
    ids=["tiny", "one", "rounds-up", "large"],
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header
    assert RateLimited("s", seconds).headers == {"Retry-After": header}


def _receiver(chunks: list[bytes]) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


@pytest.mark.parametrize(
    ("chunks", "limit", "ok"),
    [
        ([b"abc"], 3, True),
        ([b"abcd"], 3, False),
        ([b"ab", b"cd"], 4, True),
        ([b"ab", b"cd", b"e"], 4, False),
        ([b""], 0, True),
    ],
    ids=["at-limit", "over-limit", "chunks-at-limit", "chunks-over", "empty"],
)
async def test_read_body(chunks: list[bytes], limit: int, ok: bool) -> None:
    if ok:
        messages = await read_body(_receiver(chunks), limit)
        assert b"".join(m["body"] for m in messages) == b"".join(chunks)
    else:
        with pytest.raises(TooLarge) as info:
            await read_body(_receiver(chunks), limit)
        assert info.value.status == 413


async def test_read_body_stops_at_disconnect() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert await read_body(receive, 10) == [{"type": "http.disconnect"}]


@pytest.mark.parametrize(
    ("existing", "limit", "expect"),
    [
        (0, 0, None),
        (999, 0, None),
        (0, 1, None),
        (1, 1, "exceeded maximum number of silences: 1 (limit: 1)"),
        (4, 5, None),
        (5, 5, "exceeded maximum number of silences: 5 (limit: 5)"),
    ],
    ids=["unlimited-empty", "unlimited-many", "first", "at-limit", "below", "full"],
)
def test_silence_count(existing: int, limit: int, expect: str | None) -> None:
    assert check_silence_count(existing, limit) == expect


@pytest.mark.parametrize(
    ("count", "limit", "expect"),
    [(3, 0, None), (3, 3, None), (4, 3, "silence has too many matchers: 4 (limit: 3, limits.max_silence_matchers)")],
    ids=["unlimited", "at-limit", "over"],
)
def test_silence_matchers(count: int, limit: int, expect: str | None) -> None:
    assert check_silence_matchers(count, limit) == expect


def test_silence_size_and_combined_check() -> None:
    assert check_silence_size(100, 100) is None
    assert check_silence_size(101, 100) == "silence exceeded maximum size: 101 bytes (limit: 100 bytes)"
    limits = LimitsConfig(max_silences=2, max_silence_matchers=2, max_silence_bytes=100)
    assert check_silence(limits, existing=1, matchers=2, size=100) is None
    assert "too many matchers" in (check_silence(limits, existing=5, matchers=3, size=100) or "")
    assert "maximum size" in (check_silence(limits, existing=5, matchers=1, size=101) or "")
    assert "number of silences" in (check_silence(limits, existing=2, matchers=1, size=10) or "")
    assert check_silence(limits, existing=2, matchers=1, size=10, new=False) is None


def test_silence_regex_length_is_checked_per_matcher_before_the_size() -> None:
    limits = LimitsConfig(max_silence_regex_length=10, max_silence_bytes=5)
    assert check_silence(limits, existing=0, matchers=2, size=1, regex_lengths=[0, 10]) is None
    assert check_silence(limits, existing=0, matchers=2, size=100, regex_lengths=[0, 11]) == (
        "silence matcher 1 has a regex of 11 characters, more than limits.max_silence_regex_length (10)")
    assert check_silence(LimitsConfig(max_silence_regex_length=0), existing=0, matchers=1, size=1,
                         regex_lengths=[10**6]) is None


def test_ack_comment_and_push_count_limits() -> None:
    assert check_ack_comment("c" * 4096, LimitsConfig()) is None
    assert "limits.max_ack_comment_length (4096)" in (check_ack_comment("c" * 4097, LimitsConfig()) or "")
    assert check_push_count(10**6, LimitsConfig()) is None  # as Alertmanager: no limit by default
    assert "max_alerts_per_push (3)" in (check_push_count(4, LimitsConfig(max_alerts_per_push=3)) or "")


def test_default_limits_keep_an_alert_far_below_nats_max_payload() -> None:
    limits = LimitsConfig()
    assert 0 < limits.max_alert_bytes * 16 <= 1 << 20  # a group head inlines up to 8 alerts
    assert limits.max_label_value_length < limits.max_alert_bytes
    assert limits.max_annotation_bytes < limits.max_alert_bytes
    assert 0 < limits.max_silence_bytes < 1 << 20


def test_new_limits_are_loaded_from_the_config_and_refuse_negatives() -> None:
    from pipeline.application.settings import load_text
    from pipeline.foundation.amconfig.load import ConfigError

    base = "route: {receiver: r}\nreceivers: [{name: r}]\ntocsin:\n  limits:\n"
    loaded = load_text(base + "    max_label_value_length: 100\n    max_alerts_per_push: 0\n")
    assert loaded.tocsin.limits is not None and loaded.tocsin.limits.max_label_value_length == 100
    assert loaded.tocsin.limits.max_alert_bytes == LimitsConfig().max_alert_bytes  # the others keep defaults
    with pytest.raises(ConfigError, match="max_labels_per_alert"):
        load_text(base + "    max_labels_per_alert: -1\n")
