"""Turning rows of a configured events table into ``contracts.Event``, and writing such rows.

:class:`TableMapping` says which column holds what; its defaults match the reference
table in ``schema.sql``. :func:`validate_mapping` checks a mapping against a table's
columns at start-up; :func:`row_to_event` turns one decoded row (``{column: value}``, as
``pgoutput.RelationCache`` makes it) into an event or raises :class:`RowError`, which the
runner sends to the dead-letter stream with the row's table and key.

For demos and tests, :func:`insert_event_sql` builds an ``INSERT`` for asyncpg and
:func:`parse_emit_args` reads ``tocsin emit REASON --org ORG --resource KIND/NAME ...``.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, NoReturn

import msgspec

from contracts.ids import check_id, check_org
from contracts.messages import Event
from stages.source.limits import json_too_deep
from stages.source.pgoutput import UNCHANGED, Column, Relation, TypeOid, format_lsn, to_unix

__all__ = [
    "EmitArgsError",
    "EmitRequest",
    "Op",
    "RowError",
    "TableMapping",
    "add_emit_arguments",
    "emit_request_from_args",
    "insert_event_sql",
    "parse_emit_args",
    "parse_emit_field",
    "parse_resource",
    "quote_ident",
    "row_to_event",
    "validate_mapping",
]

Op = Literal["insert", "update", "delete"]


class RowError(ValueError):
    """A row that cannot become an event; the message says which column and why.

    ``code`` classes the refusal for the dead-letter metric: ``org`` or ``id`` (an identifier
    the pipeline refuses, see ``contracts.ids``), ``row`` for anything else.
    """

    def __init__(self, message: str, code: str = "row") -> None:
        super().__init__(message)
        self.code = code


class TableMapping(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which columns of a table make an event. Defaults fit the reference ``events`` table.

    A column setting of ``None`` means "not mapped": the event field keeps its default
    (``""`` for message/severity, ``{}`` for fields, the commit time for ``time_column``).
    ``resource_column`` holds ``"KIND/NAME"`` in one column and, when set, replaces
    ``resource_kind_column``/``resource_name_column``. ``field_columns`` are copied into
    ``fields`` under their column names, over keys of the jsonb ``fields_column``.
    ``ops`` are the changes that become events (the reference table is append-only; a
    delete carries more than the key only with REPLICA IDENTITY FULL).
    """

    schema: str = "public"
    table: str = "events"
    id_column: str = "id"
    org_column: str = "org_id"
    resource_kind_column: str | None = "resource_kind"
    resource_name_column: str | None = "resource_name"
    resource_column: str | None = None
    reason_column: str = "reason"
    message_column: str | None = "message"
    severity_column: str | None = "severity"
    time_column: str | None = "created_at"
    fields_column: str | None = "fields"
    field_columns: list[str] = []
    ops: list[Op] = msgspec.field(default_factory=lambda: ["insert"])

    def __post_init__(self) -> None:
        if self.resource_column is None and (
            self.resource_kind_column is None or self.resource_name_column is None
        ):
            raise ValueError("set resource_column, or both resource_kind_column and resource_name_column")
        if not self.ops:
            raise ValueError("ops must name at least one of insert, update, delete")
        for name, value in self._roles():
            if value == "":
                raise ValueError(f"{name} must not be empty")

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}"

    def _roles(self) -> list[tuple[str, str]]:
        """(setting, column) of every column in use."""
        roles: list[tuple[str, str | None]] = [
            ("id_column", self.id_column),
            ("org_column", self.org_column),
            ("reason_column", self.reason_column),
            ("message_column", self.message_column),
            ("severity_column", self.severity_column),
            ("time_column", self.time_column),
            ("fields_column", self.fields_column),
        ]
        if self.resource_column is not None:
            roles.append(("resource_column", self.resource_column))
        else:
            roles += [
                ("resource_kind_column", self.resource_kind_column),
                ("resource_name_column", self.resource_name_column),
            ]
        roles += [(f"field_columns[{i}]", c) for i, c in enumerate(self.field_columns)]
        return [(role, column) for role, column in roles if column is not None]


# ---------------------------------------------------------------------------- start-up checks

