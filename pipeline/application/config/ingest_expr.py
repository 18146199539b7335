"""Expressions of the generic ingest mapping (pure): a field path, ``a.b[0].c`` (optionally
``$.a...``; ``["a.b"]`` for a key holding a dot), or a Go template over the item
(``{{ .level | toLower }}``), the engine of the notification templates. Used by the
configuration (to refuse a bad expression at load) and by the mapping (to evaluate it).
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from stages.notifier.templates.gotemplate import GoTemplates, TemplateError

__all__ = ["Unmappable", "as_text", "evaluate", "expression_problem", "get_path", "parse_path", "path_problem"]

_NO_VALUE: Final = "<no value>"  # what a Go template prints for a missing key
_MISSING: Final = object()
_STEP: Final = re.compile(r"""\.?([A-Za-z0-9_@-][^.\[\]]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]""")
_TEMPLATES = GoTemplates()


class Unmappable(ValueError):
    """An item that parses but cannot become an alert (goes to the dead letters with this reason)."""


def parse_path(text: str) -> list[str | int]:
    """The steps of a field path; ``ValueError`` says where it is wrong."""
    rest = text[1:] if text.startswith("$") else text
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"field path {text!r} is invalid at character {pos + len(text) - len(rest) + 1}")
        name, index, quoted = m.groups()
        steps.append(name if name is not None else int(index) if index is not None else msgspec.json.decode(quoted))
        pos = m.end()
    return steps


def path_problem(text: str) -> str | None:
    try:
        parse_path(text)
    except ValueError as exc:
        return str(exc)
    return None


def expression_problem(text: str) -> str | None:
    """Why ``text`` is not a usable expression, or ``None``."""
    if "{{" in text:
        try:
            _TEMPLATES.check(text)
        except TemplateError as exc:
            return f"template does not parse: {exc}"
        return None
    return path_problem(text)


def get_path(doc: Any, text: str) -> Any:
    """The value at field path ``text`` in ``doc``, or ``None`` when it is not there."""
    value = doc
    for step in parse_path(text):
        if isinstance(step, int) and isinstance(value, list):
            value = value[step] if step < len(value) else _MISSING
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step, _MISSING)
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


def as_text(value: Any) -> str:
    """A JSON value as the text a label holds ("" for none, JSON for a list or an object)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return msgspec.json.encode(value).decode()
    return msgspec.json.encode(value).decode()  # a list or an object, as JSON text


def evaluate(expression: str, item: Any) -> str:
    """The text ``expression`` gives for ``item`` ("" for a missing field); ``Unmappable``
    when a template fails."""
    if "{{" in expression:
        try:
            out = _TEMPLATES.execute(expression, item)
        except TemplateError as exc:
            raise Unmappable(f"template {expression!r} failed: {exc}") from None
        return "" if out == _NO_VALUE else out
    return as_text(get_path(item, expression))
