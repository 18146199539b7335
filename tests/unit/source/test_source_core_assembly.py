"""The source core's transaction assembly and value decoding (no servers): pgoutput messages in,
chunks of events and dead letters out, whatever the chunking."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import DeadLetter, Event, decode
from contracts.partition import partition_of
from stages.source.config import SourceConfig
from stages.source.core import DLQ_SUBJECT, Chunk, Durable, Message, TransactionAssembler, text_tuple
from stages.source.mapping import TableMapping
from stages.source.pgoutput import PgOutputError
from stages.source.session import to_batch_msg

# ---------------------------------------------------------------------------- pgoutput builders (from docs)

COLUMNS = [("id", 20), ("org_id", 25), ("resource_kind", 25), ("resource_name", 25), ("reason", 25),
           ("message", 25), ("severity", 25), ("fields", 3802), ("created_at", 1184)]
REL = 16385


def tuple_data(cells: list) -> bytes:
    out = struct.pack(">h", len(cells))
    for c in cells:
        if c is None:
            out += b"n"
        elif c == "<unchanged>":
            out += b"u"
        else:
            raw = c.encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def relation(rel: int = REL, name: str = "events", cols: list = COLUMNS) -> bytes:
    body = struct.pack(">I", rel) + b"public\x00" + name.encode() + b"\x00d" + struct.pack(">h", len(cols))
    for i, (col, oid) in enumerate(cols):
        body += struct.pack(">B", 1 if i == 0 else 0) + col.encode() + b"\x00" + struct.pack(">Ii", oid, -1)
    return b"R" + body


def begin(lsn: int) -> bytes:
    return b"B" + struct.pack(">QqI", lsn, 0, 700)


def commit(lsn: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, lsn, lsn + 0x30, 0)


def insert(row_id: int, org: str = "acme", rel: int = REL, **over: str | None) -> bytes:
    row = {"id": str(row_id), "org_id": org, "resource_kind": "Device", "resource_name": f"d{row_id}",
           "reason": "Tick", "message": "m", "severity": "", "fields": '{"a": 1}',
           "created_at": "2024-06-01 12:00:00+00", **over}
    return b"I" + struct.pack(">I", rel) + b"N" + tuple_data([row[c] for c, _ in COLUMNS])


def update(row_id: int) -> bytes:
    return b"U" + struct.pack(">I", REL) + b"N" + insert(row_id)[6:]


def fixed_trace(event_id: str, committed_at: float) -> dict[str, str]:
    return {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}


def as_event(payload: bytes) -> Event:
    msg = decode(payload)
    assert isinstance(msg, Event), msg
    return msg


def as_letter(payload: bytes) -> DeadLetter:
    msg = decode(payload)
    assert isinstance(msg, DeadLetter), msg
    return msg


def assembler(batch_messages: int = 1000, ops: list | None = None) -> TransactionAssembler:
    tables = [TableMapping(ops=ops or ["insert"])]
    return TransactionAssembler(SourceConfig(batch_messages=batch_messages, tables=tables), 8, fixed_trace)


def feed_all(a: TransactionAssembler, *messages: bytes) -> list:
    out = []
    for m in messages:
        out += a.feed(m)
    return out


def delete(row_id: int) -> bytes:
    return b"D" + struct.pack(">I", REL) + b"O" + insert(row_id)[6:]


# ---------------------------------------------------------------------------- assembler


def test_assembler_turns_a_transaction_into_one_chunk_of_events() -> None:
    a = assembler()
    items = feed_all(a, relation(), begin(0x1000), insert(1), insert(2, org="other"), commit(0x1000))
    assert len(items) == 1
    chunk = items[0]
    assert (chunk.commit_lsn, chunk.first_index, chunk.end_lsn, chunk.txn_messages) == (0x1000, 0, 0x1030, 2)
    events = [as_event(m.payload) for m in chunk.msgs]
    assert [e.id for e in events] == ["1", "2"]
    assert events[0].lsn == "0/1000"
    assert events[0].occurred_at == datetime(2024, 6, 1, 12, tzinfo=UTC).timestamp()
    assert events[0].fields == {"a": 1} and events[0].trace == fixed_trace("", 0)
    subjects = [f"tocsin.events.out.{partition_of(o, 8)}.event" for o in ("acme", "other")]
    assert [m.subject for m in chunk.msgs] == subjects
    y2k = datetime(2000, 1, 1, tzinfo=UTC).timestamp()  # the commit's time (0 in the protocol's epoch)
    assert [(m.msg_id, m.time, m.dead) for m in chunk.msgs] == [("0/1000:0", y2k, None), ("0/1000:1", y2k, None)]
    assert [to_batch_msg(m).headers for m in chunk.msgs] == [{"Nats-Msg-Id": "0/1000:0", "Tocsin-Time": repr(y2k)},
                                                             {"Nats-Msg-Id": "0/1000:1", "Tocsin-Time": repr(y2k)}]


def test_assembler_fast_path_matches_the_full_decoder() -> None:
    fast = feed_all(assembler(), relation(), begin(0x2000), insert(7), commit(0x2000))[0]
    # An Update goes through pgoutput's decoder; with the same tuple it must give the same event.
    slow = feed_all(assembler(ops=["update"]), relation(), begin(0x2000), update(7), commit(0x2000))[0]
    f, s = as_event(fast.msgs[0].payload), as_event(slow.msgs[0].payload)
    assert msgspec.structs.replace(s, op="insert") == f


def test_assembler_splits_large_transactions_in_order() -> None:
    a = assembler(batch_messages=4)  # 3 rows per chunk
    items = feed_all(a, relation(), begin(0x3000), *[insert(i) for i in range(7)], commit(0x3000))
    shape = [(c.first_index, len(c.msgs), c.final) for c in items]
    assert shape == [(0, 3, False), (3, 3, False), (6, 1, True)]
    ids = [m.msg_id for c in items for m in c.msgs]
    assert ids == [f"0/3000:{i}" for i in range(7)]


def test_assembler_dead_letters_keep_their_place() -> None:
    a = assembler()
    items = feed_all(a, relation(), begin(0x4000), insert(1), insert(2, org=""), insert(3, id="x"),
                     insert(4, fields="[1]"), insert(5), commit(0x4000))
    msgs = items[0].msgs
    assert [m.subject == DLQ_SUBJECT for m in msgs] == [False, True, True, True, False]
    letters = [as_letter(m.payload) for m in msgs[1:4]]
    assert {(d.table, d.stage) for d in letters} == {("public.events", "source")}
    assert [d.key for d in letters] == ["2", "x", "4"]
    assert "org_column" in letters[0].reason and "int8" in letters[1].reason and "fields" in letters[2].reason


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([relation(rel=9, name="other"), begin(0x5000), insert(1, rel=9), commit(0x5000)], [Durable(0x5030)]),
        ([relation(), begin(0x5000), update(1), commit(0x5000)], [Durable(0x5030)]),
        ([begin(0x5000), commit(0x5000)], [Durable(0x5030)]),
    ],
    ids=["unmapped-table", "unmapped-op", "empty-transaction"],
)
def test_assembler_transactions_without_events_only_move_the_flush_position(messages: list,
                                                                           expected: list) -> None:
    assert feed_all(assembler(), *messages) == expected


def test_assembler_refuses_changes_of_unknown_relations() -> None:
    with pytest.raises(PgOutputError):
        feed_all(assembler(), begin(0x6000), insert(1))


@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_text_tuple_reads_text_and_nulls(cells: list) -> None:
    data = b"I1234N" + tuple_data(cells)
    assert text_tuple(data, 6) == cells
    assert text_tuple(data[:-1], 6) is None  # truncated


@pytest.mark.parametrize("cells", [["a", "<unchanged>"], ["a", None, "<unchanged>"]],
                         ids=["toast", "toast-late"])
def test_text_tuple_leaves_unusual_tuples_to_the_full_decoder(cells: list) -> None:
    assert text_tuple(tuple_data(cells), 0) is None
    assert text_tuple(tuple_data(["a"]) + b"extra", 0) is None



# ---------------------------------------------------------------------------- which rows become events


@pytest.mark.parametrize(
    ("ops", "change", "events"),
    [
        (["insert"], insert, 1),
        (["insert"], update, 0),
        (["insert"], delete, 0),
        (["update"], update, 1),
        (["delete"], delete, 1),
        (["insert", "update", "delete"], delete, 1),
    ],
    ids=["insert-mapped", "update-unmapped", "delete-unmapped", "update-mapped", "delete-mapped", "all-ops"],
)
def test_assembler_publishes_only_the_mapped_ops(ops: list, change: Callable[[int], bytes], events: int) -> None:
    items = feed_all(assembler(ops=ops), relation(), begin(0x1000), change(1), commit(0x1000))
    if events:
        assert len(items) == 1 and isinstance(items[0], Chunk)
        (msg,) = items[0].msgs
        assert as_event(msg.payload).op == ("insert" if change is insert else "update" if change is update
                                            else "delete")
    else:
        assert items == [Durable(0x1030)]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([relation(), begin(0x1000), begin(0x2000)], "Begin inside a transaction"),
        ([relation(), commit(0x1000)], "Commit outside a transaction"),
        ([relation(), insert(1)], "outside a transaction"),
        ([relation(), update(1)], "row change outside a transaction"),
        ([relation(), begin(0x1000), insert(1), commit(0x2000)], "does not match its Begin"),
        ([b"S" + struct.pack(">IB", 700, 1)], "streamed transaction"),
    ],
    ids=["begin-twice", "commit-alone", "insert-alone", "update-alone", "commit-lsn-mismatch", "streamed"],
)
def test_assembler_refuses_a_broken_stream(messages: list, error: str) -> None:
    with pytest.raises(PgOutputError, match=error):
        feed_all(assembler(), *messages)


def test_assembler_notes_truncates_and_reports_mapping_problems_for_the_caller_to_log() -> None:
    a = assembler()
    truncate = b"T" + struct.pack(">IBI", 1, 0, REL)
    assert feed_all(a, relation(), begin(0x1000), truncate, commit(0x1000)) == [Durable(0x1030)]
    assert a.notes == ["ignoring a TRUNCATE of 1 relation(s): truncates are not events"] and a.problems == []
    feed_all(a, relation(cols=[("id", 20), ("org_id", 25)]))  # the table lost columns the mapping reads
    assert a.problems and all("events" in p for p in a.problems)


def test_assembler_reads_no_clock_the_event_time_is_the_commits() -> None:
    ts = 86_400 * 1_000_000  # one day after 2000-01-01 in the protocol's microseconds
    items = feed_all(assembler(), relation(), b"B" + struct.pack(">QqI", 0x1000, ts, 700), insert(1), commit(0x1000))
    day = datetime(2000, 1, 2, tzinfo=UTC).timestamp()
    assert items[0].committed_at == day and items[0].msgs[0].time == day
    assert as_event(items[0].msgs[0].payload).committed_at == day


# ---------------------------------------------------------------------------- any chunking, the same transaction


_cells = st.lists(st.sampled_from(["acme", "other", "", "a|b", "o" * 200]), min_size=0, max_size=25)


def _flat(items: list) -> list[Message]:
    return [m for it in items if isinstance(it, Chunk) for m in it.msgs]


@settings(max_examples=150, deadline=None)
@given(orgs=_cells, batch_messages=st.integers(2, 12), before=st.integers(0, 3))
def test_any_chunking_assembles_the_same_transaction(orgs: list[str], batch_messages: int, before: int) -> None:
    """Chunks of any size (rows_per_batch) hold the same messages, in order, as one big chunk;
    they are contiguous, only the last is final, and it counts the whole transaction."""
    rows = [insert(i, org=o) for i, o in enumerate(orgs)]
    prefix = [m for t in range(before) for m in (begin(0x100 * (t + 1)), commit(0x100 * (t + 1)))]
    whole = feed_all(assembler(), relation(), *prefix, begin(0x9000), *rows, commit(0x9000))
    split = feed_all(assembler(batch_messages=batch_messages), relation(), *prefix, begin(0x9000), *rows,
                     commit(0x9000))
    assert _flat(split) == _flat(whole)
    assert split[:before] == [Durable(0x100 * (t + 1) + 0x30) for t in range(before)]
    chunks = split[before:]
    if not orgs:  # a transaction without rows only moves the flush position
        assert chunks == [Durable(0x9030)]
        return
    assert all(isinstance(c, Chunk) for c in chunks)
    assert all(0 < len(c.msgs) <= batch_messages - 1 for c in chunks)
    assert [c.first_index for c in chunks] == [sum(len(p.msgs) for p in chunks[:i]) for i in range(len(chunks))]
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert (chunks[-1].end_lsn, chunks[-1].txn_messages) == (0x9030, len(orgs))
    assert [m.msg_id for m in _flat(split)] == [f"0/9000:{i}" for i in range(len(orgs))]
    assert [m.dead is not None for m in _flat(split)] == [m.subject == DLQ_SUBJECT for m in _flat(split)]


@pytest.mark.parametrize(
    ("messages", "keepalives", "marks"),
    [
        ([], [0x100, 0x200], [0x100, 0x200]),
        ([], [0x200, 0x100, 0x200], [0x200]),
        ([relation(), begin(0x1000), insert(1)], [0x2000], []),
        ([relation(), begin(0x1000), insert(1), commit(0x1000)], [0x2000], [0x2000]),
        ([], [0], []),
    ],
    ids=["moves", "never-back-or-twice", "inside-a-transaction", "after-the-commit", "zero"],
)
def test_keepalives_between_transactions_are_durable_marks(messages: list, keepalives: list[int],
                                                           marks: list[int]) -> None:
    a = assembler()
    feed_all(a, *messages)
    assert [it for k in keepalives for it in a.keepalive(k)] == [Durable(m) for m in marks]