_TEXTUAL = {TypeOid.TEXT, TypeOid.VARCHAR, TypeOid.BPCHAR, TypeOid.NAME, TypeOid.CHAR}
_ID_LIKE = _TEXTUAL | {TypeOid.INT2, TypeOid.INT4, TypeOid.INT8, TypeOid.UUID}
_KNOWN_OIDS = {int(t) for t in TypeOid}
# Roles -> built-in types they accept; OIDs outside TypeOid (enums, domains) are not judged.
_ROLE_TYPES: dict[str, set[TypeOid]] = {
    "id_column": _ID_LIKE | {TypeOid.NUMERIC, TypeOid.OID},
    "org_column": _ID_LIKE,
    "reason_column": _TEXTUAL,
    "message_column": _TEXTUAL,
    "severity_column": _TEXTUAL,
    "resource_column": _TEXTUAL,
    "resource_kind_column": _TEXTUAL,
    "resource_name_column": _TEXTUAL,
    "time_column": {TypeOid.TIMESTAMPTZ, TypeOid.TIMESTAMP},
    "fields_column": {TypeOid.JSONB, TypeOid.JSON},
}


def validate_mapping(mapping: TableMapping, columns: Relation | Iterable[Column | str]) -> list[str]:
    """Problems of ``mapping`` against a table's columns (empty when it fits).

    ``columns`` is the table's Relation message, its columns, or just their names. With
    types, a column of a built-in type that cannot hold its role is reported; with a
    Relation, deletes without REPLICA IDENTITY FULL are too.
    """
    table = mapping.qualified_name
    relation = columns if isinstance(columns, Relation) else None
    cols = list(columns.columns) if isinstance(columns, Relation) else list(columns)
    by_name: dict[str, Column | None] = {}
    for c in cols:
        if isinstance(c, Column):
            by_name[c.name] = c
        else:
            by_name[c] = None
    problems: list[str] = []
    for role, column in mapping._roles():
        if column not in by_name:
            problems.append(
                f"table {table}: column {column!r} ({role}) does not exist; "
                f"it has {', '.join(sorted(by_name)) or 'no columns'}"
            )
            continue
        info = by_name[column]
        accepted = _ROLE_TYPES.get(role.split("[")[0])
        if info is None or accepted is None or info.type_oid not in _KNOWN_OIDS:
            continue
        if info.type_oid not in accepted:
            wanted = ", ".join(sorted(t.name.lower() for t in accepted))
            problems.append(
                f"table {table}: column {column!r} ({role}) is {TypeOid(info.type_oid).name.lower()}; "
                f"expected one of {wanted}"
            )
    if relation is not None and "delete" in mapping.ops and relation.replica_identity != "f":
        problems.append(
            f"table {table}: ops include delete but deleted rows carry only the key; "
            f"run ALTER TABLE {table} REPLICA IDENTITY FULL"
        )
    return problems


# ---------------------------------------------------------------------------- rows to events


def _get(row: Mapping[str, Any], column: str, role: str) -> Any:
    if column not in row:
        raise RowError(f"row has no column {column!r} ({role})")
    value = row[column]
    if value is UNCHANGED:
        raise RowError(
            f"column {column!r} ({role}) is an unchanged TOASTed value that was not sent; "
            "set REPLICA IDENTITY FULL on the table"
        )
    return value


def _key_text(row: Mapping[str, Any], column: str, role: str) -> str:
    """A required identifier: non-empty text, or an integer/uuid/decimal rendered as text."""
    value = _get(row, column, role)
    if value is None:
        raise RowError(f"column {column!r} ({role}) is null")
    if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID | Decimal):
        raise RowError(f"column {column!r} ({role}) is {type(value).__name__}, not text")
    text = str(value)
    if not text:
        raise RowError(f"column {column!r} ({role}) is empty")
    return text


def _optional_text(row: Mapping[str, Any], column: str | None, role: str) -> str:
    if column is None:
        return ""
    value = _get(row, column, role)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"column {column!r} ({role}) is {type(value).__name__}, not text")
    return value


