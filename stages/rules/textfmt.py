"""Label and annotation text of event-rule templates: the field-reference subset of Go templates.

The rules stage must not import the notifier's Go template engine (no stage imports another),
and an alert's labels are its identity, so their text should not be able to loop, call out or
branch. A text is literal characters and actions that each print one value:

- ``{{ .Reason }}``, ``{{ .Org }}``, ``{{ .ResourceKind }}``, ``{{ .ResourceName }}``,
  ``{{ .Message }}``, ``{{ .Severity }}``, ``{{ .ID }}``: the event's own fields;
- ``{{ .Fields.cpu_percent }}``, ``{{ .Labels.environment }}``, ``{{ .Params.threshold }}``:
  an event field, a label (``field_labels`` and the built-in ones) or a resolved parameter;
  ``{{ index .Fields "with-dash" }}`` for a key that is not an identifier;
- ``{{ .Value }}``: the number the rule compared (empty when it has no ``value_field``).

``{{-`` and ``-}}`` trim white space as in Go; ``{{/* a comment */}}`` prints nothing. A missing
value prints as the empty string (Go's ``missingkey=zero``); numbers print as Go prints them
(``85``, ``85.5``). Anything else (pipes, functions, ``if``, ``range``) is a parse error, found
when a template is validated, never when an event comes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TOP_FIELDS", "MAP_FIELDS", "TemplateSyntaxError", "Text", "format_value", "parse_text"]

#: names that print one value of the event
TOP_FIELDS = frozenset({"Reason", "Org", "ResourceKind", "ResourceName", "Message", "Severity", "ID", "Value"})
#: names that hold a map, read with ``.Name.key`` or ``index .Name "key"``
MAP_FIELDS = frozenset({"Fields", "Labels", "Params"})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOT_REF = re.compile(rf"^\.({_IDENT})(?:\.({_IDENT}))?$")
_INDEX_REF = re.compile(rf'^index\s+\.({_IDENT})\s+"((?:[^"\\]|\\.)*)"$')
_COMMENT = re.compile(r"^/\*.*\*/$", re.S)


class TemplateSyntaxError(ValueError):
    """A label or annotation text that is not in the supported subset (the message says why)."""


@dataclass(frozen=True, slots=True)
class _Ref:
    top: str
    key: str | None


@dataclass(frozen=True, slots=True)
class Text:
    """A parsed text: literal strings and references, in order."""

    parts: tuple[str | _Ref, ...]

    def render(self, data: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = data.get(part.top)
            if part.key is not None:
                value = value.get(part.key) if isinstance(value, Mapping) else None
            out.append(format_value(value))
        return "".join(out)

    @property
    def constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)


def format_value(value: Any) -> str:
    """A value as Go's ``{{ . }}`` prints it (missing: empty; 85.0: ``85``; true: ``true``)."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def _reference(action: str) -> _Ref | None:
    m = _DOT_REF.match(action)
    if m:
        top, key = m.group(1), m.group(2)
    else:
        m = _INDEX_REF.match(action)
        if not m:
            raise TemplateSyntaxError(
                f"unsupported action {{{{ {action} }}}}: rule templates print fields only, such as "
                "{{ .Fields.cpu_percent }}, {{ .ResourceName }} or {{ index .Fields \"a-b\" }}")
        top, key = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
        if top not in MAP_FIELDS:
            raise TemplateSyntaxError(f"index needs one of .{', .'.join(sorted(MAP_FIELDS))}, not .{top}")
    if top in MAP_FIELDS:
        if key is None:
            raise TemplateSyntaxError(f".{top} is a map: name a key, such as .{top}.name")
        return _Ref(top, key)
    if top in TOP_FIELDS:
        if key is not None:
            raise TemplateSyntaxError(f".{top} has no field {key}")
        return _Ref(top, None)
    raise TemplateSyntaxError(
        f"unknown field .{top}; use one of .{', .'.join(sorted(TOP_FIELDS | MAP_FIELDS))}")


def parse_text(text: str) -> Text:
    """Parse ``text``; :class:`TemplateSyntaxError` says what is wrong and where."""
    parts: list[str | _Ref] = []
    i = 0
    literal = ""
    while True:
        start = text.find("{{", i)
        if start < 0:
            literal += text[i:]
            break
        literal += text[i:start]
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateSyntaxError(f"unclosed action at character {start + 1}: {{{{ without }}}}")
        inner = text[start + 2:end]
        i = end + 2
        if inner.startswith("-") and inner[1:2] in (" ", "\t", "\n", "\r"):
            literal = literal.rstrip(" \t\r\n")
            inner = inner[1:]
        if inner.endswith("-") and inner[-2:-1] in (" ", "\t", "\n", "\r"):
            inner = inner[:-1]
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
        action = inner.strip()
        if not action:
            raise TemplateSyntaxError(f"empty action at character {start + 1}")
        if _COMMENT.match(action):
            continue
        ref = _reference(action)
        if literal:
            parts.append(literal)
            literal = ""
        if ref is not None:
            parts.append(ref)
    if literal:
        parts.append(literal)
    return Text(tuple(parts))
