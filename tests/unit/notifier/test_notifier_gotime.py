"""Go time printing and layouts, checked against Go's documented reference outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.notifier.templates.gotime import ZERO_TIME, go_format, gotime, humanize_duration, rfc3339

MST = timezone(timedelta(hours=-7), "MST")
REFERENCE = datetime(2006, 1, 2, 15, 4, 5, tzinfo=MST)  # Go's reference time
LATER = datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
INDIA = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("when", "layout", "expected"),
    [
        (REFERENCE, "Mon Jan _2 15:04:05 2006", "Mon Jan  2 15:04:05 2006"),
        (REFERENCE, "Mon Jan _2 15:04:05 MST 2006", "Mon Jan  2 15:04:05 MST 2006"),
        (REFERENCE, "Mon Jan 02 15:04:05 -0700 2006", "Mon Jan 02 15:04:05 -0700 2006"),
        (REFERENCE, "Monday, 02-Jan-06 15:04:05 MST", "Monday, 02-Jan-06 15:04:05 MST"),
        (REFERENCE, "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05-07:00"),
        (REFERENCE, "3:04PM", "3:04PM"),
        (REFERENCE, "Jan _2 15:04:05.000", "Jan  2 15:04:05.000"),
        (REFERENCE, "Jan _2 15:04:05.999", "Jan  2 15:04:05"),
        (REFERENCE, "January 2, 2006 (Monday) 002 __2", "January 2, 2006 (Monday) 002   2"),
        (REFERENCE, "pm PM 03 3 4 5 1", "pm PM 03 3 4 5 1"),
        (REFERENCE, "-07 -07:00 -070000 -07:00:00 Z07 Z0700", "-07 -07:00 -070000 -07:00:00 -07 -0700"),
        (REFERENCE, "_2006", "_2006"),
        (LATER, "2006-01-02T15:04:05.999999999Z07:00", "2023-11-14T22:13:20.5Z"),
        (LATER, "2006-01-02T15:04:05.000Z07:00", "2023-11-14T22:13:20.500Z"),
        (LATER, "3:04:05 PM", "10:13:20 PM"),
        (LATER, "Mon Jan _2 002", "Tue Nov 14 318"),
        (LATER, "MST -0700", "UTC +0000"),
        (LATER, "15:04:05,999", "22:13:20,5"),
        (datetime(2024, 2, 29, 0, 5, tzinfo=UTC), "3:04pm 06", "12:05am 24"),
        (datetime(2024, 2, 29, 0, 5, tzinfo=INDIA), "Z07:00 Z0700", "+05:30 +0530"),
        (ZERO_TIME, "2006-01-02T15:04:05Z07:00", "0001-01-01T00:00:00Z"),
    ],
    ids=[
        "ansic", "unixdate", "rubydate", "rfc850", "rfc3339-offset", "kitchen", "stamp-milli",
        "trimmed-fraction-zero", "long-names-yearday", "hour12-and-unpadded", "numeric-zones",
        "underscore-year", "rfc3339nano", "fixed-millis", "pm", "weekday-yearday", "utc-zone-name",
        "comma-fraction", "midnight-12h", "half-hour-zone", "zero-time",
    ],
)  # fmt: skip
def test_go_format_prints_go_layouts(when: datetime, layout: str, expected: str) -> None:
    assert go_format(when, layout) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (None, "0001-01-01T00:00:00Z"),
        (0.0, "1970-01-01T00:00:00Z"),
        (1_700_000_000.0, "2023-11-14T22:13:20Z"),
        (1_700_000_000.25, "2023-11-14T22:13:20.25Z"),
        (1_700_000_000.000001, "2023-11-14T22:13:20.000001Z"),
    ],
    ids=["unset", "epoch", "whole-second", "quarter", "microsecond"],
)
def test_rfc3339_is_go_json_time(ts: float | None, expected: str) -> None:
    assert rfc3339(ts) == expected


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_rfc3339_round_trips_to_the_microsecond(ts: float) -> None:
    text = rfc3339(ts)
    assert text.endswith("Z")
    fraction = text[20:-1] if "." in text else ""
    assert not fraction.endswith("0")  # Go trims trailing zeros
    parsed = datetime.fromisoformat(text)
    assert parsed == datetime.fromtimestamp(ts, UTC)


def test_gotime_prints_like_go_time_string() -> None:
    assert str(gotime(LATER)) == "2023-11-14 22:13:20.5 +0000 UTC"
    assert str(ZERO_TIME) == "0001-01-01 00:00:00 +0000 UTC"
    assert gotime(LATER).Unix() == 1_700_000_000
    assert ZERO_TIME.IsZero() and not gotime(LATER).IsZero()


# Expected values are Prometheus' own tests of humanizeDuration.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0s"), (1, "1s"), (60, "1m 0s"), (3600, "1h 0m 0s"), (86400, "1d 0h 0m 0s"),
        (86400 + 3600, "1d 1h 0m 0s"), (-(86400 * 2 + 3600 * 3 + 60 * 4 + 5), "-2d 3h 4m 5s"),
        (899.99, "14m 59s"), (0.1, "100ms"), (0.0001, "100us"), (0.12345, "123.5ms"), (60.5, "1m 0s"),
        (1.2345, "1.234s"), (12.345, "12.35s"), ("86400", "1d 0h 0m 0s"), (1234567, "14d 6h 56m 7s"),
        (-1, "-1s"), (timedelta(minutes=90), "1h 30m 0s"),
    ],
    ids=lambda v: str(v),
)  # fmt: skip
def test_humanize_duration_matches_prometheus(value: float | str | timedelta, expected: str) -> None:
    assert humanize_duration(value) == expected
