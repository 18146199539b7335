"""The source's pure parts (no servers): config, replication frames, the transaction assembler, batch
packing and the restart rule. Lives with the source's integration tests; not marked integration."""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import DeadLetter, Event, decode
from contracts.partition import partition_of
from pipeline.foundation.runtime.jetstream import BatchMsg
from stages.source.config import SourceConfig, SourceConfigError, load_source_config
from stages.source.mapping import TableMapping
from stages.source.pgoutput import PG_EPOCH, PgOutputError, format_lsn, parse_lsn
from stages.source.replication import (
    Keepalive,
    ReplicationError,
    XLogData,
    lock_key,
    parse_frame,
    pg_micros,
    standby_status,
    start_replication_command,
    wal_level_problem,
)
from stages.source.runner import (
    DLQ_SUBJECT,
    BatchPacker,
    Checkpoint,
    Chunk,
    Durable,
    TransactionAssembler,
    checkpoint_key,
    plan,
    random_traceparent,
    text_tuple,
)

# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"slot": "Bad-Name"}, "source.slot"),
        ({"publication": ""}, "source.publication"),
        ({"tables": []}, "source.tables"),
        ({"tables": [{"table": "events"}, {"table": "events"}]}, "listed twice"),
        ({"status_interval": 0}, "source.status_interval"),
        ({"reconnect_backoff": 5, "reconnect_backoff_max": 1}, "reconnect_backoff_max"),
        ({"batch_messages": 1001}, "source.batch_messages"),
        ({"batch_messages": 1}, "source.batch_messages"),
        ({"slots": "x"}, "slots"),
        ({"tables": [{"tabel": "events"}]}, "tabel"),
    ],
    ids=["slot-name", "empty-publication", "no-tables", "duplicate-table", "zero-interval", "backoff-order",
         "batch-too-big", "batch-too-small", "unknown-key", "unknown-table-key"],
)
def test_source_config_rejects_with_the_key_named(raw: dict, error: str) -> None:
    with pytest.raises(SourceConfigError, match=error):
        load_source_config(raw)


def test_source_config_defaults_read_the_reference_table() -> None:
    cfg = load_source_config(None)
    assert (cfg.slot, cfg.publication) == ("tocsin", "tocsin")
    assert (cfg.batch_messages, cfg.rows_per_batch) == (1000, 999)
    assert cfg.mapping_for("public", "events") == TableMapping()
    assert cfg.mapping_for("public", "other") is None
    assert load_source_config({"slot": "s2"}).slot == "s2"


# ---------------------------------------------------------------------------- replication frames


def test_parse_frame_reads_xlogdata_and_keepalive() -> None:
    w = b"w" + struct.pack(">QQq", 0x10, 0x20, 123) + b"B-payload"
    assert parse_frame(w) == XLogData(0x10, 0x20, 123, b"B-payload")
    assert parse_frame(b"k" + struct.pack(">QqB", 0x30, 456, 1)) == Keepalive(0x30, 456, True)
    assert parse_frame(b"k" + struct.pack(">QqB", 0x30, 456, 0)) == Keepalive(0x30, 456, False)


@pytest.mark.parametrize("frame", [b"", b"w\x00", b"k" + b"\x00" * 5, b"x123"],
                         ids=["empty", "short-xlogdata", "short-keepalive", "unknown-type"])
def test_parse_frame_rejects_malformed(frame: bytes) -> None:
    with pytest.raises(ReplicationError):
        parse_frame(frame)


def test_standby_status_reports_flushed_as_written_flushed_applied() -> None:
    data = standby_status(0xABCDEF, 99, reply=True)
    assert struct.unpack(">cQQQqB", data) == (b"r", 0xABCDEF, 0xABCDEF, 0xABCDEF, 99, 1)
    assert pg_micros(PG_EPOCH.timestamp() + 1.5) == 1_500_000


def test_start_replication_command_uses_protocol_1() -> None:
    cmd = start_replication_command("tocsin", ["pub"], parse_lsn("16/B374D848"))
    assert cmd == ('START_REPLICATION SLOT "tocsin" LOGICAL 16/B374D848 '
                   "(proto_version '1', publication_names '\"pub\"')")


@pytest.mark.parametrize(("level", "ok"), [("logical", True), ("replica", False), ("minimal", False)],
                         ids=["logical", "replica", "minimal"])
def test_wal_level_problem_names_the_setting_and_the_fix(level: str, ok: bool) -> None:
    problem = wal_level_problem(level)
    assert (problem is None) == ok
    if problem:
        assert f"wal_level = {level}" in problem and "ALTER SYSTEM SET wal_level = logical" in problem


def test_lock_key_is_a_stable_signed_bigint_per_slot() -> None:
    keys = {lock_key(s) for s in ("tocsin", "other", "tocsin/setup")}
    assert len(keys) == 3 and all(-(1 << 63) <= k < 1 << 63 for k in keys)
    assert lock_key("tocsin") == lock_key("tocsin")


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
    y2k = repr(datetime(2000, 1, 1, tzinfo=UTC).timestamp())  # the commit's time (0 in the protocol's epoch)
    assert [m.headers for m in chunk.msgs] == [{"Nats-Msg-Id": "0/1000:0", "Tocsin-Time": y2k},
                                               {"Nats-Msg-Id": "0/1000:1", "Tocsin-Time": y2k}]


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
    ids = [m.headers["Nats-Msg-Id"] for c in items for m in c.msgs]
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


# ---------------------------------------------------------------------------- packing and the restart rule


