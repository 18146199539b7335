"""Template functions: Go's built-ins and Alertmanager's, with Go's argument order.

A pipeline ``X | f a b`` calls ``f(a, b, X)``: the piped value is the last argument, as in
Go. ``and`` and ``or`` are evaluated lazily by the executor (Go 1.18+); ``now`` and
``since`` read the data's send time, so a retried send renders the same text.
Regular expressions are RE2 (``google-re2``), the syntax and semantics of Go's ``regexp``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2

from ..data import KV, Data, Strings, TemplateAlert
from ..functions import to_json
from ..gotime import GoTime, go_format, gotime, humanize_duration
from .errors import ExecError
from .fmt import sprintf
from .timeparse import parse_time
from .values import GoDuration, SafeHTML, SafeURL, go_type, printable, sprint, truth, value_string

__all__ = ["FUNCS", "NEEDS_NOW", "eval_args", "html_escape", "js_escape", "query_escape"]

_RE_OPTIONS = re2.Options()
_RE_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def _regexp(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE_OPTIONS)
    except re2.error as exc:
        msg = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ExecError(f"error parsing regexp: {msg}: `{pattern}`") from None


def _string(v: Any, fn: str) -> str:
    if type(v) is not str:  # Go: template.HTML (safeHtml) is not a string parameter either
        raise ExecError(f"wrong type for value; expected string; got {go_type(v)}")
    return str.__str__(v)


def _time(v: Any, fn: str) -> GoTime:
    if not isinstance(v, datetime):
        raise ExecError(f"wrong type for value; expected time.Time; got {go_type(v)}")
    return v if isinstance(v, GoTime) else gotime(v)


def eval_args(args: tuple[Any, ...]) -> str:
    """text/template's evalArgs: a lone string as is, else ``fmt.Sprint``."""
    if len(args) == 1 and isinstance(args[0], str):
        return str.__str__(args[0])
    return sprint(tuple("<no value>" if a is None else a for a in args))


_HTML = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_HTML_TABLE = str.maketrans(_HTML)


def html_escape(s: str) -> str:
    """text/template's ``HTMLEscapeString``."""
    return s.translate(_HTML_TABLE)


def js_escape(s: str) -> str:
    """text/template's ``JSEscapeString``."""
    out: list[str] = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("\\'")
        elif c == '"':
            out.append('\\"')
        elif c in "<>&=":
            out.append(f"\\u{ord(c):04X}")
        elif ord(c) < 0x20 or (not c.isprintable() and c != " "):
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def query_escape(s: str) -> str:
    """Go's ``url.QueryEscape``."""
    return quote(s, safe="-_.~ ").replace(" ", "+")


# ------------------------------------------------------------------ Go built-ins

_BASIC = {bool: "bool", int: "int", float: "float", str: "string"}


def _kind(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


_NOT_COMPARABLE = (list, dict, Data, TemplateAlert)  # Go: slices, maps and structs holding them


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise ExecError("missing argument for comparison")
    ka = _kind(a)
    for b in others:
        kb = _kind(b)
        if ka != kb:
            if a is not None and b is not None:
                raise ExecError("incompatible types for comparison")
            continue
        if ka == "other":
            if isinstance(a, _NOT_COMPARABLE) or isinstance(b, _NOT_COMPARABLE):
                raise ExecError(f"non-comparable types {value_string(a)}: {go_type(a)}, "
                                f"{go_type(b)}: {value_string(b)}")
            if type(a) is not type(b):
                raise ExecError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _ordered(a: Any, b: Any) -> None:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise ExecError("invalid type for comparison")
    if ka != kb:
        raise ExecError("incompatible types for comparison")


def _lt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a <= b)


def _gt(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a > b)


def _ge(a: Any, b: Any) -> bool:
    _ordered(a, b)
    return bool(a >= b)


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, list | dict) or (isinstance(v, tuple) and not hasattr(v, "_fields")):
        return len(v)
    if v is None:
        raise ExecError("len of nil pointer")
    raise ExecError(f"len of type {go_type(v)}")


def _int_index(i: Any, what: str) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise ExecError(f"cannot index slice/array with type {go_type(i)}")
    return int(i)


