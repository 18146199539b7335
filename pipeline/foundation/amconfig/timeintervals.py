"""Alertmanager time intervals: parsing their fields and testing a time against them.

Semantics follow Alertmanager's ``timeinterval`` package: every listed field must match
(an absent field matches everything, an empty list nothing), ``end_time`` is exclusive,
weekday/month/day ranges are inclusive, negative days count from the end of the month,
and the time is read in the interval's ``location`` (UTC when absent).
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.foundation.amconfig.values import InclusiveRange

__all__ = [
    "WEEKDAYS",
    "CompiledInterval",
    "TimeIntervals",
    "compile_interval",
    "compile_time_intervals",
    "is_muted",
    "load_location",
    "parse_day_of_month_range",
    "parse_month_range",
    "parse_time_of_day",
    "parse_weekday_range",
    "parse_year_range",
]

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_CLOCK = re.compile(r"(([01][0-9])|(2[0-3])):[0-5][0-9]|24:00")


# --------------------------------------------------------------------------- field parsers


def parse_time_of_day(text: str) -> int:
    """``HH:MM`` (``24:00`` allowed) into minutes since midnight."""
    if not _CLOCK.fullmatch(text):
        raise ValueError(f"couldn't parse timestamp {text}, invalid format")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _range(text: str, member_of: Mapping[str, int] | None, what: str) -> InclusiveRange:
    """Parse ``a`` or ``a:b`` where members are names from ``member_of`` or integers."""
    lowered = text.lower()
    parts = lowered.split(":") if ":" in lowered else [lowered, lowered]
    if len(parts) != 2:
        raise ValueError(f"couldn't parse range {text}, invalid format")
    values = []
    for part in parts:
        if member_of is not None and part in member_of:
            values.append(member_of[part])
            continue
        if what == "weekday":
            raise ValueError(f"{part} is not a valid weekday")
        try:
            values.append(int(part))
        except ValueError:
            raise ValueError(f"{part} is not a valid {what}") from None
    return InclusiveRange(values[0], values[1])


def parse_weekday_range(text: str) -> InclusiveRange:
    r = _range(text, {name: i for i, name in enumerate(WEEKDAYS)}, "weekday")
    if r.begin > r.end:
        raise ValueError("start day cannot be before end day")
    return r


def parse_day_of_month_range(text: str) -> InclusiveRange:
    r = _range(text, None, "day of month")
    for day in (r.begin, r.end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{day} is not a valid day of the month: out of range")
    if r.begin < 0 < r.end:
        raise ValueError("end day must be negative if start day is negative")
    # Compare as if in a 28-day month, the shortest, as Alertmanager does.
    begin = 28 + r.begin if r.begin < 0 else r.begin
    end = 28 + r.end if r.end < 0 else r.end
    if begin > end:
        raise ValueError(f"end day {r.end} is always before start day {r.begin}")
    return r


def parse_month_range(text: str) -> InclusiveRange:
    r = _range(text, _MONTHS, "month")
    for month in (r.begin, r.end):
        if not 1 <= month <= 12:
            raise ValueError(f"{month} is not a valid month: out of range")
    if r.begin > r.end:
        raise ValueError(
            f"end month {calendar.month_name[r.end].lower()} is before start month "
            f"{calendar.month_name[r.begin].lower()}"
        )
    return r


def parse_year_range(text: str) -> InclusiveRange:
    r = _range(text, None, "year")
    if r.begin > r.end:
        raise ValueError(f"end year {r.end} is before start year {r.begin}")
    return r


def load_location(name: str) -> tzinfo:
    """A time zone by IANA name; ``UTC``/``""`` and Go's ``Local`` are accepted too."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        # Go's "Local" is the process zone: $TZ, else /etc/localtime.
        env = os.environ.get("TZ", "").lstrip(":")
        try:
            if env:
                return ZoneInfo(env)
            with open("/etc/localtime", "rb") as fh:
                return ZoneInfo.from_file(fh, key="Local")
        except (OSError, ValueError, ZoneInfoNotFoundError):
            return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class CompiledInterval:
    """One entry of a named interval's ``time_intervals`` list, ready to test times."""

    times: tuple[tuple[int, int], ...] | None  # (start minute, end minute exclusive)
    weekdays: tuple[InclusiveRange, ...] | None  # 0 = Sunday
    days_of_month: tuple[InclusiveRange, ...] | None
    months: tuple[InclusiveRange, ...] | None
    years: tuple[InclusiveRange, ...] | None
    zone: tzinfo

    def contains(self, t: float) -> bool:
        """Whether Unix time ``t`` falls in this interval."""
        local = datetime.fromtimestamp(t, UTC).astimezone(self.zone)
        if self.times is not None:
            minute = local.hour * 60 + local.minute
            if not any(start <= minute < end for start, end in self.times):
                return False
        if self.days_of_month is not None and not _in_days_of_month(self.days_of_month, local):
            return False
        if self.months is not None and not any(r.begin <= local.month <= r.end for r in self.months):
            return False
        if self.weekdays is not None:
            weekday = (local.weekday() + 1) % 7  # Python counts from Monday, Go from Sunday
            if not any(r.begin <= weekday <= r.end for r in self.weekdays):
                return False
        return self.years is None or any(r.begin <= local.year <= r.end for r in self.years)


