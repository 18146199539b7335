"""Rows of an events table to contracts.Event, mapping checks, the insert helper and `tocsin emit`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ids import check_org
from contracts.messages import Event, decode, encode
from stages.source.mapping import (
    EmitArgsError,
    EmitRequest,
    RowError,
    TableMapping,
    insert_event_sql,
    parse_emit_args,
    parse_emit_field,
    quote_ident,
    row_to_event,
    validate_mapping,
)
from stages.source.pgoutput import UNCHANGED, Column, Relation

CREATED = datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)  # 1_704_067_201.5
COMMITTED = 1_704_067_202.0


def reference_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 17,
        "org_id": "acme",
        "resource_kind": "Device",
        "resource_name": "dev-1",
        "reason": "DeviceDisconnected",
        "message": "lost heartbeat",
        "severity": "critical",
        "fields": {"site": "lab", "rssi": -70},
        "created_at": CREATED,
    }
    row.update(changes)
    return row


def event(
    mapping: TableMapping, row: dict[str, Any], op: Any = "insert", lsn: int | str = 0x16_B374D848
) -> Event:
    return row_to_event(mapping, row, table="events", op=op, lsn=lsn, committed_at=COMMITTED)


GOOD: list[tuple[str, TableMapping, dict[str, Any], dict[str, Any]]] = [
    (
        "reference-row",
        TableMapping(),
        reference_row(),
        {
            "id": "17",
            "org": "acme",
            "reason": "DeviceDisconnected",
            "resource_kind": "Device",
            "resource_name": "dev-1",
            "occurred_at": 1_704_067_201.5,
            "message": "lost heartbeat",
            "severity": "critical",
            "fields": {"site": "lab", "rssi": -70},
            "lsn": "16/B374D848",
            "committed_at": COMMITTED,
        },
    ),
    (
        "defaults-when-empty",
        TableMapping(),
        reference_row(message="", severity="", fields={}),
        {"message": "", "severity": "", "fields": {}},
    ),
    (
        "null-optional-columns",
        TableMapping(),
        reference_row(message=None, severity=None, fields=None),
        {"message": "", "severity": "", "fields": {}},
    ),
    (
        "time-with-offset",
        TableMapping(),
        reference_row(created_at=datetime(2024, 1, 1, 1, 0, 1, 500000, tzinfo=timezone(timedelta(hours=1)))),
        {"occurred_at": 1_704_067_201.5},
    ),
    (
        "timestamp-without-zone-is-utc",
        TableMapping(),
        reference_row(created_at=datetime(2024, 1, 1, 0, 0, 1, 500000)),
        {"occurred_at": 1_704_067_201.5},
    ),
    (
        "no-time-column-uses-commit-time",
        TableMapping(time_column=None),
        {k: v for k, v in reference_row().items() if k != "created_at"},
        {"occurred_at": COMMITTED},
    ),
    (
        "resource-in-one-column",
        TableMapping(resource_column="resource", resource_kind_column=None, resource_name_column=None),
        {**reference_row(), "resource": "Fleet/eu/west-1"},
        {"resource_kind": "Fleet", "resource_name": "eu/west-1"},
    ),
    (
        "resource-column-wins-over-pair",
        TableMapping(resource_column="resource"),
        {**reference_row(), "resource": "App/web"},
        {"resource_kind": "App", "resource_name": "web"},
    ),
    (
        "integer-org-and-uuid-id",
        TableMapping(),
        reference_row(org_id=42, id=uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        {"org": "42", "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
    ),
    (
        "custom-columns",
        TableMapping(
            schema="app",
            table="audit",
            id_column="event_id",
            org_column="tenant",
            resource_kind_column="kind",
            resource_name_column="name",
            reason_column="what",
            message_column=None,
            severity_column="level",
            time_column="at",
            fields_column=None,
        ),
        {
            "event_id": "e-1",
            "tenant": "t1",
            "kind": "Job",
            "name": "nightly",
            "what": "JobFailed",
            "level": "warning",
            "at": CREATED,
            "message": "ignored: not mapped",
            "fields": {"ignored": True},
        },
        {
            "id": "e-1",
            "org": "t1",
            "resource_kind": "Job",
            "resource_name": "nightly",
            "reason": "JobFailed",
            "message": "",
            "severity": "warning",
            "fields": {},
        },
    ),
    (
        "field-columns-copied-over-jsonb",
        TableMapping(field_columns=["cpu", "seen", "day", "serial", "blob", "site", "ratio", "big"]),
        reference_row(
            cpu=Decimal("97.50"),
            seen=datetime(2024, 1, 1, tzinfo=UTC),
            day=date(2024, 1, 2),
            serial=uuid.UUID(int=1),
            blob=b"\x01\xab",
            site="factory",
            ratio=0.5,
            big=Decimal("12"),
        ),
        {
            "fields": {
                "site": "factory",
                "rssi": -70,
                "cpu": 97.5,
                "seen": "2024-01-01T00:00:00+00:00",
                "day": "2024-01-02",
                "serial": "00000000-0000-0000-0000-000000000001",
                "blob": "\\x01ab",
                "ratio": 0.5,
                "big": 12,
            }
        },
    ),
]


@pytest.mark.parametrize(("mapping", "row", "expected"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_rows(mapping: TableMapping, row: dict[str, Any], expected: dict[str, Any]) -> None:
    ev = event(mapping, row)
    assert {k: getattr(ev, k) for k in expected} == expected
    assert ev.table == "events"
    # The event survives the wire as it is.
    assert decode(encode(ev)) == ev


@pytest.mark.parametrize("op", ["insert", "update", "delete"], ids=str)
def test_op_and_lsn_are_carried(op: Any) -> None:
    ev = event(TableMapping(), reference_row(), op=op, lsn="0/16EF508")
    assert (ev.op, ev.lsn) == (op, "0/16EF508")
    back = decode(encode(ev))
    assert isinstance(back, Event) and back.op == op


def test_fields_are_copied_not_shared() -> None:
    row = reference_row()
    ev = event(TableMapping(), row)
    ev.fields["new"] = 1
    assert "new" not in row["fields"]


BAD: list[tuple[str, TableMapping, dict[str, Any], str]] = [
    ("org-null", TableMapping(), reference_row(org_id=None), "'org_id' (org_column) is null"),
    ("org-empty", TableMapping(), reference_row(org_id=""), "'org_id' (org_column) is empty"),
    (
        "org-missing",
        TableMapping(),
        {k: v for k, v in reference_row().items() if k != "org_id"},
        "no column 'org_id'",
    ),
    ("org-json", TableMapping(), reference_row(org_id={"a": 1}), "'org_id' (org_column) is dict"),
    ("org-bool", TableMapping(), reference_row(org_id=True), "'org_id' (org_column) is bool"),
    ("reason-empty", TableMapping(), reference_row(reason=""), "'reason' (reason_column) is empty"),
    ("reason-null", TableMapping(), reference_row(reason=None), "'reason' (reason_column) is null"),
    ("id-null", TableMapping(), reference_row(id=None), "'id' (id_column) is null"),
    ("kind-empty", TableMapping(), reference_row(resource_kind=""), "resource_kind_column"),
    ("name-null", TableMapping(), reference_row(resource_name=None), "resource_name_column"),
    ("time-infinity", TableMapping(), reference_row(created_at="infinity"), "'infinity', not a timestamp"),
    ("time-null", TableMapping(), reference_row(created_at=None), "not a timestamp"),
    ("time-date", TableMapping(), reference_row(created_at=date(2024, 1, 1)), "not a timestamp"),
    ("time-number", TableMapping(), reference_row(created_at=1704067200), "not a timestamp"),
    ("fields-array", TableMapping(), reference_row(fields=[1, 2]), "JSON list, not an object"),
    ("fields-string", TableMapping(), reference_row(fields="x"), "JSON str, not an object"),
    (
        "message-number",
        TableMapping(),
        reference_row(message=5),
        "'message' (message_column) is int, not text",
    ),
    ("severity-unchanged-toast", TableMapping(), reference_row(severity=UNCHANGED), "REPLICA IDENTITY FULL"),
    ("fields-unchanged-toast", TableMapping(), reference_row(fields=UNCHANGED), "unchanged TOASTed"),
    (
        "field-column-missing",
        TableMapping(field_columns=["cpu"]),
        reference_row(),
        "no column 'cpu' (field_columns[0])",
    ),
    (
        "resource-without-slash",
        TableMapping(resource_column="resource"),
        {**reference_row(), "resource": "Device"},
        "not KIND/NAME",
    ),
    (
        "resource-empty-name",
        TableMapping(resource_column="resource"),
        {**reference_row(), "resource": "Device/"},
        "not KIND/NAME",
    ),
    (
        "resource-empty-kind",
        TableMapping(resource_column="resource"),
        {**reference_row(), "resource": "/dev-1"},
        "not KIND/NAME",
    ),
]


@pytest.mark.parametrize(("mapping", "row", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_rows_raise_row_error(mapping: TableMapping, row: dict[str, Any], needle: str) -> None:
    with pytest.raises(RowError) as info:
        event(mapping, row)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


@given(
    org=st.text(min_size=1).filter(lambda o: check_org(o) is None),  # refused orgs: test_source_poison_rows
    reason=st.text(min_size=1),
    kind=st.text(min_size=1),
    name=st.text(min_size=1),
    fields=st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.booleans(), st.none())),
)
def test_any_text_row_maps_faithfully(
    org: str, reason: str, kind: str, name: str, fields: dict[str, Any]
) -> None:
    row = reference_row(org_id=org, reason=reason, resource_kind=kind, resource_name=name, fields=fields)
    ev = event(TableMapping(), row)
    assert (ev.org, ev.reason, ev.resource_kind, ev.resource_name, ev.fields) == (
        org,
        reason,
        kind,
        name,
        fields,
    )


# ---------------------------------------------------------------------------- mapping checks

REFERENCE_COLUMNS = [
    Column(1, "id", 20, -1),
    Column(0, "org_id", 25, -1),
    Column(0, "resource_kind", 25, -1),
    Column(0, "resource_name", 25, -1),
    Column(0, "reason", 25, -1),
    Column(0, "message", 25, -1),
    Column(0, "severity", 25, -1),
    Column(0, "fields", 3802, -1),
    Column(0, "created_at", 1184, -1),
]


def with_type(**oids: int) -> list[Column]:
    return [
        Column(c.flags, c.name, oids[c.name], c.type_modifier) if c.name in oids else c
        for c in REFERENCE_COLUMNS
    ]


VALID: list[tuple[str, TableMapping, Any]] = [
    ("reference-columns", TableMapping(), REFERENCE_COLUMNS),
    ("names-only", TableMapping(), [c.name for c in REFERENCE_COLUMNS]),
    ("relation", TableMapping(), Relation(1, "public", "events", "d", tuple(REFERENCE_COLUMNS))),
    ("varchar-org-uuid-id", TableMapping(), with_type(org_id=1043, id=2950)),
    ("enum-severity-not-judged", TableMapping(), with_type(severity=50123)),
    ("timestamp-without-zone", TableMapping(), with_type(created_at=1114)),
    ("json-fields", TableMapping(), with_type(fields=114)),
    (
        "deletes-with-full-identity",
        TableMapping(ops=["insert", "delete"]),
        Relation(1, "public", "events", "f", tuple(REFERENCE_COLUMNS)),
    ),
    (
        "resource-column-only",
        TableMapping(resource_column="resource"),
        [c.name for c in REFERENCE_COLUMNS if not c.name.startswith("resource_")] + ["resource"],
    ),
]


@pytest.mark.parametrize(("mapping", "columns"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_mappings(mapping: TableMapping, columns: Any) -> None:
    assert validate_mapping(mapping, columns) == []


INVALID: list[tuple[str, TableMapping, Any, list[str]]] = [
    (
        "missing-org-column",
        TableMapping(org_column="tenant"),
        REFERENCE_COLUMNS,
        ["table public.events", "'tenant' (org_column) does not exist", "org_id"],
    ),
    (
        "missing-field-column",
        TableMapping(schema="app", table="audit", field_columns=["cpu"]),
        [c.name for c in REFERENCE_COLUMNS],
        ["table app.audit", "'cpu' (field_columns[0]) does not exist"],
    ),
    ("jsonb-org", TableMapping(), with_type(org_id=3802), ["'org_id' (org_column) is jsonb"]),
    (
        "text-time",
        TableMapping(),
        with_type(created_at=25),
        ["'created_at' (time_column) is text", "timestamptz"],
    ),
    ("text-fields", TableMapping(), with_type(fields=25), ["'fields' (fields_column) is text", "jsonb"]),
    ("int-reason", TableMapping(), with_type(reason=23), ["'reason' (reason_column) is int4"]),
    (
        "deletes-without-full-identity",
        TableMapping(ops=["delete"]),
        Relation(1, "public", "events", "d", tuple(REFERENCE_COLUMNS)),
        ["REPLICA IDENTITY FULL"],
    ),
    ("no-columns", TableMapping(), [], ["'id' (id_column) does not exist; it has no columns"]),
]


@pytest.mark.parametrize(
    ("mapping", "columns", "needles"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID]
)
def test_invalid_mappings(mapping: TableMapping, columns: Any, needles: list[str]) -> None:
    problems = validate_mapping(mapping, columns)
    assert problems
    text = "\n".join(problems)
    for needle in needles:
        assert needle in text


def test_every_missing_column_is_reported() -> None:
    problems = validate_mapping(TableMapping(), ["id"])
    assert len(problems) == len(REFERENCE_COLUMNS) - 1


def test_mapping_config_rejects_unknown_keys() -> None:
    with pytest.raises(msgspec.ValidationError, match="org_colum"):
        msgspec.convert({"org_colum": "tenant"}, TableMapping)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"resource_kind_column": None}, "resource_column"),
        ({"ops": []}, "ops"),
        ({"ops": ["upsert"]}, "ops"),
        ({"org_column": ""}, "org_column"),
        ({"field_columns": [""]}, "field_columns[0]"),
    ],
    ids=["half-resource-pair", "no-ops", "unknown-op", "empty-column-name", "empty-field-column"],
)
def test_mapping_config_rejects_bad_values(config: dict[str, Any], needle: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(config, TableMapping)
    assert needle in str(info.value)


def test_mapping_defaults_fit_reference_table() -> None:
    m = msgspec.convert({}, TableMapping)
    assert m == TableMapping()
    assert (m.qualified_name, m.org_column, m.fields_column, m.id_column, m.ops) == (
        "public.events",
        "org_id",
        "fields",
        "id",
        ["insert"],
    )


# ---------------------------------------------------------------------------- insert helper

_INSERT_RE = re.compile(r"INSERT INTO (\S+) \((.*)\) VALUES \((.*)\) RETURNING (\S+)")


def parse_insert(sql: str) -> tuple[str, list[str], list[str], str]:
    m = _INSERT_RE.fullmatch(sql)
    assert m is not None, sql
    return m.group(1), m.group(2).split(", "), m.group(3).split(", "), m.group(4)


REQUEST = EmitRequest(
    reason="DeviceDisconnected",
    org="acme",
    resource_kind="Device",
    resource_name="dev-1",
    message="gone",
    severity="critical",
    fields={"cpu": 97.5, "site": "lab"},
)


def test_insert_sql_for_reference_table() -> None:
    sql, params = insert_event_sql(REQUEST)
    table, columns, placeholders, returning = parse_insert(sql)
    assert table == '"public"."events"'
    assert returning == '"id"'
    assert [p.split("::")[0] for p in placeholders] == [f"${i}" for i in range(1, len(params) + 1)]
    by_column = dict(zip(columns, params, strict=True))
    assert by_column.pop('"fields"') is not None
    assert by_column == {
        '"org_id"': "acme",
        '"reason"': "DeviceDisconnected",
        '"resource_kind"': "Device",
        '"resource_name"': "dev-1",
        '"message"': "gone",
        '"severity"': "critical",
    }
    fields_at = columns.index('"fields"')
    assert placeholders[fields_at].endswith("::jsonb")
    assert msgspec.json.decode(params[fields_at]) == {"cpu": 97.5, "site": "lab"}


def test_insert_sql_leaves_defaults_to_the_table() -> None:
    sql, params = insert_event_sql(EmitRequest(reason="R", org="o", resource_kind="K", resource_name="n"))
    _, columns, _, _ = parse_insert(sql)
    assert columns == ['"org_id"', '"reason"', '"resource_kind"', '"resource_name"']
    assert params == ["o", "R", "K", "n"]


def test_insert_sql_with_time_and_single_resource_column() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    mapping = TableMapping(schema="app", table='odd"name', resource_column="resource")
    sql, params = insert_event_sql(REQUEST, mapping, occurred_at=at)
    table, columns, _, _ = parse_insert(sql)
    assert table == '"app"."odd""name"'
    by_column = dict(zip(columns, params, strict=True))
    assert by_column['"resource"'] == "Device/dev-1"
    assert by_column['"created_at"'] == at
    assert '"resource_kind"' not in by_column


@pytest.mark.parametrize(
    ("mapping", "what"),
    [
        (TableMapping(message_column=None), "message"),
        (TableMapping(severity_column=None), "severity"),
        (TableMapping(fields_column=None), "fields"),
    ],
    ids=["no-message-column", "no-severity-column", "no-fields-column"],
)
def test_insert_sql_refuses_to_drop_values(mapping: TableMapping, what: str) -> None:
    with pytest.raises(ValueError, match=f"no column mapped for {what}"):
        insert_event_sql(REQUEST, mapping)


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("events", '"events"'), ('a"b', '"a""b"'), ("Mixed Case", '"Mixed Case"')],
    ids=["plain", "embedded-quote", "space-and-case"],
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize("name", ["", "a\0b"], ids=["empty", "nul"])
def test_quote_ident_rejects(name: str) -> None:
    with pytest.raises(ValueError):
        quote_ident(name)


# ---------------------------------------------------------------------------- tocsin emit


def test_parse_emit_args_full() -> None:
    req = parse_emit_args(
        [
            "DeviceDisconnected",
            "--org",
            "acme",
            "--resource",
            "Device/dev/1",
            "--message",
            "lost heartbeat",
            "--severity",
            "critical",
            "--field",
            "rssi=-70",
            "--field",
            "site=lab",
            "--field",
            "site=factory",
        ]
    )
    assert req == EmitRequest(
        reason="DeviceDisconnected",
        org="acme",
        resource_kind="Device",
        resource_name="dev/1",
        message="lost heartbeat",
        severity="critical",
        fields={"rssi": -70, "site": "factory"},
    )


def test_parse_emit_args_minimal() -> None:
    req = parse_emit_args(["R", "--resource", "K/n", "--org", "o"])
    assert (req.message, req.severity, req.fields) == ("", "", {})


FIELD_VALUES: list[tuple[str, str, tuple[str, Any]]] = [
    ("int", "n=3", ("n", 3)),
    ("negative", "n=-3", ("n", -3)),
    ("float", "x=1.5", ("x", 1.5)),
    ("exponent", "x=1e3", ("x", 1000.0)),
    ("true", "ok=true", ("ok", True)),
    ("false", "ok=false", ("ok", False)),
    ("word", "s=lab", ("s", "lab")),
    ("null-stays-text", "s=null", ("s", "null")),
    ("quoted-stays-raw", 's="x"', ("s", '"x"')),
    ("array-stays-text", "s=[1]", ("s", "[1]")),
    ("object-stays-text", 's={"a":1}', ("s", '{"a":1}')),
    ("empty-value", "s=", ("s", "")),
    ("equals-in-value", "q=a=b", ("q", "a=b")),
    ("leading-zero-is-text", "z=007", ("z", "007")),
    ("capital-true-is-text", "b=True", ("b", "True")),
]


@pytest.mark.parametrize(
    ("text", "expected"), [f[1:] for f in FIELD_VALUES], ids=[f[0] for f in FIELD_VALUES]
)
def test_parse_emit_field(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_emit_field(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


BAD_ARGS: list[tuple[str, list[str], str]] = [
    ("no-org", ["R", "--resource", "K/n"], "--org"),
    ("no-resource", ["R", "--org", "o"], "--resource"),
    ("no-reason", ["--org", "o", "--resource", "K/n"], "reason"),
    ("resource-without-slash", ["R", "--org", "o", "--resource", "Device"], "KIND/NAME"),
    ("field-without-equals", ["R", "--org", "o", "--resource", "K/n", "--field", "x"], "KEY=VALUE"),
    ("field-without-key", ["R", "--org", "o", "--resource", "K/n", "--field", "=1"], "KEY=VALUE"),
    ("empty-reason", ["", "--org", "o", "--resource", "K/n"], "REASON"),
    ("empty-org", ["R", "--org", "", "--resource", "K/n"], "--org"),
    ("unknown-option", ["R", "--org", "o", "--resource", "K/n", "--colour", "red"], "--colour"),
]


@pytest.mark.parametrize(("argv", "needle"), [b[1:] for b in BAD_ARGS], ids=[b[0] for b in BAD_ARGS])
def test_parse_emit_args_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(EmitArgsError, match=re.escape(needle)):
        parse_emit_args(argv)


def test_emit_then_map_round_trip() -> None:
    """What `tocsin emit` inserts comes back out of the source as the same event."""
    req = parse_emit_args(
        ["DeviceDisconnected", "--org", "acme", "--resource", "Device/dev-1", "--field", "n=2"]
    )
    sql, params = insert_event_sql(req)
    _, columns, _, _ = parse_insert(sql)
    inserted = {c.strip('"'): p for c, p in zip(columns, params, strict=True)}
    # What Postgres would send back: defaults filled, jsonb parsed, id and time assigned.
    row = {"id": 1, "message": "", "severity": "", "created_at": CREATED, **inserted}
    row["fields"] = msgspec.json.decode(row["fields"])
    ev = event(TableMapping(), row)
    assert (ev.org, ev.reason, ev.resource_kind, ev.resource_name, ev.fields) == (
        req.org,
        req.reason,
        req.resource_kind,
        req.resource_name,
        req.fields,
    )