def _index(item: Any, *indexes: Any) -> Any:
    v = item
    for i in indexes:
        if v is None:
            raise ExecError("index of untyped nil")
        if isinstance(v, dict):
            if not isinstance(i, str):
                if i is None:
                    raise ExecError("value is nil; should be of type string")
                raise ExecError(f"value has type {go_type(i)}; should be string")
            v = v.get(i, "" if isinstance(v, KV) else None)
        elif isinstance(v, str):
            data = v.encode()
            k = _int_index(i, "string")
            if not 0 <= k < len(data):
                raise ExecError(f"index out of range: {k}")
            v = data[k]
        elif isinstance(v, list):
            k = _int_index(i, "slice")
            if not 0 <= k < len(v):
                raise ExecError(f"index out of range: {k}")
            v = v[k]
        else:
            raise ExecError(f"can't index item of type {go_type(v)}")
    return v


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise ExecError("slice of untyped nil")
    if len(indexes) > 3:
        raise ExecError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise ExecError("cannot 3-index slice a string")
        seq: Any = item.encode()
    elif isinstance(item, list):
        seq = item
    else:
        raise ExecError(f"can't slice item of type {go_type(item)}")
    cap = len(seq)
    idx = [_int_index(i, "slice") for i in indexes]
    for k in idx:
        if not 0 <= k <= cap:
            raise ExecError(f"index out of range: {k}")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(seq)
    if lo > hi:
        raise ExecError(f"invalid slice index: {lo} > {hi}")
    if len(idx) == 3 and hi > idx[2]:
        raise ExecError(f"invalid slice index: {hi} > {idx[2]}")
    part = seq[lo:hi]
    if isinstance(item, str):
        return part.decode(errors="replace")
    return type(item)(part) if isinstance(item, Strings) else list(part)


def _not(v: Any) -> bool:
    return not truth(v)


def _call(fn: Any, *args: Any) -> Any:
    raise ExecError(f"non-function {printable(fn)} of type {go_type(fn)}")


def _printf(fmt: Any, *args: Any) -> str:
    return sprintf(_string(fmt, "printf"), args)


def _println(*args: Any) -> str:
    return " ".join(value_string(a) for a in args) + "\n"


# ------------------------------------------------------------------ Alertmanager's


def _to_upper(s: Any) -> str:
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in _string(s, "toUpper"))


def _to_lower(s: Any) -> str:
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in _string(s, "toLower"))


_WORD = re.compile(r"[^\W]+(?:['.:\u00b7\u2019][^\W]+)*")


def _title(s: Any) -> str:
    """Alertmanager's ``title`` (``cases.Title``): each word's first letter upper, the rest lower."""
    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        i = next((k for k, c in enumerate(w) if c.isalpha()), len(w))  # the first letter: "3rd" -> "3Rd"
        return w[:i] + w[i:i + 1].upper() + w[i + 1:].lower()

    return _WORD.sub(word, _string(s, "title"))


def _join(sep: Any, items: Any) -> str:
    sep = _string(sep, "join")
    if not isinstance(items, Strings):
        raise ExecError(f"wrong type for value; expected []string; got {go_type(items)}")
    return sep.join(items)


def _match(pattern: Any, text: Any) -> bool:
    return _regexp(_string(pattern, "match")).search(_string(text, "match")) is not None


