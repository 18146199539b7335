"""Poison rows without servers: the JSON depth guard, and the assembler turning a row with a refused
org, an over-deep json value or an event over max_payload into one bounded dead letter in its place."""

from __future__ import annotations

import hashlib
import struct
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ids import check_org
from contracts.messages import DeadLetter, Event, decode
from stages.source.config import SourceConfig
from stages.source.core import DLQ_SUBJECT, Chunk, TransactionAssembler
from stages.source.limits import DEAD_REASON_HEADER, HEADER_ROOM, MAX_JSON_DEPTH, json_depth, json_too_deep
from stages.source.mapping import EmitArgsError, RowError, TableMapping, parse_emit_args, parse_emit_field, row_to_event
from stages.source.pgoutput import JsonDepthError, TypeOid, convert_text
from stages.source.session import to_batch_msg

# ---------------------------------------------------------------------------- the depth guard


def deep(n: int, inner: str = "") -> str:
    return "[" * n + inner + "]" * n


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "]]]]", "b": [[1]]}', 3),
        ('["\\"[[[", ["\\\\"]]', 2),  # escaped quote and backslash inside strings
        ('{"k": "\\u005b"}', 1),
        (deep(5000), 5000),
        ('{"a": ' + deep(5000) + "}", 5001),
    ],
    ids=["scalar", "brackets-in-string", "empty-array", "nested", "closers-in-string", "escapes", "unicode-escape",
         "5000-deep", "5000-deep-in-object"],
)
def test_json_depth_counts_nesting_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=30)


@given(_json)
def test_json_depth_matches_the_parsed_value(value: Any) -> None:
    assert json_depth(msgspec.json.encode(value).decode()) == _depth(value)


def test_json_depth_of_a_huge_value_is_fast_and_never_recursive() -> None:
    text = '{"a": ' + deep(200_000, '"' + "x" * 1_000_000 + '"') + "}"
    t0 = time.perf_counter()
    assert json_too_deep(text)
    assert json_depth(text) == 200_001
    assert time.perf_counter() - t0 < 2.0
    assert not json_too_deep('{"blob": "' + "[" * 1_000_000 + '"}')  # all inside a string


@pytest.mark.parametrize("oid", [TypeOid.JSONB, TypeOid.JSON])
def test_json_values_deeper_than_the_limit_are_refused_not_recursed(oid: int) -> None:
    assert convert_text(oid, '{"a": ' + deep(MAX_JSON_DEPTH - 1) + "}") == {"a": msgspec.json.decode(
        deep(MAX_JSON_DEPTH - 1))}
    for n in (MAX_JSON_DEPTH, 5000, 100_000):
        with pytest.raises(JsonDepthError, match=f"deeper than {MAX_JSON_DEPTH}"):
            convert_text(oid, '{"a": ' + deep(n) + "}")


def test_tocsin_emit_keeps_a_deep_field_as_text_and_refuses_a_bad_org() -> None:
    assert parse_emit_field("k=" + deep(5000)) == ("k", deep(5000))
    for org in ("*", "a|b", "o" * 151, "a\x01b"):
        with pytest.raises(EmitArgsError, match="--org"):
            parse_emit_args(["Tick", "--org", org, "--resource", "Device/d1"])


# ---------------------------------------------------------------------------- org and id checks


def _row(**over: Any) -> dict[str, Any]:
    return {"id": 1, "org_id": "acme", "resource_kind": "Device", "resource_name": "d1", "reason": "Tick",
            "message": "", "severity": "", "fields": {}, "created_at": None, **over}


_BAD_ORGS = st.one_of(st.text(min_size=151), st.just("*"), st.tuples(st.text(), st.text()).map("|".join),
                      st.tuples(st.text(), st.characters(max_codepoint=0x1F), st.text()).map("".join))


@given(_BAD_ORGS)
def test_every_org_the_validator_refuses_is_a_row_error(org: str) -> None:
    assert check_org(org) is not None
    with pytest.raises(RowError) as info:
        row_to_event(TableMapping(time_column=None), _row(org_id=org), table="events", op="insert", lsn=1,
                     committed_at=0.0)
    assert info.value.code == "org" and "org_column" in str(info.value)


def test_an_overlong_row_id_is_a_row_error() -> None:
    with pytest.raises(RowError) as info:
        row_to_event(TableMapping(time_column=None), _row(id="i" * 2000), table="events", op="insert", lsn=1,
                     committed_at=0.0)
    assert info.value.code == "id"


# ---------------------------------------------------------------------------- the assembler

COLUMNS = [("id", TypeOid.INT8), ("org_id", TypeOid.TEXT), ("resource_kind", TypeOid.TEXT),
           ("resource_name", TypeOid.TEXT), ("reason", TypeOid.TEXT), ("message", TypeOid.TEXT),
           ("severity", TypeOid.TEXT), ("fields", TypeOid.JSONB), ("created_at", TypeOid.TIMESTAMPTZ)]
REL = 16385
MAX_PAYLOAD = 256 * 1024


def relation() -> bytes:
    body = struct.pack(">I", REL) + b"public\x00events\x00d" + struct.pack(">h", len(COLUMNS))
    for i, (col, oid) in enumerate(COLUMNS):
        body += struct.pack(">B", 1 if i == 0 else 0) + col.encode() + b"\x00" + struct.pack(">Ii", oid, -1)
    return b"R" + body


def insert(row_id: int, *, update: bool = False, **over: str) -> bytes:
    row = {"id": str(row_id), "org_id": "acme", "resource_kind": "Device", "resource_name": "d1",
           "reason": "Tick", "message": "m", "severity": "", "fields": '{"a": 1}',
           "created_at": "2024-06-01 12:00:00+00", **over}
    data = struct.pack(">h", len(COLUMNS))
    for col, _ in COLUMNS:
        raw = row[col].encode()
        data += b"t" + struct.pack(">i", len(raw)) + raw
    return (b"U" if update else b"I") + struct.pack(">I", REL) + b"N" + data


