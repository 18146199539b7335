"""Template values as JSON, the way Go's ``encoding/json`` writes them (the ``toJson`` function
and the webhook body share it). The template functions themselves are in ``gotemplate/funcs.py``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .data import KV, Pair, TemplateAlert
from .gotime import RFC3339_NANO, go_format, gotime

__all__ = ["to_json", "to_jsonable"]

# Go's encoding/json escapes these so its output is safe inside HTML.
_JSON_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


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
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


def to_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact JSON with ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _JSON_HTML_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text