def _expand(template: str) -> Callable[[Any], str]:
    def expand(m: Any) -> str:
        out: list[str] = []
        i = 0
        n = len(template)
        while i < n:
            c = template[i]
            if c != "$" or i + 1 >= n:
                out.append(c)
                i += 1
                continue
            nxt = template[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "{":
                close = template.find("}", i + 2)
                name = template[i + 2:close] if close > 0 else ""
                if close < 0 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                    out.append(c)
                    i += 1
                    continue
                i = close + 1
            else:
                j = i + 1
                while j < n and (template[j].isalnum() or template[j] == "_"):
                    j += 1
                name = template[i + 1:j]
                if not name:
                    out.append(c)
                    i += 1
                    continue
                i = j
            try:
                value = m.group(int(name)) if name.isdigit() else m.group(name)
            except (IndexError, ValueError):
                value = None
            out.append(value or "")
        return "".join(out)

    return expand


def _re_replace_all(pattern: Any, repl: Any, text: Any) -> str:
    regexp = _regexp(_string(pattern, "reReplaceAll"))
    return str(regexp.sub(_expand(_string(repl, "reReplaceAll")), _string(text, "reReplaceAll")))


def _string_slice(*items: Any) -> Strings:
    return Strings(_string(i, "stringSlice") for i in items)


def _url_unescape(s: Any) -> str:
    text = _string(s, "urlUnescape")
    for k, c in enumerate(text):
        if c == "%" and not all(h in "0123456789abcdefABCDEF" for h in text[k + 1:k + 3].ljust(2, "x")):
            raise ExecError(f"invalid URL escape {text[k:k + 3]!r}")
    return unquote_plus(text, errors="strict")


def _date(layout: Any, t: Any) -> str:
    return go_format(_time(t, "date"), _string(layout, "date"))


def _tz(name: Any, t: Any) -> GoTime:
    zone = _string(name, "tz")
    try:
        loc = ZoneInfo(zone) if zone not in ("", "UTC") else None
    except (ZoneInfoNotFoundError, ValueError):
        raise ExecError(f"unknown time zone {zone}") from None
    when = _time(t, "tz")
    if loc is None:
        return gotime(when.astimezone(UTC))
    return gotime(when.astimezone(loc))


def _since(now: GoTime, t: Any) -> GoDuration:
    delta = now - _time(t, "since")
    return GoDuration(round(delta.total_seconds() * 1e6) * 1000)


def _now(now: GoTime) -> GoTime:
    return now


def _humanize_duration(v: Any) -> str:
    if isinstance(v, GoDuration):
        seconds: float = int(v) / 1e9
    elif isinstance(v, bool):
        raise ExecError("can't convert bool to float")
    elif isinstance(v, int | float):
        seconds = float(v)
    elif isinstance(v, str):
        try:
            seconds = float(v)
        except ValueError:
            raise ExecError(f'strconv.ParseFloat: parsing "{v}": invalid syntax') from None
    else:
        raise ExecError(f"can't convert {go_type(v)} to float")
    if math.isinf(seconds) or math.isnan(seconds):
        return humanize_duration(seconds)
    return humanize_duration(seconds)


def _to_json(v: Any) -> str:
    if isinstance(v, GoDuration):
        return str(int(v))
    return to_json(v)


def _list(*items: Any) -> list[Any]:
    return list(items)


def _append(seq: Any, *items: Any) -> list[Any]:
    if not isinstance(seq, list):
        raise ExecError(f"wrong type for value; expected []interface {{}}; got {go_type(seq)}")
    return [*seq, *items]


def _dict(*pairs: Any) -> dict[str, Any]:
    if len(pairs) % 2:
        raise ExecError("dict: odd number of arguments")
    out: dict[str, Any] = {}
    for i in range(0, len(pairs), 2):
        if not isinstance(pairs[i], str):
            raise ExecError(f"dict: key {printable(pairs[i])} is not a string")
        out[str.__str__(pairs[i])] = pairs[i + 1]
    return out


def _to_date(layout: Any, value: Any) -> GoTime:
    return parse_time(_string(layout, "toDate"), _string(value, "toDate"))


FUNCS: dict[str, Callable[..., Any]] = {
    # Go's text/template built-ins (and/or are special-cased by the executor)
    "and": lambda *a: a[-1],
    "or": lambda *a: a[-1],
    "not": _not,
    "call": _call,
    "html": lambda *a: html_escape(eval_args(a)),
    "js": lambda *a: js_escape(eval_args(a)),
    "urlquery": lambda *a: query_escape(eval_args(a)),
    "print": lambda *a: sprint(a),
    "printf": _printf,
    "println": _println,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "eq": _eq,
    "ne": _ne,
    "lt": _lt,
    "le": _le,
    "gt": _gt,
    "ge": _ge,
    # Alertmanager's
    "toUpper": _to_upper,
    "toLower": _to_lower,
    "title": _title,
    "trimSpace": lambda s: _string(s, "trimSpace").strip(" \t\n\r\v\f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
                                                       "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f"
                                                       "\u205f\u3000"),
    "join": _join,
    "match": _match,
    "reReplaceAll": _re_replace_all,
    "safeHtml": lambda s: SafeHTML(_string(s, "safeHtml")),
    "safeUrl": lambda s: SafeURL(_string(s, "safeUrl")),
    "urlUnescape": _url_unescape,
    "stringSlice": _string_slice,
    "date": _date,
    "tz": _tz,
    "since": _since,
    "humanizeDuration": _humanize_duration,
    "toJson": _to_json,
    "list": _list,
    "append": _append,
    "dict": _dict,
    "now": _now,
    "toDate": _to_date,
}

# functions that receive the data's send time first (Alertmanager reads the clock)
NEEDS_NOW = frozenset({"now", "since"})
