"""Go's ``fmt.Sprintf`` for templates' ``printf``: verbs %v %s %d %q %x %X %o %b %c %t %e %f %g %%,
flags ``-+# 0``, width and precision (also ``*``), and Go's error forms
(``%!d(string=x)``, ``%!d(MISSING)``, ``%!(EXTRA int=2)``)."""

from __future__ import annotations

import math
from typing import Any

from ..gotime import GoTime
from .values import STRUCT_FIELDS, GoDuration, SafeHTML, SafeURL, format_float, go_type, value_string

__all__ = ["go_quote", "sprintf"]


def go_quote(s: str) -> str:
    """``strconv.Quote``: double-quoted with Go escapes; printable characters kept."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}[ch])
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


class _Spec:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "width", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.zero = self.space = False
        self.width: int | None = None
        self.prec: int | None = None


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    w = spec.width
    if w is None or len(s) >= w:
        return s
    if spec.minus:
        return s + " " * (w - len(s))
    if spec.zero:  # Go pads every kind with zeros, after the sign of a number
        sign = s[0] if numeric and s[:1] in ("+", "-", " ") else ""
        return sign + "0" * (w - len(s)) + s[len(sign):]
    return " " * (w - len(s)) + s


def _sign(neg: bool, spec: _Spec) -> str:
    return "-" if neg else "+" if spec.plus else " " if spec.space else ""


def _int(v: int, verb: str, spec: _Spec) -> str:
    neg = v < 0
    a = -v if neg else v
    if verb == "d" or verb == "v":
        body = str(a)
    elif verb in "xX":
        body = format(a, "x" if verb == "x" else "X")
        if spec.sharp:
            body = ("0x" if verb == "x" else "0X") + body
    elif verb == "o":
        body = format(a, "o")
        if spec.sharp and body[0] != "0":
            body = "0" + body
    elif verb == "O":
        body = "0o" + format(a, "o")
    elif verb == "b":
        body = format(a, "b")
    elif verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", spec)
    elif verb == "q":
        return _pad("'" + go_quote(chr(v))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'", spec)
    elif verb == "U":
        body = f"U+{a:04X}"
    else:
        return _bad(verb, v, spec)
    if spec.prec is not None:
        body = body.rjust(spec.prec, "0") if spec.prec else ("" if a == 0 else body)
        return _pad(_sign(neg, spec) + body, _nozero(spec))
    return _pad(_sign(neg, spec) + body, spec, numeric=True)


def _nozero(spec: _Spec) -> _Spec:
    s = _Spec()
    s.minus, s.width = spec.minus, spec.width
    return s


def _float(v: float, verb: str, spec: _Spec) -> str:
    if verb not in "vfFeEgG":
        if verb in "xXb":
            return _bad(verb, v, spec) if verb == "b" else _pad(v.hex(), spec)
        return _bad(verb, v, spec)
    if math.isnan(v) or math.isinf(v):
        body = "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
        if math.isinf(v) and v > 0 and not spec.plus:
            body = "Inf" if not spec.space else " Inf"
        s = _Spec()
        s.minus, s.width = spec.minus, spec.width
        return _pad(body, s)
    neg = math.copysign(1, v) < 0
    a = abs(v)
    if verb == "v":
        verb = "g"
    if verb in "gG" and spec.prec is None:
        body = format_float(a)
        if verb == "G":
            body = body.upper()
    elif verb in "fF":
        body = format(a, f".{6 if spec.prec is None else spec.prec}f")
    elif verb in "eE":
        body = format(a, f".{6 if spec.prec is None else spec.prec}{verb}")
    else:
        body = format(a, f".{spec.prec or 1}{verb.lower()}")
        if "e" in body:
            mant, exp = body.split("e")
            body = f"{mant}e{exp[0]}{int(exp[1:]):02d}"
        if verb == "G":
            body = body.upper()
    return _pad(_sign(neg, spec) + body, spec, numeric=True)


def _string(s: str, verb: str, spec: _Spec) -> str:
    if verb in "vs":
        if spec.prec is not None:
            s = s[:spec.prec]
        return _pad(s, spec)
    if verb == "q":
        if spec.prec is not None:
            s = s[:spec.prec]
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(go_quote(s), spec)
    if verb in "xX":
        data = s.encode()
        if spec.prec is not None:
            data = data[:spec.prec]
        body = data.hex() if verb == "x" else data.hex().upper()
        if spec.sharp:
            body = ("0x" if verb == "x" else "0X") + body
        return _pad(body, spec)
    return _bad(verb, s, spec)


def _bad(verb: str, v: Any, spec: _Spec | None = None) -> str:
    """Go's ``%!verb(type=value)``; the value is printed with ``%v`` and the verb's flags."""
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={_format(v, 'v', spec) if spec is not None else value_string(v)})"


def _format(v: Any, verb: str, spec: _Spec) -> str:
    t = type(v)
    if verb == "T":
        return _pad(go_type(v), spec)
    if v is None:
        return _pad("<nil>", spec) if verb == "v" else _bad(verb, v)
    if t is bool:
        if verb in "vt":
            return _pad("true" if v else "false", spec)
        return _bad(verb, v, spec)
    if isinstance(v, str):
        return _string(str.__str__(v) if t in (SafeHTML, SafeURL) else v, verb, spec)
    if t is int:
        return _int(v, verb, spec)
    if t is float:
        return _float(v, verb, spec)
    if isinstance(v, GoTime | GoDuration) and verb in "vsqxX":  # Stringers: time.Time, time.Duration
        return _string(str(v), verb, spec)
    if isinstance(v, int):  # time.Duration with %d
        return _int(int(v), verb, spec)
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: kv[0])
        return "map[" + " ".join(f"{_format(k, verb, spec)}:{_format(x, verb, spec)}" for k, x in items) + "]"
    fields = STRUCT_FIELDS.get(t)
    if fields is not None:
        if spec.plus and verb == "v":
            return "{" + " ".join(f"{f}:{_format(getattr(v, f), verb, spec)}" for f in fields) + "}"
        return "{" + " ".join(_format(getattr(v, f), verb, spec) for f in fields) + "}"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_format(x, verb, spec) for x in v) + "]"
    return _pad(value_string(v), spec) if verb == "v" else _bad(verb, v)


def sprintf(fmt: str, args: tuple[Any, ...] | list[Any]) -> str:
    """``fmt.Sprintf(fmt, args...)``."""
    out: list[str] = []
    i = 0
    n = len(fmt)
    argi = 0
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        spec = _Spec()
        while i < n and fmt[i] in "-+# 0":
            c = fmt[i]
            if c == "-":
                spec.minus = True
                spec.zero = False
            elif c == "+":
                spec.plus = True
            elif c == "#":
                spec.sharp = True
            elif c == "0":
                spec.zero = not spec.minus
            else:
                spec.space = True
            i += 1
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and type(args[argi]) is int:
                spec.width = args[argi]
                if spec.width < 0:
                    spec.minus, spec.width = True, -spec.width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                spec.width = int(fmt[k:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and type(args[argi]) is int and args[argi] >= 0:
                    spec.prec = args[argi]
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                spec.prec = int(fmt[k:i]) if i > k else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format(arg, verb, spec))
    if argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={value_string(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
