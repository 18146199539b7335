"""Durations as Alertmanager's config writes them.

Two syntaxes exist: Prometheus' ``model.Duration`` (``1h30m``, ``1d``, ``1w``, ``1y``, integer
amounts, units from largest to smallest) for route timers and ``resolve_timeout``, and Go's
``time.Duration`` (``1.5s``, ``300ms``, no days) for integration ``timeout`` fields.
Both come back as float seconds.
"""

from __future__ import annotations

import re

from contracts.matchers import go_quote

__all__ = ["format_duration", "parse_duration", "parse_go_duration"]

_MS = 1
_PROM_UNITS: dict[str, tuple[int, int]] = {  # unit -> (position, milliseconds)
    "y": (1, 365 * 24 * 3600 * 1000),
    "w": (2, 7 * 24 * 3600 * 1000),
    "d": (3, 24 * 3600 * 1000),
    "h": (4, 3600 * 1000),
    "m": (5, 60 * 1000),
    "s": (6, 1000),
    "ms": (7, _MS),
}
_PROM_PART = re.compile(r"([0-9]+)([^0-9]+)")
_MAX_NS = (1 << 63) - 1


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``0``, ``5m``, ``1h30m``, ``250ms``, ``1d``) into seconds."""
    if text == "0":
        return 0.0
    if text == "":
        raise ValueError('invalid duration "": empty duration string')
    pos = 0
    last_unit = 0
    total_ms = 0
    while pos < len(text):
        m = _PROM_PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {go_quote(text)}")
        unit = _PROM_UNITS.get(m.group(2))
        if unit is None:
            raise ValueError(f"invalid duration {go_quote(text)}: unknown unit {go_quote(m.group(2))}")
        if unit[0] <= last_unit:  # units must go from the largest to the smallest, once each
            raise ValueError(f"invalid duration {go_quote(text)}: units must go from largest to smallest")
        last_unit = unit[0]
        total_ms += int(m.group(1)) * unit[1]
        if total_ms * 1_000_000 > _MAX_NS:
            raise ValueError(f"invalid duration {go_quote(text)}: out of range")
        pos = m.end()
    return total_ms / 1000


def format_duration(seconds: float) -> str:
    """Render seconds as Prometheus does (``5m``, ``1h30m``, ``90d``, ``0s``)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    out = []
    # Years and weeks only when exact: "90d" reads better than "12w6d".
    for unit, exact in (("y", True), ("w", True), ("d", False), ("h", False), ("m", False), ("s", False)):
        mult = _PROM_UNITS[unit][1]
        if exact and ms % mult:
            continue
        if ms >= mult:
            out.append(f"{ms // mult}{unit}")
            ms %= mult
    if ms:
        out.append(f"{ms}ms")
    return sign + "".join(out)


_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]+)")


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.Duration`` string (``10s``, ``1.5h``, ``1h2m3.5s``, ``-2m``) into seconds."""
    orig = text
    sign = 1.0
    if text[:1] in ("-", "+"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {go_quote(orig)}")
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _GO_PART.match(text, pos)
        if m is None or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {go_quote(orig)}")
        unit = _GO_UNITS.get(m.group(2))
        if unit is None:
            raise ValueError(f"invalid duration {go_quote(orig)}: unknown unit {go_quote(m.group(2))}")
        total += float(m.group(1)) * unit
        pos = m.end()
    return sign * total
