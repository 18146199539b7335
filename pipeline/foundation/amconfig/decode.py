"""Decode composed YAML nodes into the config Structs, with line numbers in every error.

PyYAML's composer keeps each node's position; the decoder walks the node tree guided by
the Struct field types, so an error can name the file, the line and the field path
(``alertmanager.yml:12: route.routes[0].group_wait: ...``). Scalars are read like
yaml.v2 reads them into Go strings (``2`` and ``true`` become ``"2"`` and ``"true"``),
unknown keys and duplicate keys are rejected, and ``<<`` merge keys are honoured.

Other modules can reuse ``Decoder`` for their own Structs (e.g. Tocsin's own section).
"""

from __future__ import annotations

import functools
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Final, Union

import msgspec
import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from contracts.matchers import go_quote
from pipeline.foundation.amconfig.model import Node as ConfigNode
from pipeline.foundation.amconfig.values import Conv, Raw, Secret

__all__ = ["INVALID", "Decoder", "Loc", "compose", "field_path", "node_line"]

_q = go_quote

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"

# Keys of undelivered integrations and opaque sections whose values are credentials.
_SECRET_KEYS: Final = frozenset(
    {
        "api_key",
        "api_secret",
        "api_url",
        "app_token",
        "bot_token",
        "client_secret",
        "credentials",
        "key",
        "password",
        "routing_key",
        "secret",
        "secret_key",
        "access_key",
        "service_key",
        "token",
        "token_id",
        "url",
        "user_key",
        "webhook_url",
        "bearer_token",
        "auth_password",
        "auth_secret",
        "apikey",
    }
)


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


@dataclass
class Loc:
    """Where a decoded Struct came from, and where each of its given fields was."""

    path: str
    line: int
    fields: dict[str, tuple[str, int]] = field(default_factory=dict)
    yaml_names: dict[str, str] = field(default_factory=dict)  # attribute -> YAML key

    def of(self, name: str | None) -> tuple[str, int]:
        """Path and line of field ``name`` when given in the file, else of the mapping."""
        if name is None:
            return self.path, self.line
        if name in self.fields:
            return self.fields[name]
        return field_path(self.path, self.yaml_names.get(name, name)), self.line


def node_line(node: Node) -> int:
    return int(node.start_mark.line) + 1


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def field_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_q(key)}]"


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "null"
    return go_quote(node.value)


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


@functools.cache
def _struct_fields(cls: type) -> dict[str, tuple[str, Any, bool]]:
    """YAML key -> (attribute name, annotated type, required) for a config Struct."""
    hints = typing.get_type_hints(cls, include_extras=True)
    skip: frozenset[str] = getattr(cls, "__not_yaml__", frozenset())
    out: dict[str, tuple[str, Any, bool]] = {}
    for info in msgspec.structs.fields(cls):
        if info.name not in skip:
            out[info.encode_name] = (info.name, hints[info.name], info.required)
    return out


