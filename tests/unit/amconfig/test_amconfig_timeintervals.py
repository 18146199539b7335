"""Time intervals: parsing and containment (pipeline.foundation.amconfig.timeintervals)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.foundation.amconfig import ConfigError, compile_routes, compile_time_intervals, load_config_text
from pipeline.foundation.amconfig.timeintervals import (
    CompiledInterval,
    TimeIntervals,
    is_muted,
    parse_day_of_month_range,
    parse_month_range,
    parse_time_of_day,
    parse_weekday_range,
    parse_year_range,
)
from pipeline.foundation.amconfig.values import InclusiveRange


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0, tz: str = "UTC") -> float:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp()


def interval(body: str) -> TimeIntervals:
    """Load a config whose only time interval ``t`` has the given entry body."""
    text = "route: {receiver: r}\nreceivers: [{name: r}]\ntime_intervals:\n  - name: t\n    time_intervals:\n"
    text += textwrap.indent(textwrap.dedent(body).strip("\n"), "      ")
    return compile_time_intervals(load_config_text(text, "ti.yml"))


BUSINESS_PARIS = """
- times: [{start_time: '09:00', end_time: '17:00'}]
  weekdays: ['monday:friday']
  location: Europe/Paris
"""

CASES = [
    # (entry, time, expected)
    (BUSINESS_PARIS, at(2024, 3, 29, 8, 30), True),  # Friday 09:30 CET (UTC+1)
    (BUSINESS_PARIS, at(2024, 3, 29, 16, 30), False),  # Friday 17:30 CET
    (BUSINESS_PARIS, at(2024, 3, 29, 7, 59), False),  # Friday 08:59 CET
    (BUSINESS_PARIS, at(2024, 3, 29, 8, 0), True),  # start is inclusive
    (BUSINESS_PARIS, at(2024, 3, 29, 16, 0), False),  # end is exclusive (17:00 CET)
    (BUSINESS_PARIS, at(2024, 3, 29, 15, 59), True),
    (BUSINESS_PARIS, at(2024, 4, 2, 15, 30), False),  # Tuesday 17:30 CEST (UTC+2) after DST
    (BUSINESS_PARIS, at(2024, 4, 2, 14, 59), True),  # Tuesday 16:59 CEST
    (BUSINESS_PARIS, at(2024, 4, 2, 7, 0), True),  # Tuesday 09:00 CEST, 07:00 UTC
    (BUSINESS_PARIS, at(2024, 3, 30, 10), False),  # Saturday
    (BUSINESS_PARIS, at(2024, 4, 1, 6, 30), False),  # Monday 08:30 CEST although 09:30 in CET
    # Weekday read in the location: Sunday 23:00 UTC is Monday 09:00 in Sydney (AEST, UTC+10).
    ("- weekdays: [monday]\n  location: Australia/Sydney\n", at(2024, 6, 2, 23, 0), True),
    ("- weekdays: [monday]\n", at(2024, 6, 2, 23, 0), False),  # UTC when no location
    # New York falls back on 2024-11-03: 01:30 happens twice, both inside.
    (
        "- times: [{start_time: '01:00', end_time: '02:00'}]\n  location: America/New_York\n",
        at(2024, 11, 3, 5, 30),
        True,
    ),
    (
        "- times: [{start_time: '01:00', end_time: '02:00'}]\n  location: America/New_York\n",
        at(2024, 11, 3, 6, 30),
        True,
    ),
    (
        "- times: [{start_time: '01:00', end_time: '02:00'}]\n  location: America/New_York\n",
        at(2024, 11, 3, 7, 30),
        False,
    ),
    # Days of month, negative from the end, clamped to the month's length.
    ("- days_of_month: ['-1']\n", at(2024, 2, 29), True),
    ("- days_of_month: ['-1']\n", at(2024, 2, 28), False),
    ("- days_of_month: ['-1']\n", at(2023, 2, 28), True),
    ("- days_of_month: ['-7:-1']\n", at(2024, 4, 24), True),
    ("- days_of_month: ['-7:-1']\n", at(2024, 4, 23), False),
    ("- days_of_month: ['31']\n", at(2024, 4, 30), False),  # April has 30 days
    ("- days_of_month: ['31']\n", at(2024, 1, 31), True),
    ("- days_of_month: ['25:31']\n", at(2024, 2, 29), True),
    ("- days_of_month: ['1:-1']\n", at(2024, 7, 17), True),
    ("- days_of_month: [1, 15]\n", at(2024, 7, 15), True),
    ("- days_of_month: [1, 15]\n", at(2024, 7, 16), False),
    # Months by name or number, ranges inclusive.
    ("- months: ['march:may']\n", at(2024, 5, 31), True),
    ("- months: ['march:may']\n", at(2024, 6, 1), False),
    ("- months: ['12', January]\n", at(2024, 1, 10), True),
    ("- months: ['1:3']\n", at(2024, 4, 1), False),
    ("- years: ['2024:2025']\n", at(2025, 12, 31, 23, 59), True),
    ("- years: ['2024:2025']\n", at(2026, 1, 1, 0, 0), False),
    ("- weekdays: [saturday, Sunday]\n", at(2024, 6, 2), True),  # a Sunday; names are case-insensitive
    ("- weekdays: ['sunday:saturday']\n", at(2024, 6, 5), True),
    ("- times: [{start_time: '00:00', end_time: '24:00'}]\n", at(2024, 6, 5, 23, 59), True),
    (
        "- times: [{start_time: '22:00', end_time: '23:00'}, {start_time: '01:00', end_time: '02:00'}]\n",
        at(2024, 6, 5, 1, 15),
        True,
    ),
    ("- {}\n", at(2024, 6, 5), True),  # no fields: always
    ("- weekdays: []\n", at(2024, 6, 5), False),  # an empty list matches nothing
    # Several entries: any one suffices.
    ("- weekdays: [saturday]\n- days_of_month: ['5']\n", at(2024, 6, 5), True),
    ("- weekdays: [saturday]\n  days_of_month: ['5']\n", at(2024, 6, 5), False),  # fields combine with AND
]


@pytest.mark.parametrize(
    ("body", "t", "expected"),
    CASES,
    ids=[f"{i}-{datetime.fromtimestamp(t, UTC):%Y%m%dT%H%M}" for i, (_, t, _) in enumerate(CASES)],
)
def test_contains(body: str, t: float, expected: bool) -> None:
    assert interval(body).contains("t", t) is expected


PARSERS = [
    (parse_weekday_range, "monday:friday", InclusiveRange(1, 5)),
    (parse_weekday_range, "Sunday", InclusiveRange(0, 0)),
    (parse_day_of_month_range, "-3:-1", InclusiveRange(-3, -1)),
    (parse_day_of_month_range, "1:-1", InclusiveRange(1, -1)),
    (parse_month_range, "february:4", InclusiveRange(2, 4)),
    (parse_year_range, "2030", InclusiveRange(2030, 2030)),
]


@pytest.mark.parametrize(("parse", "text", "expected"), PARSERS, ids=[t for _, t, _ in PARSERS])
def test_range_parsers(parse: object, text: str, expected: InclusiveRange) -> None:
    assert parse(text) == expected  # type: ignore[operator]


BAD = [
    (parse_weekday_range, "funday", "not a valid weekday"),
    (parse_weekday_range, "friday:monday", "start day cannot be before end day"),
    (parse_weekday_range, "monday:tuesday:friday", "invalid format"),
    (parse_day_of_month_range, "0", "out of range"),
    (parse_day_of_month_range, "32", "out of range"),
    (parse_day_of_month_range, "-32", "out of range"),
    (parse_day_of_month_range, "-1:5", "end day must be negative"),
    (parse_day_of_month_range, "5:3", "always before start day"),
    (parse_day_of_month_range, "-3:-5", "always before start day"),
    (parse_month_range, "smarch", "not a valid month"),
    (parse_month_range, "13", "out of range"),
    (parse_month_range, "june:march", "end month march is before start month june"),
    (parse_year_range, "2025:2024", "end year 2024 is before start year 2025"),
    (parse_time_of_day, "9:00", "invalid format"),
    (parse_time_of_day, "24:01", "invalid format"),
    (parse_time_of_day, "12:60", "invalid format"),
]


@pytest.mark.parametrize(("parse", "text", "fragment"), BAD, ids=[f"{p.__name__}-{t}" for p, t, _ in BAD])
def test_parsers_reject(parse: object, text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse(text)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("- times: [{start_time: '10:00', end_time: '10:00'}]\n", 6, "start time cannot be equal or greater"),
        ("- times: [{start_time: '10:00'}]\n", 6, "both start and end times must be provided"),
        ("- location: Mars/Olympus\n", 6, "time_intervals[0].time_intervals[0].location: unknown time zone"),
        ("- weekdays: monday\n", 6, "expected a list"),
    ],
    ids=["equal", "missing-end", "zone", "scalar"],
)
def test_invalid_interval_in_config(body: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        interval(body)
    assert info.value.errors[0].startswith(f"ti.yml:{line}: ")
    assert fragment in info.value.errors[0]


MUTE_CONFIG = """
route:
  receiver: r
  routes:
    - matchers: [a=1]
      mute_time_intervals: [weekends]
    - matchers: [a=2]
      active_time_intervals: [office, night]
    - matchers: [a=3]
      mute_time_intervals: [weekends]
      active_time_intervals: [office]
      routes:
        - matchers: [b=1]
