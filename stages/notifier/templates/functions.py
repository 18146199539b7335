"""Alertmanager's template functions, as Jinja2 filters and globals.

A Go pipeline ``X | f a b`` calls ``f(a, b, X)``; a Jinja filter ``X | f(a, b)`` calls
``f(X, a, b)``. The filters below take the piped value first so the same reading order
works: ``.Labels.instance | reReplaceAll ":.*" ""`` is
``Labels.instance | reReplaceAll(":.*", "")``. Jinja's own ``join``, ``title`` and
``length`` already behave like Alertmanager's ``join``, ``title`` and ``len``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus
from zoneinfo import ZoneInfo

from markupsafe import Markup

from .data import KV, Pair, TemplateAlert
from .gotime import RFC3339_NANO, GoTime, go_format, gotime, humanize_duration

__all__ = ["FILTERS", "GLOBALS", "TESTS", "go_expand", "to_json", "to_jsonable"]

# Go's encoding/json escapes these so its output is safe inside HTML.
_JSON_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_TEMPLATE_REF = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def to_jsonable(value: Any) -> Any:
    """Template values as plain JSON data, the way Go's ``json.Marshal`` shows them."""
    if isinstance(value, TemplateAlert):
        return value.to_json()
    if isinstance(value, KV):
        return value.to_json()
    if isinstance(value, Pair):
        return {"Name": value.Name, "Value": value.Value}
    if isinstance(value, datetime):
        return go_format(gotime(value), RFC3339_NANO)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


def to_json(value: Any) -> str:
    """Go's ``toJson``: compact JSON with ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _JSON_HTML_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def go_expand(repl: str) -> Callable[[re.Match[str]], str]:
    """A replacement function for Go's ``$1``, ``${name}`` and ``$$`` template syntax."""

    def expand(m: re.Match[str]) -> str:
        def ref(r: re.Match[str]) -> str:
            name = r.group(1) or r.group(2)
            if name is None:
                return "$"
            try:
                value = m.group(int(name)) if name.isdigit() else m.group(name)
            except IndexError:
                return ""  # Go expands unknown groups to nothing
            return value or ""

        return _GO_TEMPLATE_REF.sub(ref, repl)

    return expand


def _re_replace_all(text: str, pattern: str, repl: str) -> str:
    return re.sub(pattern, go_expand(repl), str(text))


def _match(text: str, pattern: str) -> bool:
    return re.search(pattern, str(text)) is not None


def _date(t: datetime, layout: str) -> str:
    """Format a time: Go reference layouts, or strftime when the layout holds a ``%``."""
    if "%" in layout:
        return t.strftime(layout)
    return go_format(t, layout)


def _tz(t: datetime, name: str) -> GoTime:
    return gotime(t.astimezone(ZoneInfo(name)))


def _string_slice(*items: str) -> list[str]:
    return [str(i) for i in items]


def _list(*items: Any) -> list[Any]:
    return list(items)


def _append(seq: Iterable[Any], *items: Any) -> list[Any]:
    return [*seq, *items]


def _dict(*pairs: Any, **kwargs: Any) -> dict[str, Any]:
    """Go's ``dict "k1" v1 "k2" v2`` and Jinja's ``dict(k1=v1)`` both work."""
    if len(pairs) % 2:
        raise ValueError("dict requires an even number of arguments")
    out: dict[str, Any] = {}
    for i in range(0, len(pairs), 2):
        if not isinstance(pairs[i], str):
            raise ValueError("dict keys must be strings")
        out[pairs[i]] = pairs[i + 1]
    out.update(kwargs)
    return out


def _b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(str(text).encode()).decode()


def _b64decode(text: str) -> str:
    return base64.b64decode(str(text).encode(), altchars=b"-_", validate=True).decode()


FILTERS: dict[str, Callable[..., Any]] = {
    "toUpper": lambda s: str(s).upper(),
    "toLower": lambda s: str(s).lower(),
    "trimSpace": lambda s: str(s).strip(),
    "match": _match,
    "reReplaceAll": _re_replace_all,
    "safeHtml": lambda s: Markup(str(s)),
    "safeUrl": lambda s: Markup(str(s)),
    "urlquery": lambda s: quote_plus(str(s), safe=""),
    "urlUnescape": lambda s: unquote_plus(str(s)),
    "date": _date,
    "tz": _tz,
    "humanizeDuration": humanize_duration,
    "toJson": to_json,
    "base64encode": _b64encode,
    "base64decode": _b64decode,
    "append": _append,
    "len": len,
}

GLOBALS: dict[str, Any] = {
    "stringSlice": _string_slice,
    "list": _list,
    "dict": _dict,
    "len": len,
}

TESTS: dict[str, Callable[..., bool]] = {"match": _match}