class Decoder:
    """Turns YAML nodes into typed values, collecting every error found."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._errors: list[tuple[int, int, str]] = []  # (line, order found, text)
        self.locs: dict[int, Loc] = {}
        self.secret_spans: list[tuple[int, int]] = []
        self._constructor = SafeConstructor()

    # ------------------------------------------------------------------ errors

    @property
    def errors(self) -> list[str]:
        """Every error so far, in file order."""
        return [text for _, _, text in sorted(self._errors)]

    def error(self, line: int, path: str, message: str) -> None:
        where = f"{self.filename}:{line}"
        text = f"{where}: {path}: {message}" if path else f"{where}: {message}"
        self._errors.append((line, len(self._errors), text))

    def loc_of(self, obj: object) -> Loc | None:
        return self.locs.get(id(obj))

    def error_at(self, obj: object, name: str | None, message: str) -> None:
        """Report ``message`` at field ``name`` of a decoded Struct ``obj``."""
        loc = self.loc_of(obj)
        if loc is None:
            self._errors.append((0, len(self._errors), f"{self.filename}: {message}"))
            return
        path, line = loc.of(name)
        self.error(line, path, message)

    # ------------------------------------------------------------------ decoding

    def decode(self, node: Node, tp: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *meta = typing.get_args(tp)
            conv = next((m for m in meta if isinstance(m, Conv)), None)
            return self._convert(node, conv, path) if conv else self.decode(node, base, path)
        if origin in (Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(inner) != 1:
                raise TypeError(f"unsupported union {tp}")
            return None if _is_null(node) else self.decode(node, inner[0], path)
        if tp is Any:
            return self._construct(node, path)
        if isinstance(tp, type) and issubclass(tp, Raw):
            return self._raw(node, path)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return self.decode_struct(node, tp, path)
        if origin is list:
            return self._list(node, typing.get_args(tp)[0], path)
        if origin is dict:
            return self._dict(node, typing.get_args(tp)[1], path)
        if tp is str:
            return self._scalar(node, path, "a string")
        if tp is Secret:
            text = self._scalar(node, path, "a string")
            if text is INVALID:
                return INVALID
            self._mark_secret(node)
            return Secret(text)
        if tp is bool:
            return self._typed_scalar(node, path, (_BOOL_TAG,), "a boolean", self._constructor.construct_yaml_bool)
        if tp is int:
            return self._typed_scalar(node, path, (_INT_TAG,), "an integer", self._constructor.construct_yaml_int)
        if tp is float:
            return self._typed_scalar(
                node,
                path,
                (_INT_TAG, _FLOAT_TAG),
                "a number",
                lambda n: float(self._constructor.construct_object(n)),
            )
        raise TypeError(f"unsupported field type {tp!r} at {path}")

    def decode_struct(self, node: Node, cls: type, path: str) -> Any:
        if not isinstance(node, MappingNode):
            self.error(node_line(node), path, f"expected a mapping, got {_kind(node)}")
            return INVALID
        fields = _struct_fields(cls)
        ok = True
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    self.error(
                        node_line(key_node),
                        path,
                        f"duplicate key {_q(key_node.value)} (first set on line {seen[key_node.value]})",
                    )
                    ok = False
                seen[key_node.value] = node_line(key_node)
        if not self._flatten(node, path):
            return INVALID
        kwargs: dict[str, Any] = {}
        given: dict[str, tuple[str, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(node_line(key_node), path, f"expected a string key, got {_kind(key_node)}")
                ok = False
                continue
            key = key_node.value
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                self.error(node_line(key_node), path, f"unknown field {_q(key)} (allowed: {allowed})")
                ok = False
                continue
            attr, tp, _ = fields[key]
            sub = field_path(path, key)
            given[attr] = (sub, node_line(key_node))
            if _is_null(value_node):
                continue  # an empty value keeps the default
            value = self.decode(value_node, tp, sub)
            if value is INVALID:
                ok = False
            else:
                kwargs[attr] = value
        for key, (attr, _, required) in fields.items():
            if required and attr not in kwargs:
                self.error(node_line(node), path, f"missing required field {_q(key)}")
                ok = False
        if not ok:
            return INVALID
        obj = cls(**kwargs)
        loc = Loc(path, node_line(node), given, {attr: key for key, (attr, _, _) in fields.items()})
        if isinstance(obj, ConfigNode):
            obj, problems = obj._finish()
            for name, message in problems:
                where, line = loc.of(name)
                self.error(line, where, message)
        self.locs[id(obj)] = loc
        return obj

    # ------------------------------------------------------------------ helpers

    def _convert(self, node: Node, conv: Conv, path: str) -> Any:
        if _is_null(node):
            return None
        if not conv.each:
            return self._convert_one(node, conv, path)
        if not isinstance(node, SequenceNode):
            self.error(node_line(node), path, f"expected a list, got {_kind(node)}")
            return INVALID
        out: list[Any] = []
        ok = True
        for i, item in enumerate(node.value):
            value = self._convert_one(item, conv, field_path(path, i))
            if value is INVALID:
                ok = False
            elif conv.flatten:
                out.extend(value)
            else:
                out.append(value)
        return out if ok else INVALID

    def _convert_one(self, node: Node, conv: Conv, path: str) -> Any:
        if not isinstance(node, ScalarNode) or _is_null(node):
            self.error(node_line(node), path, f"expected a string, got {_kind(node)}")
            return INVALID
        try:
            value = conv.fn(node.value)
        except ValueError as exc:
            self.error(node_line(node), path, str(exc))
            return INVALID
        if isinstance(value, Secret):
            self._mark_secret(node)
        return value

    def _scalar(self, node: Node, path: str, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.error(node_line(node), path, f"expected {what}, got {_kind(node)}")
            return INVALID
        return "" if node.tag == _NULL_TAG else node.value

    def _typed_scalar(self, node: Node, path: str, tags: tuple[str, ...], what: str, build: Any) -> Any:
        if not isinstance(node, ScalarNode) or node.tag not in tags:
            self.error(node_line(node), path, f"expected {what}, got {_kind(node)}")
            return INVALID
        try:
            return build(node)
        except (ConstructorError, ValueError) as exc:
            self.error(node_line(node), path, f"invalid {what[2:] if what.startswith('a ') else what}: {exc}")
            return INVALID

    def _list(self, node: Node, item_tp: Any, path: str) -> Any:
        if not isinstance(node, SequenceNode):
            self.error(node_line(node), path, f"expected a list, got {_kind(node)}")
            return INVALID
        out: list[Any] = []
        ok = True
        for i, item in enumerate(node.value):
            sub = field_path(path, i)
            if _is_null(item) and isinstance(item_tp, type) and issubclass(item_tp, msgspec.Struct):
                # Go's YAML gives an empty list item of a struct type its zero value (an empty
                # inhibit rule inhibits nothing); the struct's own checks then apply to it.
                item = MappingNode("tag:yaml.org,2002:map", [], item.start_mark, item.end_mark)
            elif _is_null(item) and item_tp is not Any:
                self.error(node_line(item), sub, "missing value (empty list item)")
                ok = False
                continue
            value = self.decode(item, item_tp, sub)
            if value is INVALID:
                ok = False
            else:
                out.append(value)
        return out if ok else INVALID

    def _dict(self, node: Node, value_tp: Any, path: str) -> Any:
        if not isinstance(node, MappingNode):
            self.error(node_line(node), path, f"expected a mapping, got {_kind(node)}")
            return INVALID
        if not self._flatten(node, path):
            return INVALID
        out: dict[str, Any] = {}
        ok = True
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(node_line(key_node), path, f"expected a string key, got {_kind(key_node)}")
                ok = False
                continue
            sub = field_path(path, key_node.value)
            if _is_null(value_node):
                out[key_node.value] = None if value_tp is Any else ""
                if value_tp not in (Any, str):
                    self.error(node_line(value_node), sub, "missing value")
                    ok = False
                continue
            value = self.decode(value_node, value_tp, sub)
            if value is INVALID:
                ok = False
            else:
                out[key_node.value] = value
        return out if ok else INVALID

    def _raw(self, node: Node, path: str) -> Any:
        if not isinstance(node, MappingNode):
            self.error(node_line(node), path, f"expected a mapping, got {_kind(node)}")
            return INVALID
        data = self._construct(node, path)
        if data is INVALID:
            return INVALID
        self._mark_secret_keys(node)
        return Raw(data)

    def _construct(self, node: Node, path: str) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, TypeError) as exc:
            self.error(node_line(node), path, f"invalid value: {exc}")
            return INVALID

    def _flatten(self, node: MappingNode, path: str) -> bool:
        try:
            self._constructor.flatten_mapping(node)
        except ConstructorError as exc:
            self.error(node_line(node), path, f"invalid merge key: {exc.problem}")
            return False
        return True

    def _mark_secret(self, node: Node) -> None:
        self.secret_spans.append((node.start_mark.index, node.end_mark.index))

    def _mark_secret_keys(self, node: Node) -> None:
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and isinstance(value_node, ScalarNode):
                    key = key_node.value.lower()
                    if key in _SECRET_KEYS or key.endswith(("_key", "_secret", "_token", "password")):
                        if not _is_null(value_node):
                            self._mark_secret(value_node)
                else:
                    self._mark_secret_keys(value_node)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self._mark_secret_keys(item)


def compose(text: str) -> Node | None:
    """Compose the single YAML document in ``text`` (``None`` when empty)."""
    return yaml.compose(text, Loader=yaml.SafeLoader)