def assemble(*rows: bytes, ops: list | None = None) -> Chunk:
    config = SourceConfig(tables=[TableMapping(ops=ops or ["insert"])])
    a = TransactionAssembler(config, 4, lambda event_id, at: {}, max_payload=MAX_PAYLOAD)
    items = []
    for data in (relation(), b"B" + struct.pack(">QqI", 0x1000, 0, 777), *rows,
                 b"C" + struct.pack(">BQQq", 0, 0x1000, 0x1030, 0)):
        items += a.feed(data)
    assert len(items) == 1 and isinstance(items[0], Chunk)
    return items[0]


POISONS = {
    "org-5000": ({"org_id": "o" * 5000}, "org", "rejected", "longer than 150"),
    "org-star": ({"org_id": "*"}, "org", "rejected", '"*"'),
    "org-union": ({"org_id": "a|b"}, "org", "rejected", "'|'"),
    "org-control": ({"org_id": "a\x1bb"}, "org", "rejected", "control character"),
    "too-large": ({"fields": '{"blob": "' + "x" * MAX_PAYLOAD + '"}'}, "size", "too_large", "max_payload"),
    "too-large-message": ({"message": "x" * (MAX_PAYLOAD - HEADER_ROOM)}, "size", "too_large", "max_payload"),
    "5000-deep": ({"fields": '{"a": ' + deep(5000) + "}"}, "depth", "undecodable", "nested deeper"),
}


@pytest.mark.parametrize("update", [False, True], ids=["insert-fast-path", "update-full-decoder"])
@pytest.mark.parametrize("poison", list(POISONS), ids=list(POISONS))
def test_a_poison_row_is_one_bounded_dead_letter_in_its_place(poison: str, update: bool) -> None:
    over, code, cause, fragment = POISONS[poison]
    ops = ["update"] if update else ["insert"]
    chunk = assemble(insert(1, update=update), insert(2, update=update, **over), insert(3, update=update), ops=ops)
    assert [m.subject == DLQ_SUBJECT for m in chunk.msgs] == [False, True, False]
    assert [m.msg_id for m in chunk.msgs] == ["0/1000:0", "0/1000:1", "0/1000:2"]
    dead = chunk.msgs[1]
    assert dead.dead == code and [m.dead for m in chunk.msgs] == [None, code, None]
    wire = to_batch_msg(dead).headers  # the code travels with the dead letter, for its metric and `nats stream view`
    assert wire is not None and wire[DEAD_REASON_HEADER] == code and wire["Nats-Msg-Id"] == "0/1000:1"
    assert len(dead.payload) < 16 * 1024  # always fits, whatever the row
    letter = decode(dead.payload)
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.table, letter.key, letter.cause) == ("source", "public.events", "2", cause)
    assert fragment in letter.reason, letter.reason
    assert letter.headers == {"lsn": "0/1000", "xid": "777"}
    assert letter.digest.startswith("sha256:") and letter.size >= len(letter.payload)
    if letter.size == len(letter.payload):
        assert letter.digest == "sha256:" + hashlib.sha256(letter.payload).hexdigest()
        assert str(msgspec.json.decode(letter.payload)["id"]) == "2"  # the row, readable
    else:
        assert code == "size" and len(letter.payload) <= 4096 and letter.size > MAX_PAYLOAD - HEADER_ROOM
    assert [decode(m.payload).id for m in (chunk.msgs[0], chunk.msgs[2])] == ["1", "3"]  # type: ignore[union-attr]


def test_an_event_just_under_the_budget_is_published() -> None:
    overhead = len(assemble(insert(1, message="x")).msgs[0].payload) - 1
    chunk = assemble(insert(1, message="x" * (MAX_PAYLOAD - HEADER_ROOM - overhead)))
    assert len(chunk.msgs[0].payload) == MAX_PAYLOAD - HEADER_ROOM
    assert isinstance(decode(chunk.msgs[0].payload), Event)
    over = assemble(insert(1, message="x" * (MAX_PAYLOAD - HEADER_ROOM - overhead + 1)))
    assert over.msgs[0].subject == DLQ_SUBJECT


_cell = st.text(max_size=300)
_fields = st.one_of(_cell, st.integers(0, 300).map(lambda n: '{"a": ' + deep(n) + "}"),
                    _json.map(lambda v: msgspec.json.encode({"v": v}).decode()))


@given(st.lists(st.tuples(_cell, _cell, _fields), min_size=1, max_size=5), st.booleans())
def test_any_row_gives_exactly_one_message_that_fits(rows: list[tuple[str, str, str]], update: bool) -> None:
    """Fuzzed org, resource name and fields: the assembler never raises, every row is an event or
    a dead letter in its place, and every message fits."""
    ops = ["update"] if update else ["insert"]
    chunk = assemble(*[insert(i, update=update, org_id=org, resource_name=name or "n", fields=fields)
                       for i, (org, name, fields) in enumerate(rows)], ops=ops)
    assert [m.msg_id for m in chunk.msgs] == [f"0/1000:{i}" for i in range(len(rows))]
    for (org, _, _), m in zip(rows, chunk.msgs, strict=True):
        assert len(m.payload) <= MAX_PAYLOAD - HEADER_ROOM
        msg = decode(m.payload)
        if check_org(org) is not None:
            assert isinstance(msg, DeadLetter)  # (for the org, or a fields value read first)
        if isinstance(msg, Event):
            assert msg.org == org and m.subject != DLQ_SUBJECT
