"""The RFC3339Nano fast path formats exactly like the general Go layout formatter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from stages.notifier.templates.gotime import _STD, RFC3339_NANO, _element, go_format, gotime


def slow(dt: datetime) -> str:
    return _STD.sub(lambda m: _element(dt, m.group(0)), RFC3339_NANO)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_fast_path_equals_the_general_formatter(naive: datetime, offset_minutes: int) -> None:
    for tz in (UTC, timezone(timedelta(minutes=offset_minutes))):
        dt = gotime(naive.replace(tzinfo=tz))
        assert go_format(dt, RFC3339_NANO) == slow(dt)


def test_known_values() -> None:
    assert go_format(gotime(datetime(2026, 11, 22, 9, 5, 3, tzinfo=UTC)), RFC3339_NANO) == "2026-11-22T09:05:03Z"
    assert go_format(gotime(datetime(2026, 11, 22, 9, 5, 3, 120000, tzinfo=UTC)), RFC3339_NANO) == \
        "2026-11-22T09:05:03.12Z"
