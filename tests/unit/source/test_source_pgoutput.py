"""pgoutput decoding: every message type built byte by byte from the documented layout."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.source.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputDecoder,
    PgOutputError,
    Relation,
    RelationCache,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    decode_message,
)

# ---------------------------------------------------------------------------- wire builders
# Written from PostgreSQL's "Logical Replication Message Formats", independently of the decoder:
# Int8/16/32/64 big-endian, String NUL-terminated, TupleData = Int16 count + per column
# 'n' | 'u' | 't' Int32 len bytes | 'b' Int32 len bytes.

SKIP = object()  # a cell sent as 'u' (unchanged TOAST)


def cstr(s: str) -> bytes:
    return s.encode("utf-8") + b"\x00"


def xid_part(xid: int | None) -> bytes:
    return b"" if xid is None else struct.pack(">I", xid)


def tuple_data(cells: list[Any]) -> bytes:
    out = struct.pack(">h", len(cells))
    for cell in cells:
        if cell is None:
            out += b"n"
        elif cell is SKIP:
            out += b"u"
        elif isinstance(cell, str):
            raw = cell.encode("utf-8")
            out += b"t" + struct.pack(">i", len(raw)) + raw
        else:
            out += b"b" + struct.pack(">i", len(cell)) + cell
    return out


def w_begin(final_lsn: int, ts: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts, xid)


def w_commit(flags: int, commit_lsn: int, end_lsn: int, ts: int) -> bytes:
    return b"C" + struct.pack(">BQQq", flags, commit_lsn, end_lsn, ts)


def w_origin(lsn: int, name: str) -> bytes:
    return b"O" + struct.pack(">Q", lsn) + cstr(name)


def w_relation(
    relid: int, ns: str, name: str, ident: str, cols: list[tuple[int, str, int, int]], xid: int | None = None
) -> bytes:
    out = b"R" + xid_part(xid) + struct.pack(">I", relid) + cstr(ns) + cstr(name)
    out += struct.pack(">Bh", ord(ident), len(cols))
    for flags, cname, oid, typmod in cols:
        out += struct.pack(">B", flags) + cstr(cname) + struct.pack(">Ii", oid, typmod)
    return out


def w_type(oid: int, ns: str, name: str, xid: int | None = None) -> bytes:
    return b"Y" + xid_part(xid) + struct.pack(">I", oid) + cstr(ns) + cstr(name)


def w_insert(relid: int, cells: list[Any], xid: int | None = None) -> bytes:
    return b"I" + xid_part(xid) + struct.pack(">I", relid) + b"N" + tuple_data(cells)


def w_update(
    relid: int, new: list[Any], old: tuple[bytes, list[Any]] | None = None, xid: int | None = None
) -> bytes:
    out = b"U" + xid_part(xid) + struct.pack(">I", relid)
    if old is not None:
        out += old[0] + tuple_data(old[1])
    return out + b"N" + tuple_data(new)


def w_delete(relid: int, kind: bytes, old: list[Any], xid: int | None = None) -> bytes:
    return b"D" + xid_part(xid) + struct.pack(">I", relid) + kind + tuple_data(old)


def w_truncate(relids: list[int], options: int, xid: int | None = None) -> bytes:
    return (
        b"T"
        + xid_part(xid)
        + struct.pack(">iB", len(relids), options)
        + b"".join(struct.pack(">I", r) for r in relids)
    )


def w_message(flags: int, lsn: int, prefix: str, content: bytes, xid: int | None = None) -> bytes:
    return (
        b"M"
        + xid_part(xid)
        + struct.pack(">BQ", flags, lsn)
        + cstr(prefix)
        + struct.pack(">i", len(content))
        + content
    )


def w_stream_start(xid: int, first: int) -> bytes:
    return b"S" + struct.pack(">IB", xid, first)


def w_stream_commit(xid: int, flags: int, commit_lsn: int, end_lsn: int, ts: int) -> bytes:
    return b"c" + struct.pack(">IBQQq", xid, flags, commit_lsn, end_lsn, ts)


def w_stream_abort(xid: int, subxid: int, tail: tuple[int, int] | None = None) -> bytes:
    out = b"A" + struct.pack(">II", xid, subxid)
    return out if tail is None else out + struct.pack(">Qq", *tail)


# 2024-01-01T00:00:00Z is 8766 days (24 years, 6 of them leap) after 2000-01-01.
TS_2024 = 8766 * 86_400 * 1_000_000
DT_2024 = datetime(2024, 1, 1, tzinfo=UTC)
LSN = 0x16_B374D848
XID = 0xFFFF_FFF0  # above 2**31: unsigned on the wire

EVENTS_COLS = [(1, "id", 20, -1), (0, "org_id", 25, -1), (0, "fields", 3802, -1)]
EVENTS_REL = Relation(
    relation_id=16384,
    namespace="public",
    name="events",
    replica_identity="d",
    columns=(Column(1, "id", 20, -1), Column(0, "org_id", 25, -1), Column(0, "fields", 3802, -1)),
)

MESSAGES: list[tuple[str, bytes, bool, object]] = [
    ("begin", w_begin(LSN, TS_2024, XID), False, Begin(final_lsn=LSN, commit_ts=DT_2024, xid=XID)),
    (
        "begin-before-2000",
        w_begin(1, -1, 7),
        False,
        Begin(final_lsn=1, commit_ts=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), xid=7),
    ),
    (
        "commit",
        w_commit(0, LSN, LSN + 48, TS_2024 + 1),
        False,
        Commit(flags=0, commit_lsn=LSN, end_lsn=LSN + 48, commit_ts=DT_2024 + timedelta(microseconds=1)),
    ),
    ("origin", w_origin(LSN, "node_a"), False, Origin(commit_lsn=LSN, name="node_a")),
    ("relation", w_relation(16384, "public", "events", "d", EVENTS_COLS), False, EVENTS_REL),
    (
        "relation-catalog-full-typmod",
        w_relation(1, "", "t", "f", [(1, "v", 1043, 14), (1, "n", 1700, 655366)]),
        False,
        Relation(1, "", "t", "f", (Column(1, "v", 1043, 14), Column(1, "n", 1700, 655366))),
    ),
    ("relation-no-columns", w_relation(9, "s", "empty", "n", []), False, Relation(9, "s", "empty", "n", ())),
    (
        "relation-in-stream",
        w_relation(16384, "public", "events", "d", EVENTS_COLS, xid=XID),
        True,
        Relation(16384, "public", "events", "d", EVENTS_REL.columns, xid=XID),
    ),
    ("type", w_type(50000, "public", "mood"), False, Type(type_oid=50000, namespace="public", name="mood")),
    ("type-in-stream", w_type(50000, "public", "mood", xid=5), True, Type(50000, "public", "mood", xid=5)),
    (
        "insert-all-cell-kinds",
        w_insert(16384, ["42", None, SKIP, b"\x00\xff", "", "héllo ✓"]),
        False,
        Insert(16384, ("42", None, UNCHANGED, b"\x00\xff", "", "héllo ✓")),
    ),
    ("insert-no-columns", w_insert(3, []), False, Insert(3, ())),
    ("insert-in-stream", w_insert(3, ["1"], xid=77), True, Insert(3, ("1",), xid=77)),
    ("update-no-old", w_update(3, ["1", SKIP]), False, Update(3, ("1", UNCHANGED))),
    (
        "update-old-key",
        w_update(3, ["2", "x"], old=(b"K", ["1", None])),
        False,
        Update(3, ("2", "x"), old_kind="K", old=("1", None)),
    ),
    (
        "update-old-full",
        w_update(3, ["1", "new"], old=(b"O", ["1", "old"])),
        False,
        Update(3, ("1", "new"), old_kind="O", old=("1", "old")),
    ),
    (
        "update-in-stream",
        w_update(3, ["1"], old=(b"O", ["0"]), xid=9),
        True,
        Update(3, ("1",), old_kind="O", old=("0",), xid=9),
    ),
    ("delete-key", w_delete(3, b"K", ["1", None]), False, Delete(3, "K", ("1", None))),
    ("delete-full", w_delete(3, b"O", ["1", "a"]), False, Delete(3, "O", ("1", "a"))),
    ("delete-in-stream", w_delete(3, b"K", ["1"], xid=4), True, Delete(3, "K", ("1",), xid=4)),
    ("truncate", w_truncate([1, 2], 3), False, Truncate((1, 2), 3)),
    ("truncate-none", w_truncate([], 0), False, Truncate((), 0)),
    ("truncate-in-stream", w_truncate([5], 2, xid=8), True, Truncate((5,), 2, xid=8)),
    (
        "message-transactional",
        w_message(1, LSN, "tocsin", b"\x00hello"),
        False,
        LogicalMessage(1, LSN, "tocsin", b"\x00hello"),
    ),
    ("message-empty", w_message(0, 1, "", b""), False, LogicalMessage(0, 1, "", b"")),
    ("message-in-stream", w_message(1, 2, "p", b"x", xid=6), True, LogicalMessage(1, 2, "p", b"x", xid=6)),
    ("stream-start-first", w_stream_start(XID, 1), False, StreamStart(xid=XID, first_segment=True)),
    ("stream-start-later", w_stream_start(12, 0), True, StreamStart(xid=12, first_segment=False)),
    ("stream-stop", b"E", True, StreamStop()),
    (
        "stream-commit",
        w_stream_commit(12, 0, LSN, LSN + 8, TS_2024),
        False,
        StreamCommit(xid=12, flags=0, commit_lsn=LSN, end_lsn=LSN + 8, commit_ts=DT_2024),
    ),
    ("stream-abort", w_stream_abort(12, 13), False, StreamAbort(xid=12, subxid=13)),
    (
        "stream-abort-parallel",
        w_stream_abort(12, 12, (LSN, TS_2024)),
        False,
        StreamAbort(xid=12, subxid=12, abort_lsn=LSN, abort_ts=DT_2024),
    ),
]


@pytest.mark.parametrize(
    ("data", "in_stream", "expected"), [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES]
)
def test_decodes_each_message_type(data: bytes, in_stream: bool, expected: object) -> None:
    assert decode_message(data, in_stream=in_stream) == expected


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_accepts_any_buffer(wrap: Any) -> None:
    assert decode_message(wrap(w_begin(5, 0, 1))) == Begin(5, datetime(2000, 1, 1, tzinfo=UTC), 1)


def test_message_properties() -> None:
    assert decode_message(w_truncate([1], 1)).cascade is True  # type: ignore[union-attr]
    assert decode_message(w_truncate([1], 1)).restart_identity is False  # type: ignore[union-attr]
    assert decode_message(w_truncate([1], 2)).restart_identity is True  # type: ignore[union-attr]
    assert decode_message(w_message(0, 1, "p", b"")).transactional is False  # type: ignore[union-attr]
    rel = decode_message(w_relation(1, "", "pg_class", "n", [(1, "a", 23, -1), (0, "b", 25, -1)]))
    assert isinstance(rel, Relation)
    assert rel.qualified_name == "pg_catalog.pg_class"
    assert rel.column_names == ("a", "b")
    assert [c.is_key for c in rel.columns] == [True, False]


# ---------------------------------------------------------------------------- malformed input

MALFORMED: list[tuple[str, bytes, bool, str]] = [
    ("empty", b"", False, "empty"),
    ("unknown-type", b"Z\x00\x00", False, "unknown pgoutput message type"),
    ("trailing-byte", w_begin(1, 0, 1) + b"\x00", False, "trailing"),
    ("stop-with-payload", b"E\x01", False, "trailing"),
    ("abort-half-tail", w_stream_abort(1, 1) + b"\x00" * 8, False, "truncated"),
    (
        "bad-cell-kind",
        b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"x",
        False,
        "tuple data kind",
    ),
    ("negative-column-count", b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", -1), False, "negative"),
    (
        "negative-cell-length",
        b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", -1),
        False,
        "negative",
    ),
    (
        "cell-longer-than-message",
        b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 10) + b"abc",
        False,
        "truncated",
    ),
    ("cell-not-utf8", w_insert(1, [b"\xff"]).replace(b"b\x00", b"t\x00"), False, "UTF-8"),
    ("insert-without-N", b"I" + struct.pack(">I", 1) + b"K" + tuple_data([]), False, "'N'"),
    ("update-bad-old-marker", b"U" + struct.pack(">I", 1) + b"X" + tuple_data([]), False, "'K' or 'O'"),
    ("update-old-then-no-N", w_update(1, [], old=(b"K", [])).replace(b"N\x00", b"Q\x00"), False, "'N'"),
    ("delete-with-N", b"D" + struct.pack(">I", 1) + b"N" + tuple_data([]), False, "'K' or 'O'"),
    ("name-without-NUL", b"O" + struct.pack(">Q", 1) + b"abc", False, "NUL"),
    ("name-not-utf8", b"O" + struct.pack(">Q", 1) + b"\xc3\x28\x00", False, "UTF-8"),
    ("negative-relation-count", b"T" + struct.pack(">iB", -1, 0), False, "negative"),
    (
        "negative-message-length",
        b"M" + struct.pack(">BQ", 0, 1) + b"p\x00" + struct.pack(">i", -5),
        False,
        "negative",
    ),
    ("timestamp-out-of-range", w_begin(1, 2**63 - 1, 1), False, "out of range"),
    ("stream-xid-missing", w_insert(1, ["a"]), True, "'N'"),  # 'N' read as part of the xid: misaligned
]


@pytest.mark.parametrize(
    ("data", "in_stream", "needle"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_input_raises(data: bytes, in_stream: bool, needle: str) -> None:
    with pytest.raises(PgOutputError, match=needle):
        decode_message(data, in_stream=in_stream)


def test_error_is_a_value_error() -> None:
    assert issubclass(PgOutputError, ValueError)


@pytest.mark.parametrize(("data", "in_stream"), [m[1:3] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
def test_every_truncation_raises(data: bytes, in_stream: bool) -> None:
    # Every message above has fixed-size or length-prefixed fields, so no strict prefix is valid
    # (stream abort's optional protocol-4 tail is the one exception, covered by "stream-abort").
    for cut in range(len(data)):
        prefix = data[:cut]
        if prefix[:1] == b"A" and cut == 9:
            continue
        with pytest.raises(PgOutputError):
            decode_message(prefix, in_stream=in_stream)


@settings(max_examples=500)
@given(st.binary(max_size=64), st.booleans())
def test_arbitrary_bytes_decode_or_raise_pgoutput_error(data: bytes, in_stream: bool) -> None:
    try:
        decode_message(data, in_stream=in_stream)
    except PgOutputError:
        pass


@given(st.sampled_from([m[1:3] for m in MESSAGES]), st.data())
def test_single_byte_corruption_never_crashes_otherwise(msg: tuple[bytes, bool], data: st.DataObject) -> None:
    raw, in_stream = msg
    pos = data.draw(st.integers(0, len(raw) - 1))
    corrupted = raw[:pos] + bytes([data.draw(st.integers(0, 255))]) + raw[pos + 1 :]
    try:
        decode_message(corrupted, in_stream=in_stream)
    except PgOutputError:
        pass


# ---------------------------------------------------------------------------- relation cache and rows


def test_relation_change_mid_stream_replaces_columns() -> None:
    dec = PgOutputDecoder()
    assert isinstance(
        dec.decode(w_relation(7, "public", "events", "d", [(1, "id", 20, -1), (0, "a", 25, -1)])), Relation
    )
    first = dec.decode(w_insert(7, ["1", "x"]))
    assert isinstance(first, Insert)
    assert dec.relations.decode_row(7, first.new) == {"id": 1, "a": "x"}

    # ALTER TABLE: column a becomes int4 and b (jsonb) is added; Postgres sends a new Relation.
    dec.decode(
        w_relation(7, "public", "events", "d", [(1, "id", 20, -1), (0, "a", 23, -1), (0, "b", 3802, -1)])
    )
    second = dec.decode(w_insert(7, ["2", "5", '{"k": [1]}']))
    assert isinstance(second, Insert)
    assert dec.relations.decode_row(7, second.new) == {"id": 2, "a": 5, "b": {"k": [1]}}
    assert len(dec.relations) == 1
    # A tuple shaped like the old relation no longer fits.
    with pytest.raises(PgOutputError, match="3"):
        dec.relations.decode_row(7, first.new)


def test_cache_add_returns_replaced_relation() -> None:
    cache = RelationCache()
    assert cache.add(EVENTS_REL) is None
    newer = Relation(EVENTS_REL.relation_id, "public", "events", "f", EVENTS_REL.columns)
    assert cache.add(newer) == EVENTS_REL
    assert cache.get(EVENTS_REL.relation_id) == newer
    assert EVENTS_REL.relation_id in cache
    assert list(cache) == [newer]


def test_unknown_relation_raises() -> None:
    with pytest.raises(PgOutputError, match="relation 99"):
        RelationCache().decode_row(99, ())


def _cache(ident: str = "d") -> RelationCache:
    cache = RelationCache()
    cache.add(
        Relation(
            7,
            "public",
            "t",
            ident,
            (Column(1, "id", 23, -1), Column(0, "big", 25, -1), Column(0, "n", 21, -1)),
        )
    )
    return cache


CHANGES: list[tuple[str, bytes, str, dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]] = [
    (
        "insert",
        w_insert(7, ["1", "a", None]),
        "insert",
        {"id": 1, "big": "a", "n": None},
        None,
        {"id": 1, "big": "a", "n": None},
    ),
    (
        "update-toast-stays-unchanged-without-full-old",
        w_update(7, ["1", SKIP, "2"]),
        "update",
        {"id": 1, "big": UNCHANGED, "n": 2},
        None,
        {"id": 1, "big": UNCHANGED, "n": 2},
    ),
    (
        "update-toast-filled-from-full-old",
        w_update(7, ["1", SKIP, "3"], old=(b"O", ["1", "long text", "2"])),
        "update",
        {"id": 1, "big": "long text", "n": 3},
        {"id": 1, "big": "long text", "n": 2},
        {"id": 1, "big": "long text", "n": 3},
    ),
    (
        "update-key-old-does-not-fill",
        w_update(7, ["2", SKIP, "3"], old=(b"K", ["1", None, None])),
        "update",
        {"id": 2, "big": UNCHANGED, "n": 3},
        {"id": 1, "big": None, "n": None},
        {"id": 2, "big": UNCHANGED, "n": 3},
    ),
    (
        "delete-key",
        w_delete(7, b"K", ["1", None, None]),
        "delete",
        None,
        {"id": 1, "big": None, "n": None},
        {"id": 1, "big": None, "n": None},
    ),
]


@pytest.mark.parametrize(
    ("data", "op", "new", "old", "row"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_row_changes(
    data: bytes, op: str, new: dict[str, Any] | None, old: dict[str, Any] | None, row: dict[str, Any]
) -> None:
    msg = decode_message(data)
    assert isinstance(msg, Insert | Update | Delete)
    change = _cache().change(msg)
    assert (change.op, change.new, change.old, change.row) == (op, new, old, row)
    assert change.relation.name == "t"


def test_decoder_tracks_stream_blocks() -> None:
    dec = PgOutputDecoder()
    dec.decode(w_relation(3, "public", "t", "d", [(1, "id", 23, -1)]))
    dec.decode(w_stream_start(500, 1))
    assert dec.in_stream
    assert dec.decode(w_insert(3, ["1"], xid=500)) == Insert(3, ("1",), xid=500)
    # A Relation inside a stream updates the cache too.
    dec.decode(w_relation(3, "public", "t", "d", [(1, "id", 23, -1), (0, "b", 16, -1)], xid=500))
    assert dec.relations.get(3).column_names == ("id", "b")
    dec.decode(b"E")
    assert not dec.in_stream
    assert dec.decode(w_insert(3, ["2", "t"])) == Insert(3, ("2", "t"))


@pytest.mark.parametrize(
    ("sequence", "needle"),
    [([b"E"], "outside"), ([w_stream_start(1, 1), w_stream_start(1, 0)], "inside")],
    ids=["stop-outside", "nested-start"],
)
def test_decoder_rejects_unbalanced_streams(sequence: list[bytes], needle: str) -> None:
    dec = PgOutputDecoder()
    with pytest.raises(PgOutputError, match=needle):
        for data in sequence:
            dec.decode(data)