def _json_value(value: Any) -> Any:
    """A column value in a form JSON carries without surprises (numbers stay numbers)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return value


def _fields(mapping: TableMapping, row: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if mapping.fields_column is not None:
        value = _get(row, mapping.fields_column, "fields_column")
        if value is not None:
            if not isinstance(value, dict):
                raise RowError(
                    f"column {mapping.fields_column!r} (fields_column) is a JSON "
                    f"{type(value).__name__}, not an object"
                )
            fields.update(value)
    for i, column in enumerate(mapping.field_columns):
        fields[column] = _json_value(_get(row, column, f"field_columns[{i}]"))
    return fields


def parse_resource(text: str) -> tuple[str, str]:
    """``"Device/dev-1"`` -> ``("Device", "dev-1")``; the name may contain further slashes."""
    kind, sep, name = text.partition("/")
    if not sep or not kind or not name:
        raise ValueError(f"resource {text!r} is not KIND/NAME")
    return kind, name


def row_to_event(
    mapping: TableMapping,
    row: Mapping[str, Any],
    *,
    table: str,
    op: Op,
    lsn: int | str,
    committed_at: float,
) -> Event:
    """The event of one committed row (``op`` is the change that produced it).

    ``lsn`` is the transaction's commit LSN (int, or already formatted), ``committed_at``
    its commit time in Unix seconds, which is also the event time when the mapping has no
    ``time_column``. Raises :class:`RowError` naming the column at fault.
    """
    event_id = _key_text(row, mapping.id_column, "id_column")
    if (problem := check_id(event_id, "row id")) is not None:
        raise RowError(f"column {mapping.id_column!r} (id_column): {problem}", "id")
    org = _key_text(row, mapping.org_column, "org_column")
    # The org travels in subjects, keys and headers downstream: the one validator every edge uses.
    if (problem := check_org(org)) is not None:
        raise RowError(f"column {mapping.org_column!r} (org_column): {problem}", "org")
    reason = _key_text(row, mapping.reason_column, "reason_column")
    if mapping.resource_column is not None:
        resource = _key_text(row, mapping.resource_column, "resource_column")
        try:
            kind, name = parse_resource(resource)
        except ValueError as exc:
            raise RowError(f"column {mapping.resource_column!r} (resource_column): {exc}") from None
    else:
        assert mapping.resource_kind_column is not None and mapping.resource_name_column is not None
        kind = _key_text(row, mapping.resource_kind_column, "resource_kind_column")
        name = _key_text(row, mapping.resource_name_column, "resource_name_column")
    if mapping.time_column is None:
        occurred_at = committed_at
    else:
        when = _get(row, mapping.time_column, "time_column")
        if not isinstance(when, datetime):
            shown = when if isinstance(when, str) else type(when).__name__
            raise RowError(f"column {mapping.time_column!r} (time_column) is {shown!r}, not a timestamp")
        occurred_at = to_unix(when)
    return Event(
        id=event_id,
        org=org,
        reason=reason,
        resource_kind=kind,
        resource_name=name,
        occurred_at=occurred_at,
        message=_optional_text(row, mapping.message_column, "message_column"),
        severity=_optional_text(row, mapping.severity_column, "severity_column"),
        fields=_fields(mapping, row),
        table=table,
        op=op,
        lsn=format_lsn(lsn) if isinstance(lsn, int) else lsn,
        committed_at=committed_at,
    )


# ---------------------------------------------------------------------------- writing rows


class EmitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One event to insert, as ``tocsin emit`` takes it."""

    reason: str
    org: str
    resource_kind: str
    resource_name: str
    message: str = ""
    severity: str = ""
    fields: dict[str, Any] = {}


