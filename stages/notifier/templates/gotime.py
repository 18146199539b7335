"""Times as Alertmanager's templates show them: Go's ``time.Time`` printing and layouts.

Alertmanager's template data holds Go times: they print as ``2006-01-02 15:04:05 +0000 UTC``,
format with Go reference layouts (``.StartsAt.Format "2006-01-02"``, the ``date`` function),
and encode to JSON as RFC 3339 with up to nine fractional digits, trailing zeros dropped.
:class:`GoTime` gives templates the same behaviour, so layouts copied from an
``alertmanager.yml`` keep working.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = [
    "RFC3339_NANO",
    "ZERO_TIME",
    "GoTime",
    "from_unix",
    "go_format",
    "gotime",
    "humanize_duration",
    "parse_rfc3339",
    "rfc3339",
    "rfc3339_nano",
]

RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
_GO_STRING = "2006-01-02 15:04:05.999999999 -0700 MST"

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Go layout elements, longest first where one is a prefix of another (Go's nextStdChunk).
_STD = re.compile(
    r"January|Jan|Monday|Mon|MST|2006|002|__2|_2(?!006)|01|02|03|04|05|06|15|1|2|3|4|5|PM|pm"
    r"|Z07:00:00|Z070000|Z07:00|Z0700|Z07|-07:00:00|-070000|-07:00|-0700|-07"
    r"|[.,](?:0+|9+)(?![0-9])"
)


class GoTime(datetime):
    """An aware datetime that prints like Go's ``time.Time`` and has its common methods."""

    def __str__(self) -> str:
        return go_format(self, _GO_STRING)

    def Format(self, layout: str) -> str:
        return go_format(self, layout)

    def Unix(self) -> int:
        return int(self.timestamp() // 1)

    def IsZero(self) -> bool:
        return self == ZERO_TIME

    def UTC(self) -> GoTime:
        return gotime(self.astimezone(UTC))


def gotime(dt: datetime) -> GoTime:
    """The same instant as a :class:`GoTime` (naive datetimes are taken as UTC)."""
    tz = dt.tzinfo or UTC
    return GoTime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, tzinfo=tz, fold=dt.fold)


ZERO_TIME = GoTime(1, 1, 1, tzinfo=UTC)  # Go's zero time.Time: Alertmanager's "unset"


def _offset(dt: datetime) -> timedelta:
    return dt.utcoffset() or timedelta(0)


def _zone(dt: datetime, elem: str) -> str:
    secs = int(_offset(dt).total_seconds())
    if elem.startswith("Z") and secs == 0:
        return "Z"
    sign = "-" if secs < 0 else "+"
    h, rest = divmod(abs(secs), 3600)
    m, s = divmod(rest, 60)
    shapes = {
        "07": f"{h:02d}",
        "0700": f"{h:02d}{m:02d}",
        "07:00": f"{h:02d}:{m:02d}",
        "070000": f"{h:02d}{m:02d}{s:02d}",
        "07:00:00": f"{h:02d}:{m:02d}:{s:02d}",
    }
    return sign + shapes[elem[1:]]


def _zone_name(dt: datetime) -> str:
    name = dt.tzname()
    if name:
        return name
    return _zone(dt, "-0700")  # Go prints the numeric offset when a zone has no abbreviation


def _fraction(dt: datetime, elem: str) -> str:
    digits = len(elem) - 1
    nanos = f"{dt.microsecond:06d}000"[:digits]
    if elem[1] == "0":
        return elem[0] + nanos
    nanos = nanos.rstrip("0")
    return elem[0] + nanos if nanos else ""


def _element(dt: datetime, elem: str) -> str:
    hour12 = dt.hour % 12 or 12
    simple = {
        "January": _MONTHS[dt.month - 1],
        "Jan": _MONTHS[dt.month - 1][:3],
        "Monday": _DAYS[dt.weekday()],
        "Mon": _DAYS[dt.weekday()][:3],
        "2006": f"{dt.year:04d}",
        "06": f"{dt.year % 100:02d}",
        "01": f"{dt.month:02d}",
        "1": str(dt.month),
        "02": f"{dt.day:02d}",
        "_2": f"{dt.day:2d}",
        "2": str(dt.day),
        "002": f"{dt.timetuple().tm_yday:03d}",
        "__2": f"{dt.timetuple().tm_yday:3d}",
        "15": f"{dt.hour:02d}",
        "03": f"{hour12:02d}",
        "3": str(hour12),
        "04": f"{dt.minute:02d}",
        "4": str(dt.minute),
        "05": f"{dt.second:02d}",
        "5": str(dt.second),
        "PM": "PM" if dt.hour >= 12 else "AM",
        "pm": "pm" if dt.hour >= 12 else "am",
    }
    if elem in simple:
        return simple[elem]
    if elem == "MST":
        return _zone_name(dt)
    if elem[0] in "Z-":
        return _zone(dt, elem)
    return _fraction(dt, elem)


def go_format(dt: datetime, layout: str) -> str:
    """Format ``dt`` with a Go reference layout (``Mon Jan 2 15:04:05 MST 2006``)."""
    if layout == RFC3339_NANO:  # every alert's startsAt/endsAt: the hot path of a notification
        return rfc3339_nano(dt)
    return _STD.sub(lambda m: _element(dt, m.group(0)), layout)


def rfc3339_nano(dt: datetime) -> str:
    """Go's RFC3339Nano: fraction without trailing zeros (none when zero), ``Z`` for UTC."""
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    off = dt.utcoffset()
    if not off:
        return text + "Z"
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def rfc3339(ts: float | None) -> str:
    """Unix seconds as Go's JSON time (RFC 3339, UTC); ``None`` is Go's zero time."""
    if ts is None:
        return go_format(ZERO_TIME, RFC3339_NANO)
    return go_format(from_unix(ts), RFC3339_NANO)


class _FixedZone(tzinfo):
    """A zone known only by its offset, as Go's ``time.Parse`` makes for ``+02:00``: no name."""

    def __init__(self, offset: timedelta) -> None:
        self._offset = offset

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self._offset

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str | None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FixedZone) and other._offset == self._offset

    def __hash__(self) -> int:
        return hash(self._offset)


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(text: str) -> GoTime:
    """Go's ``time.Parse(time.RFC3339Nano, text)`` (to the microsecond): ``Z`` is UTC, an
    offset is a zone without a name. Raises ``ValueError`` for anything else."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "").ljust(6, "0")[:6])
    tz: tzinfo = UTC
    if not m.group(8):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        tz = _FixedZone(-offset if m.group(9) == "-" else offset)
    return GoTime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def from_unix(ts: float | None, tz: tzinfo = UTC) -> GoTime:
    """Unix seconds (rounded to the microsecond) as a :class:`GoTime`; ``None`` is the zero time."""
    if ts is None:
        return ZERO_TIME
    return gotime(datetime.fromtimestamp(ts, tz=tz))


def humanize_duration(value: float | int | str | timedelta) -> str:
    """Prometheus' ``humanizeDuration``: ``90`` -> ``1m 30s``, ``0.1`` -> ``100ms``."""
    v = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        whole = int(v)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{v:.4g}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{v:.4g}{prefix}s"