receivers: [{name: r}]
time_intervals:
  - name: office
    time_intervals: [{times: [{start_time: '09:00', end_time: '17:00'}]}]
  - name: night
    time_intervals: [{times: [{start_time: '22:00', end_time: '24:00'}]}]
mute_time_intervals:
  - name: weekends
    time_intervals: [{weekdays: [saturday, sunday]}]
"""

MUTED = [
    ("0.0", at(2024, 6, 1, 10), (True, ["weekends"])),  # Saturday
    ("0.0", at(2024, 6, 3, 10), (False, [])),
    ("0.1", at(2024, 6, 3, 10), (False, [])),  # inside office
    ("0.1", at(2024, 6, 3, 23), (False, [])),  # inside night
    ("0.1", at(2024, 6, 3, 18), (True, ["office", "night"])),  # inside neither: muted by all
    ("0.2", at(2024, 6, 1, 10), (True, ["weekends"])),  # mute wins over active
    ("0.2", at(2024, 6, 3, 10), (False, [])),
    ("0.2.0", at(2024, 6, 1, 10), (False, [])),  # time intervals are not inherited
    ("0", at(2024, 6, 1, 10), (False, [])),
]


@pytest.mark.parametrize(("route_id", "t", "expected"), MUTED, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(MUTED)])
def test_is_muted(route_id: str, t: float, expected: tuple[bool, list[str]]) -> None:
    config = load_config_text(MUTE_CONFIG)
    routes = {node.id: node for node in compile_routes(config).walk()}
    assert is_muted(routes[route_id], t, compile_time_intervals(config)) == expected


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.integers(0, 1439), st.integers(1, 1440))
def test_times_match_minute_of_day(t: float, start: int, length: int) -> None:
    end = min(start + length, 1440)
    iv = CompiledInterval(times=((start, end),), weekdays=None, days_of_month=None, months=None, years=None, zone=UTC)
    dt = datetime.fromtimestamp(t, UTC)
    assert iv.contains(t) == (start <= dt.hour * 60 + dt.minute < end)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False), st.integers(0, 6), st.integers(0, 6))
def test_weekdays_count_from_sunday(t: float, a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    iv = CompiledInterval(
        times=None, weekdays=(InclusiveRange(lo, hi),), days_of_month=None, months=None, years=None, zone=UTC
    )
    sunday_based = int(datetime.fromtimestamp(t, UTC).strftime("%w"))
    assert iv.contains(t) == (lo <= sunday_based <= hi)


def _days(begin: int, end: int, months: tuple[InclusiveRange, ...] | None = None) -> CompiledInterval:
    return CompiledInterval(
        times=None, weekdays=None, days_of_month=(InclusiveRange(begin, end),), months=months, years=None, zone=UTC
    )


# Cases from Alertmanager's own timeinterval tests, built directly (-31:31 cannot be written in YAML).
DIRECT = [
    (_days(-3, -1), at(2020, 1, 29), True),
    (_days(-3, -1), at(2020, 2, 29), True),
    (_days(-3, -1), at(2020, 1, 27), False),
    (_days(-3, -1), at(2020, 3, 1), False),
    (_days(-31, 31, (InclusiveRange(6, 6),)), at(2020, 6, 30, 0), True),  # clamped to the month
    (_days(-31, 31, (InclusiveRange(6, 6),)), at(2020, 6, 1, 0), True),
    (_days(-31, 31, (InclusiveRange(6, 6),)), at(2020, 5, 31, 0), False),
    (_days(-31, 31, (InclusiveRange(6, 6),)), at(2020, 7, 1, 0), False),
]


@pytest.mark.parametrize(("iv", "t", "expected"), DIRECT, ids=[str(i) for i in range(len(DIRECT))])
def test_contains_direct(iv: CompiledInterval, t: float, expected: bool) -> None:
    assert iv.contains(t) is expected