def _in_days_of_month(ranges: Iterable[InclusiveRange], local: datetime) -> bool:
    days = calendar.monthrange(local.year, local.month)[1]
    for r in ranges:
        begin = days + r.begin + 1 if r.begin < 0 else r.begin
        end = days + r.end + 1 if r.end < 0 else r.end
        if begin > days:  # e.g. day 31 in a 30-day month never matches
            continue
        begin = max(-days, min(begin, days))
        end = max(-days, min(end, days))
        if begin <= local.day <= end:
            return True
    return False


# What compiling reads of the configuration model (pipeline.foundation.amconfig.model, which
# imports this module's parsers): its shape, not its classes.
class _TimeRange(Protocol):
    @property
    def start_minute(self) -> int: ...

    @property
    def end_minute(self) -> int: ...


class _IntervalSpec(Protocol):
    @property
    def times(self) -> Sequence[_TimeRange] | None: ...

    @property
    def weekdays(self) -> Sequence[InclusiveRange] | None: ...

    @property
    def days_of_month(self) -> Sequence[InclusiveRange] | None: ...

    @property
    def months(self) -> Sequence[InclusiveRange] | None: ...

    @property
    def years(self) -> Sequence[InclusiveRange] | None: ...

    @property
    def location(self) -> str | None: ...


class _NamedInterval(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def time_intervals(self) -> Sequence[_IntervalSpec]: ...


class _IntervalConfig(Protocol):
    @property
    def mute_time_intervals(self) -> Sequence[_NamedInterval]: ...

    @property
    def time_intervals(self) -> Sequence[_NamedInterval]: ...


def compile_interval(spec: _IntervalSpec) -> CompiledInterval:
    return CompiledInterval(
        times=None if spec.times is None else tuple((r.start_minute, r.end_minute) for r in spec.times),
        weekdays=None if spec.weekdays is None else tuple(spec.weekdays),
        days_of_month=None if spec.days_of_month is None else tuple(spec.days_of_month),
        months=None if spec.months is None else tuple(spec.months),
        years=None if spec.years is None else tuple(spec.years),
        zone=load_location(spec.location or ""),
    )


@dataclass(frozen=True, slots=True)
class TimeIntervals:
    """All named intervals of a config (``time_intervals`` and ``mute_time_intervals``)."""

    by_name: Mapping[str, tuple[CompiledInterval, ...]]

    def contains(self, name: str, t: float) -> bool:
        """True when ``t`` is inside any entry of the named interval (KeyError if unknown)."""
        return any(iv.contains(t) for iv in self.by_name[name])

    def active(self, names: Iterable[str], t: float) -> list[str]:
        """The names among ``names`` whose interval contains ``t``."""
        return [name for name in names if self.contains(name, t)]


def compile_time_intervals(config: _IntervalConfig) -> TimeIntervals:
    named = [*config.mute_time_intervals, *config.time_intervals]
    return TimeIntervals({ti.name: tuple(compile_interval(s) for s in ti.time_intervals) for ti in named})


class _TimedRoute(Protocol):
    @property
    def mute_time_intervals(self) -> Sequence[str]: ...

    @property
    def active_time_intervals(self) -> Sequence[str]: ...


def is_muted(route: _TimedRoute, t: float, intervals: TimeIntervals) -> tuple[bool, list[str]]:
    """Whether a route's notifications are muted at ``t``, and by which intervals.

    Muted when inside any ``mute_time_intervals`` entry, or when the route has
    ``active_time_intervals`` and ``t`` is inside none of them (then all are reported).
    """
    muted_by = intervals.active(route.mute_time_intervals, t)
    if muted_by:
        return True, muted_by
    if route.active_time_intervals and not intervals.active(route.active_time_intervals, t):
        return True, list(route.active_time_intervals)
    return False, []