def quote_ident(name: str) -> str:
    """A SQL identifier, always double-quoted (embedded quotes doubled)."""
    if not name or "\0" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def insert_event_sql(
    request: EmitRequest,
    mapping: TableMapping | None = None,
    *,
    occurred_at: datetime | None = None,
) -> tuple[str, list[Any]]:
    """``(sql, params)`` inserting ``request`` into the mapped table with asyncpg, returning the id.

    Without ``occurred_at`` the time column keeps its default (``now()``). Raises
    ``ValueError`` when the mapping has no column for a value the request carries.
    """
    m = mapping if mapping is not None else TableMapping()
    values: list[tuple[str, Any, str]] = [  # (column, value, cast after the placeholder)
        (m.org_column, request.org, ""),
        (m.reason_column, request.reason, ""),
    ]
    if m.resource_column is not None:
        values.append((m.resource_column, f"{request.resource_kind}/{request.resource_name}", ""))
    else:
        assert m.resource_kind_column is not None and m.resource_name_column is not None
        values.append((m.resource_kind_column, request.resource_kind, ""))
        values.append((m.resource_name_column, request.resource_name, ""))

    def optional(what: str, column: str | None, value: Any, given: bool, cast: str = "") -> None:
        if column is not None and given:
            values.append((column, value, cast))
        elif given:
            raise ValueError(f"table {m.qualified_name} has no column mapped for {what}")

    optional("message", m.message_column, request.message, bool(request.message))
    optional("severity", m.severity_column, request.severity, bool(request.severity))
    # Sent as text and cast in SQL, so it works whether or not a jsonb codec is registered.
    fields_json = msgspec.json.encode(request.fields).decode()
    optional("fields", m.fields_column, fields_json, bool(request.fields), "::text::jsonb")
    optional("occurred_at", m.time_column, occurred_at, occurred_at is not None)
    columns = ", ".join(quote_ident(c) for c, _, _ in values)
    placeholders = ", ".join(f"${i}{cast}" for i, (_, _, cast) in enumerate(values, start=1))
    sql = (
        f"INSERT INTO {quote_ident(m.schema)}.{quote_ident(m.table)} ({columns}) "
        f"VALUES ({placeholders}) RETURNING {quote_ident(m.id_column)}"
    )
    return sql, [v for _, v, _ in values]


# ---------------------------------------------------------------------------- tocsin emit


class EmitArgsError(ValueError):
    """Bad ``tocsin emit`` arguments."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise EmitArgsError(message)


def parse_emit_field(text: str) -> tuple[str, Any]:
    """``k=v`` -> ``(k, v)``; ``v`` is a JSON number or boolean when it parses as one, else the string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise EmitArgsError(f"--field {text!r} is not KEY=VALUE")
    if json_too_deep(raw):  # never a number or boolean; and the parser would recurse
        return key, raw
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return key, raw
    if isinstance(value, bool | int | float):
        return key, value
    return key, raw


def add_emit_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tocsin emit``, for the CLI's subparser."""
    parser.add_argument("reason", help="event reason, e.g. DeviceDisconnected")
    parser.add_argument("--org", required=True, help="organisation id")
    parser.add_argument("--resource", required=True, metavar="KIND/NAME", help="e.g. Device/dev-1")
    parser.add_argument("--message", default="", help="human-readable message")
    parser.add_argument("--severity", default="", help="e.g. critical, warning, info")
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra field (repeatable); numbers and true/false are typed",
    )


def emit_request_from_args(args: argparse.Namespace) -> EmitRequest:
    """An :class:`EmitRequest` from parsed ``tocsin emit`` arguments; raises :class:`EmitArgsError`."""
    if not args.reason:
        raise EmitArgsError("REASON must not be empty")
    if (problem := check_org(args.org)) is not None:
        raise EmitArgsError(f"--org: {problem}")
    try:
        kind, name = parse_resource(args.resource)
    except ValueError as exc:
        raise EmitArgsError(f"--resource: {exc}") from None
    fields = dict(parse_emit_field(f) for f in args.field)
    return EmitRequest(
        reason=args.reason,
        org=args.org,
        resource_kind=kind,
        resource_name=name,
        message=args.message,
        severity=args.severity,
        fields=fields,
    )


def parse_emit_args(argv: Sequence[str]) -> EmitRequest:
    """``tocsin emit`` arguments (those after ``emit``) as an :class:`EmitRequest`.

    Raises :class:`EmitArgsError` with argparse's message on bad arguments.
    """
    parser = _Parser(prog="tocsin emit", description="Insert one row into the events table.")
    add_emit_arguments(parser)
    return emit_request_from_args(parser.parse_args(list(argv)))