def chunks_of(sizes: list[int], chunk_limit: int) -> list[Chunk | Durable]:
    """Transactions of the given sizes as the assembler makes them (commit LSNs 0x1000, 0x2000, ...)."""
    items: list[Chunk | Durable] = []
    for t, n in enumerate(sizes):
        lsn = 0x1000 * (t + 1)
        if n == 0:
            items.append(Durable(lsn + 8))
            continue
        msgs = [BatchMsg("s", f"{t}:{i}".encode(), {"Nats-Msg-Id": f"{format_lsn(lsn)}:{i}"})
                for i in range(n)]
        for start in range(0, n, chunk_limit):
            part = msgs[start:start + chunk_limit]
            last = start + chunk_limit >= n
            items.append(Chunk(lsn, start, part, 0.0, end_lsn=lsn + 8 if last else None,
                               txn_messages=n if last else 0))
    return items


def run(items: list, limit: int, base: Checkpoint | None, flushed: int) -> list:
    """Feed items, cutting a batch whenever the packer says or after every item (like an idle queue)."""
    packer = BatchPacker(limit, base, flushed)
    batches = []
    for it in items:
        batches += packer.add(it)
        if (b := packer.flush()) is not None:
            batches.append(b)
    return batches


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=12), limit=st.integers(1, 7),
       chunk_limit=st.integers(1, 9), crash=st.integers(0, 40), resend_all=st.booleans())
def test_restart_from_any_checkpoint_publishes_every_message_exactly_once(
        sizes: list[int], limit: int, chunk_limit: int, crash: int, resend_all: bool) -> None:
    items = chunks_of(sizes, chunk_limit)
    everything = [m.payload for it in items if isinstance(it, Chunk) for m in it.msgs]
    first = [b for b in run(items, limit, None, 0) if b.checkpoint is not None]
    done = first[:crash]
    for b in done:
        assert len(b.msgs) <= limit
    keys = [checkpoint_key(b.checkpoint) for b in done]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    cp = done[-1].checkpoint if done else None
    resume = parse_lsn(cp.lsn) if cp else 0
    # Postgres resends from the slot's confirmed position (at most cp.lsn): maybe everything again,
    # at least every transaction committed at or after cp.lsn.
    again = items if resend_all else [it for it in items if (isinstance(it, Durable) and it.lsn > resume)
                                      or (isinstance(it, Chunk) and it.commit_lsn >= resume)]
    second = run(again, limit, cp, resume)
    published = [m.payload for b in done + second for m in b.msgs]
    assert published == everything
    flushes = [b.flushed for b in done + second]
    assert flushes == sorted(flushes)
    assert flushes[-1] == 0x1000 * len(sizes) + 8


def test_packer_shares_batches_between_small_transactions_and_splits_large_ones() -> None:
    packer = BatchPacker(5, None, 0)
    out = []
    for it in chunks_of([2, 2, 7], chunk_limit=5):
        out += packer.add(it)
    last = packer.flush()
    assert last is not None
    batches = [*out, last]
    assert [len(b.msgs) for b in batches] == [5, 5, 1]
    cps = [b.checkpoint for b in batches if b.checkpoint is not None]
    assert [(c.commit_lsn, c.next_index, c.complete) for c in cps] == [
        ("0/3000", 1, False), ("0/3000", 6, False), ("0/3000", 7, True)]
    assert [c.lsn for c in cps] == ["0/2008", "0/2008", "0/3008"]  # where to resume if this is the last
    assert [b.flushed for b in batches] == [0x2008, 0x2008, 0x3008]
    assert [[c.commit_lsn for c in b.completed] for b in batches] == [[0x1000, 0x2000], [], [0x3000]]


@pytest.mark.parametrize(
    ("cp", "chunk", "expected"),
    [
        (None, (0x2000, 0, 3, True), 0),
        (("0/1000", 5, True), (0x2000, 0, 3, True), 0),
        (("0/3000", 1, False), (0x2000, 0, 3, True), None),
        (("0/2000", 3, True), (0x2000, 0, 3, True), None),
        (("0/2000", 2, False), (0x2000, 0, 3, True), 2),
        (("0/2000", 3, False), (0x2000, 0, 3, True), 3),
        (("0/2000", 3, False), (0x2000, 0, 3, False), None),
        (("0/2000", 3, False), (0x2000, 3, 3, False), 0),
    ],
    ids=["fresh", "older-checkpoint", "newer-checkpoint", "same-complete", "part-published",
         "only-completion-missing", "non-final-all-published", "later-chunk"],
)
def test_plan_says_how_much_of_a_chunk_is_published(cp: tuple | None, chunk: tuple,
                                                    expected: int | None) -> None:
    checkpoint = None
    if cp is not None:
        checkpoint = Checkpoint(lsn="0/0", commit_lsn=cp[0], next_index=cp[1], complete=cp[2])
    lsn, first, n, final = chunk
    c = Chunk(lsn, first, [BatchMsg("s", b"")] * n, 0.0, end_lsn=lsn + 8 if final else None)
    assert plan(c, checkpoint) == expected


def test_random_traceparent_is_valid_w3c() -> None:
    assert random_traceparent(lambda n: bytes(range(1, n + 1))) == {
        "traceparent": "00-0102030405060708090a0b0c0d0e0f10-1112131415161718-01"}
    zero = random_traceparent(lambda n: bytes(n))["traceparent"]
    assert zero == f"00-{'0' * 31}1-{'0' * 15}1-01"  # all-zero ids are invalid in W3C


def test_random_traceparents_differ_and_differ_after_a_fork() -> None:
    ids = {random_traceparent()["traceparent"] for _ in range(1000)}
    assert len(ids) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's ids are its own, not a copy of the parent's sequence
        os.write(write, random_traceparent()["traceparent"].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child != random_traceparent()["traceparent"]
    os.close(read)
    os.close(write)
