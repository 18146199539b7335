"""Go's ``time.Parse(layout, value)`` for the ``toDate`` function: the common layout elements."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

from ..gotime import _STD, GoTime, _FixedZone
from .errors import ExecError

__all__ = ["parse_time"]

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_ELEMENTS = {
    "2006": r"(?P<year>\d{4})", "06": r"(?P<year2>\d{2})",
    "01": r"(?P<month>\d{2})", "1": r"(?P<month>\d{1,2})",
    "January": r"(?P<monthname>[A-Za-z]+)", "Jan": r"(?P<monthabbr>[A-Za-z]{3})",
    "Monday": r"[A-Za-z]+", "Mon": r"[A-Za-z]{3}",
    "02": r"(?P<day>\d{2})", "2": r"(?P<day>\d{1,2})", "_2": r" ?(?P<day>\d{1,2})",
    "002": r"(?P<yday>\d{3})", "__2": r" {0,2}(?P<yday>\d{1,3})",
    "15": r"(?P<hour>\d{1,2})", "03": r"(?P<hour12>\d{2})", "3": r"(?P<hour12>\d{1,2})",
    "04": r"(?P<minute>\d{2})", "4": r"(?P<minute>\d{1,2})",
    "05": r"(?P<second>\d{2})", "5": r"(?P<second>\d{1,2})",
    "PM": r"(?P<ampm>AM|PM)", "pm": r"(?P<ampm>am|pm)",
    "MST": r"(?P<zonename>[A-Z]{3,5}|[+-]\d{2,4})",
}


def _element_regex(elem: str) -> str:
    if elem in _ELEMENTS:
        return _ELEMENTS[elem]
    if elem[0] in "Z-":
        z = "Z|" if elem[0] == "Z" else ""
        shape = elem[1:].replace("07", r"\d{2}").replace("00", r"\d{2}")
        return f"(?P<zone>{z}[+-]{shape})"
    return r"(?P<frac>[.,]\d+)" if elem[1] == "9" else rf"(?P<frac>[.,]\d{{{len(elem) - 1}}})"


def parse_time(layout: str, value: str) -> GoTime:
    """``value`` read with a Go reference layout; raises :class:`ExecError` when it does not fit."""
    parts: list[str] = []
    pos = 0
    seen: set[str] = set()
    for m in _STD.finditer(layout):
        parts.append(re.escape(layout[pos:m.start()]))
        rx = _element_regex(m.group(0))
        name = re.search(r"\?P<(\w+)>", rx)
        if name and name.group(1) in seen:
            rx = re.sub(r"\?P<\w+>", "?:", rx)
        elif name:
            seen.add(name.group(1))
        parts.append(rx)
        pos = m.end()
    parts.append(re.escape(layout[pos:]))
    m2 = re.fullmatch("".join(parts), value)
    if m2 is None:
        raise ExecError(f'parsing time "{value}" as "{layout}": cannot parse')
    g = {k: v for k, v in m2.groupdict().items() if v is not None}
    year = int(g["year"]) if "year" in g else (int(g["year2"]) + (1900 if int(g["year2"]) >= 69 else 2000)
                                               if "year2" in g else 0)
    month = int(g.get("month", 1))
    if "monthname" in g or "monthabbr" in g:
        word = (g.get("monthname") or g["monthabbr"]).lower()
        found = [i for i, mn in enumerate(_MONTHS) if mn == word or mn[:3] == word]
        if not found:
            raise ExecError(f'parsing time "{value}": month out of range')
        month = found[0] + 1
    hour = int(g.get("hour", 0))
    if "hour12" in g:
        hour = int(g["hour12"]) % 12 + (12 if g.get("ampm", "").lower() == "pm" else 0)
    micro = int(g.get("frac", ".0")[1:].ljust(6, "0")[:6])
    tz = UTC
    zone = g.get("zone")
    if zone and zone not in ("Z",):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        off = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0), seconds=int(digits[4:6] or 0))
        tz = _FixedZone(sign * off)  # type: ignore[assignment]
    try:
        return GoTime(max(year, 1), month, int(g.get("day", 1)), hour, int(g.get("minute", 0)),
                      int(g.get("second", 0)), micro, tzinfo=tz)
    except ValueError as exc:
        raise ExecError(f'parsing time "{value}": {exc}') from None
