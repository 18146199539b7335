"""Go's view of template values: type names, truth, and ``fmt``'s ``%v`` printing.

Python values stand for Go ones: ``None`` is nil, ``int`` is int, ``float`` is float64,
``str`` is string, ``list`` is ``[]interface {}``, ``dict`` is ``map[string]interface {}``.
The data model's classes (``KV``, ``Alerts``, ``Pairs``, ``GoTime``...) print as their Go
types do: maps sorted as ``map[k:v]``, slices as ``[a b]``, structs as ``{f1 f2}``.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

from ..data import KV, Alerts, Data, EscalationData, Pair, Pairs, Strings, TemplateAlert
from ..gotime import GoTime

__all__ = [
    "MISSING",
    "AlertSlice",
    "STRUCT_FIELDS",
    "GoDuration",
    "SafeHTML",
    "SafeURL",
    "format_float",
    "go_type",
    "is_struct",
    "printable",
    "sprint",
    "struct_fields",
    "truth",
    "value_string",
]

MISSING: Any = object()  # "no value" (an absent final argument)


class SafeHTML(str):
    """html/template's ``template.HTML``: text the HTML escaper leaves alone (``safeHtml``)."""

    __slots__ = ()


class SafeURL(str):
    """html/template's ``template.URL``: a URL the escaper does not filter (``safeUrl``)."""

    __slots__ = ()


class AlertSlice(list[TemplateAlert]):
    """``[]template.Alert``: what ``.Alerts.Firing`` and ``.Alerts.Resolved`` return (no methods)."""

    __slots__ = ()


class GoDuration(int):
    """Go's ``time.Duration``: nanoseconds, printed as ``1h2m3.5s``."""

    __slots__ = ()

    def __str__(self) -> str:
        return _duration_string(int(self))

    def Seconds(self) -> float:
        return int(self) / 1e9

    def Minutes(self) -> float:
        return int(self) / 6e10

    def Hours(self) -> float:
        return int(self) / 3.6e12

    def Milliseconds(self) -> int:
        return int(int(self) / 1e6)

    def String(self) -> str:
        return str(self)


def _frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        d = v % 10
        printed = printed or d != 0
        if printed:
            digits = str(d) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def _duration_string(d: int) -> str:
    """Go's ``Duration.String``."""
    neg = d < 0
    u = -d if neg else d
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1000:
            text = f"{u}ns"
        elif u < 1_000_000:
            f, w = _frac(u, 3)
            text = f"{w}{f}µs"
        else:
            f, w = _frac(u, 6)
            text = f"{w}{f}ms"
        return "-" + text if neg else text
    f, u = _frac(u, 9)
    text = f"{u % 60}{f}s"
    u //= 60
    if u > 0:
        text = f"{u % 60}m" + text
        u //= 60
        if u > 0:
            text = f"{u}h" + text
    return "-" + text if neg else text


# Struct fields in Go's declaration order (what %v prints). Data has Tocsin-only fields
# (GroupKey, TruncatedAlerts, Now) that templates may read but Go would not print.
STRUCT_FIELDS: dict[type, tuple[str, ...]] = {
    Data: ("Receiver", "Status", "Alerts", "GroupLabels", "CommonLabels", "CommonAnnotations", "ExternalURL"),
    TemplateAlert: ("Status", "Labels", "Annotations", "StartsAt", "EndsAt", "GeneratorURL", "Fingerprint"),
    Pair: ("Name", "Value"),
    EscalationData: ("Level", "Policy"),  # Tocsin's .Escalation
}
_READABLE: dict[type, frozenset[str]] = {
    Data: frozenset(f.name for f in dataclasses.fields(Data)),
    TemplateAlert: frozenset(STRUCT_FIELDS[TemplateAlert]),
    Pair: frozenset(STRUCT_FIELDS[Pair]),
    EscalationData: frozenset(STRUCT_FIELDS[EscalationData]),
}

_TYPE_NAMES: dict[type, str] = {
    type(None): "<nil>",
    bool: "bool",
    int: "int",
    float: "float64",
    str: "string",
    SafeHTML: "template.HTML",
    SafeURL: "template.URL",
    KV: "template.KV",
    dict: "map[string]interface {}",
    Strings: "[]string",
    Pairs: "template.Pairs",
    Alerts: "template.Alerts",
    AlertSlice: "[]template.Alert",
    list: "[]interface {}",
    Pair: "template.Pair",
    TemplateAlert: "template.Alert",
    Data: "template.Data",
    EscalationData: "tocsin.Escalation",
    GoTime: "time.Time",
    GoDuration: "time.Duration",
}


def go_type(v: Any) -> str:
    """The Go type name of a value, for error messages and ``%!verb(type=value)``."""
    return _TYPE_NAMES.get(type(v)) or type(v).__name__


def struct_fields(t: type) -> frozenset[str] | None:
    """The readable field names of a struct type, or ``None`` when ``t`` is not a struct."""
    return _READABLE.get(t)


def is_struct(v: Any) -> bool:
    return type(v) in STRUCT_FIELDS


def truth(v: Any) -> bool:
    """Go's ``template.IsTrue``: false for false, 0, "", nil and empty slices and maps."""
    if v is None:
        return False
    if isinstance(v, bool | int | float | str | list | dict | tuple) and not isinstance(v, Pair):
        return bool(v)
    return True  # structs and times are always true


def format_float(f: float) -> str:
    """``%v`` of a float64: the shortest representation, exponent form from 1e6 or below 1e-4."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = exp + len(digits)  # position of the decimal point relative to the digits
    x = dp - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 6:  # strconv.FormatFloat(f, 'g', -1): shortest, exponent threshold 6
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return neg + ds + "0" * (dp - len(ds))
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def value_string(v: Any, depth: int = 0) -> str:
    """``fmt.Sprint`` of one value (``%v``)."""
    t = type(v)
    if t is str or t is SafeHTML or t is SafeURL:
        return v  # type: ignore[no-any-return]
    if v is None:
        return "<nil>"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return format_float(v)
    if t is GoTime or t is GoDuration:
        return str(v)
    fields = STRUCT_FIELDS.get(t)
    if fields is not None:
        return "{" + " ".join(value_string(getattr(v, f), depth + 1) for f in fields) + "}"
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: kv[0])
        return "map[" + " ".join(f"{value_string(k, depth + 1)}:{value_string(x, depth + 1)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(value_string(x, depth + 1) for x in v) + "]"
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, int):
        return str(int(v))
    return str(v)


def printable(v: Any) -> str:
    """What ``{{ pipeline }}`` writes: ``<no value>`` for nil, else ``%v``."""
    if type(v) is str:
        return v  # type: ignore[no-any-return]
    if v is None:
        return "<no value>"
    return value_string(v)


def _is_string(v: Any) -> bool:
    return isinstance(v, str)


def sprint(args: tuple[Any, ...] | list[Any]) -> str:
    """``fmt.Sprint``: spaces between operands when neither is a string."""
    out: list[str] = []
    prev_string = True
    for i, a in enumerate(args):
        is_s = _is_string(a)
        if i > 0 and not is_s and not prev_string:
            out.append(" ")
        out.append(value_string(a))
        prev_string = is_s
    return "".join(out)
