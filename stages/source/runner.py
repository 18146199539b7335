"""Hop A: committed transactions from logical replication into EVENTS, effectively once.

The pure part turns pgoutput messages into :class:`Chunk` s: the events (and dead letters) of
one transaction, in order, at most ``rows_per_batch`` at a time, each message carrying
``Nats-Msg-Id: <commit LSN>:<index>``. :func:`plan` decides, against the last
:class:`Checkpoint`, what of a chunk still has to be published.

:class:`SourceSession` does the I/O for one replication connection: a reader task decodes
frames into chunks, a publisher task commits each chunk as ONE atomic batch whose last message
is the checkpoint (subject ``tocsin.events.source.<slot>``, ``Nats-Rollup: sub``), and only after
the PubAck of a transaction's last chunk reports its end LSN as flushed to Postgres; a feedback
task sends the standby status updates.

Restart rule: the checkpoint says which transaction (commit LSN) the last batch belonged to,
how many of its messages are published and whether it was complete. Transactions below it are
skipped, a split transaction resumes after its last published message, so nothing depends on the
stream's duplicate window (an atomic batch holding a duplicate message id is refused whole, so
re-sending published parts would not even work).

``python -m stages.source.runner --nats-url U --postgres-dsn D --partitions P`` runs a source
process on its own (used by the crash tests).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from contracts.messages import DeadLetter, decode_as, encode
from contracts.partition import partition_of
from pipeline.foundation.runtime.deadletter import MIN_BUDGET, build_dead_letter
from pipeline.foundation.runtime.jetstream import BatchMsg, publish_atomic
from pipeline.foundation.runtime.metrics import REGISTRY
from pipeline.foundation.runtime.partition import TIME_HEADER
from pipeline.foundation.runtime.subjects import EVENTS
from stages.source.config import SourceConfig
from stages.source.limits import DEAD_REASON_HEADER, event_budget
from stages.source.mapping import Op, RowError, TableMapping, row_to_event, validate_mapping
from stages.source.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    JsonDepthError,
    PgOutputDecoder,
    PgOutputError,
    Relation,
    StreamStart,
    Truncate,
    TypeOid,
    Update,
    convert_text,
    format_lsn,
    parse_lsn,
    to_unix,
)
from stages.source.replication import (
    Keepalive,
    ReplicationStream,
    SlotBusyError,
    XLogData,
    current_wal_lsn,
    parse_frame,
    pg_micros,
)

__all__ = [
    "DLQ_SUBJECT",
    "EVENTS",
    "Batch",
    "BatchPacker",
    "Checkpoint",
    "Chunk",
    "Durable",
    "PublishFn",
    "SourceMetrics",
    "SourceSession",
    "TraceFn",
    "TransactionAssembler",
    "checkpoint_key",
    "checkpoint_subject",
    "main",
    "plan",
    "random_traceparent",
    "read_checkpoint",
    "source_metrics",
    "text_tuple",
    "trace_context_factory",
]

log = logging.getLogger("tocsin.source")

DLQ_SUBJECT = EVENTS.dlq("source")
_STAGE = "source"


def checkpoint_subject(slot: str) -> str:
    """Where the source keeps its checkpoint for ``slot``, inside the EVENTS stream."""
    return f"{EVENTS.prefix}.source.{slot}"


# ---------------------------------------------------------------------------- checkpoint and chunks (pure)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The last batch the source committed: the last message of every batch.

    ``lsn``: every transaction ending at or before it is in the stream (where to resume).
    ``commit_lsn``: the transaction of that batch; ``next_index``: how many of its messages are
    published; ``complete``: all of them are.
    """

    lsn: str
    commit_lsn: str
    next_index: int
    complete: bool
    committed_at: float = 0.0


@dataclass(slots=True)
class Chunk:
    """Consecutive messages of one transaction: what goes into one atomic batch (with the checkpoint)."""

    commit_lsn: int
    first_index: int
    msgs: list[BatchMsg]
    committed_at: float
    end_lsn: int | None = None  # set on the transaction's last chunk
    txn_messages: int = 0  # messages of the whole transaction (last chunk only)

    @property
    def final(self) -> bool:
        return self.end_lsn is not None

    @property
    def end_index(self) -> int:
        return self.first_index + len(self.msgs)


@dataclass(frozen=True, slots=True)
class Durable:
    """Everything before ``lsn`` is handled once the chunks queued before this are (empty transactions,
    keepalives between transactions)."""

    lsn: int


Item = Chunk | Durable


def plan(chunk: Chunk, cp: Checkpoint | None) -> int | None:
    """How many of ``chunk``'s messages the checkpoint says are in the stream already.

    None means all of them and, for a transaction's last chunk, its completion too. A last
    chunk whose messages are all in but whose completion is not gives ``len(chunk.msgs)``:
    only the checkpoint is missing (a change of batch size between runs can cause that).
    """
    if cp is None:
        return 0
    committed = parse_lsn(cp.commit_lsn)
    if chunk.commit_lsn != committed:
        return 0 if chunk.commit_lsn > committed else None
    if cp.complete:
        return None
    done = min(max(cp.next_index - chunk.first_index, 0), len(chunk.msgs))
    if done == len(chunk.msgs) and not chunk.final:
        return None
    return done


_DONE = 1 << 62


def checkpoint_key(cp: Checkpoint | None) -> tuple[int, int]:
    """Checkpoints in stream order: (commit LSN, messages published; completion counts as all)."""
    if cp is None:
        return (-1, -1)
    return (parse_lsn(cp.commit_lsn), _DONE if cp.complete else cp.next_index)


@dataclass(slots=True)
class Batch:
    """One atomic batch: data messages, then ``checkpoint`` (None: nothing to publish, only ``flushed``
    moves). ``flushed`` is the LSN that is durable once the batch is."""

    msgs: list[BatchMsg]
    checkpoint: Checkpoint | None
    flushed: int
    completed: list[Chunk] = field(default_factory=list)  # transactions this batch completes
    skipped: int = 0  # messages left out as already published
    dead_letters: list[BatchMsg] = field(default_factory=list)  # those of ``msgs`` that are dead letters


class BatchPacker:
    """Packs chunks of consecutive transactions into batches of at most ``limit`` data messages.

    Small transactions share a batch (one checkpoint, for the last of them), large ones span
    several; a batch is cut when full, or by :meth:`flush` when nothing more is waiting. What
    ``base`` (the checkpoint the session started from) says is published is left out.
    """

    def __init__(self, limit: int, base: Checkpoint | None, flushed: int) -> None:
        self.limit = limit
        self.base = base
        self.resume = flushed  # durable once everything packed so far is
        self._msgs: list[BatchMsg] = []
        self._last: tuple[Chunk, int] | None = None  # chunk of the last message packed, and how far
        self._cp_lsn = flushed
        self._completed: list[Chunk] = []
        self._skipped = 0
        self._dead: list[BatchMsg] = []
        self._moved = False

    def add(self, item: Item) -> list[Batch]:
        """Pack ``item``; return the batches it filled."""
        if isinstance(item, Durable):
            if item.lsn > self.resume:
                self.resume = item.lsn
                self._moved = True
            return []
        chunk = item
        offset = plan(chunk, self.base)
        if offset is None:
            self._skipped += len(chunk.msgs)
            if chunk.end_lsn is not None and chunk.end_lsn > self.resume:
                self.resume = chunk.end_lsn
                self._moved = True
            return []
        self._skipped += offset
        full: list[Batch] = []
        n = len(chunk.msgs)
        while True:
            take = min(self.limit - len(self._msgs), n - offset)
            if take > 0:
                part = chunk.msgs[offset : offset + take]
                self._msgs += part
                self._dead += [m for m in part if m.subject == DLQ_SUBJECT]
                offset += take
            self._last = (chunk, offset)
            if offset == n:
                if chunk.end_lsn is not None:
                    self.resume = max(self.resume, chunk.end_lsn)
                    self._completed.append(chunk)
                self._cp_lsn = self.resume
                if len(self._msgs) >= self.limit:
                    full.append(self._cut())
                return full
            self._cp_lsn = self.resume
            full.append(self._cut())

    def flush(self) -> Batch | None:
        """Whatever is packed, as a batch (None when nothing changed since the last one)."""
        if self._last is not None:
            return self._cut()
        if self._moved or self._skipped:
            batch = Batch([], None, self.resume, skipped=self._skipped)
            self._moved, self._skipped = False, 0
            return batch
        return None

    def _cut(self) -> Batch:
        assert self._last is not None
        chunk, upto = self._last
        cp = Checkpoint(
            lsn=format_lsn(self._cp_lsn),
            commit_lsn=format_lsn(chunk.commit_lsn),
            next_index=chunk.first_index + upto,
            complete=chunk.end_lsn is not None and upto == len(chunk.msgs),
            committed_at=chunk.committed_at,
        )
        batch = Batch(self._msgs, cp, self.resume, self._completed, self._skipped, self._dead)
        self._msgs, self._last, self._completed, self._dead = [], None, [], []
        self._skipped = 0
        self._moved = False
        return batch


# ---------------------------------------------------------------------------- trace context


class TraceFn(Protocol):
    def __call__(self, event_id: str, committed_at: float) -> dict[str, str]: ...


# Trace ids are unique, not secret: a seeded generator rather than a system call per event
# (``os.urandom`` was 6% of the source's CPU), seeded afresh in a forked child.
_trace_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _trace_rng.seed(os.urandom(16)))


def random_traceparent(random_bytes: Callable[[int], bytes] = _trace_rng.randbytes) -> dict[str, str]:
    """A new W3C trace context: random 16-byte trace id and 8-byte span id, sampled."""
    raw = random_bytes(24)
    trace_id, span_id = raw[:16], raw[16:]
    if not any(trace_id):  # all-zero ids are invalid
        trace_id = b"\x00" * 15 + b"\x01"
    if not any(span_id):
        span_id = b"\x00" * 7 + b"\x01"
    return {"traceparent": f"00-{trace_id.hex()}-{span_id.hex()}-01"}


def trace_context_factory() -> TraceFn:
    """One span per event (the source's transaction) when tracing is set up, else random ids."""
    from pipeline.foundation import telemetry

    if telemetry.tracer() is None:
        return lambda event_id, committed_at: random_traceparent()

    def with_span(event_id: str, committed_at: float) -> dict[str, str]:
        tp = telemetry.producer_span("source transaction", None, {
            "db.system": "postgresql", "messaging.system": "nats", "messaging.operation.type": "publish",
            "tocsin.event.id": event_id}, start_time=committed_at)
        return {"traceparent": tp} if tp else random_traceparent()

    return with_span


# ---------------------------------------------------------------------------- transactions to chunks (pure)


@dataclass(slots=True)
class _Open:
    commit_lsn: int
    lsn_text: str
    committed_at: float
    xid: int = 0
    first_index: int = 0
    count: int = 0
    pending: list[BatchMsg] = field(default_factory=list)


_TEXT_OIDS = frozenset({TypeOid.TEXT, TypeOid.VARCHAR, TypeOid.BPCHAR, TypeOid.NAME, TypeOid.CHAR})


def text_tuple(data: bytes, pos: int) -> list[str | None] | None:
    """pgoutput TupleData at ``pos`` running to the end of ``data``, when every column is text or NULL.

    None when anything else turns up (unchanged TOAST, binary, a bad length, invalid UTF-8):
    the caller then uses the full decoder, which reads those or says what is wrong.
    """
    end = len(data)
    if pos + 2 > end:
        return None
    n = (data[pos] << 8) | data[pos + 1]
    pos += 2
    out: list[str | None] = []
    append = out.append
    try:
        for _ in range(n):
            kind = data[pos]
            if kind == 0x74:  # 't'
                start = pos + 5
                pos = start + int.from_bytes(data[pos + 1 : start], "big")
                if pos > end:
                    return None
                append(data[start:pos].decode())
            elif kind == 0x6E:  # 'n'
                append(None)
                pos += 1
            else:
                return None
    except (IndexError, UnicodeDecodeError):
        return None
    return out if pos == end else None


def _event_table(mapping: TableMapping) -> str:
    return mapping.table if mapping.schema == "public" else mapping.qualified_name


def _json_safe(value: Any) -> Any:
    return str(value)


# Dead-letter codes (the metric's ``reason``) to the DeadLetter ``cause`` every stage uses.
_CAUSES = {"org": "rejected", "id": "rejected", "row": "rejected", "size": "too_large", "depth": "undecodable",
           "value": "undecodable"}


def _value_code(exc: PgOutputError) -> str:
    return "depth" if isinstance(exc, JsonDepthError) else "value"


class TransactionAssembler:
    """Feeds on pgoutput messages of one replication session; yields chunks and durable marks.

    Rows of configured tables whose op is mapped become events on ``EVENTS.out(partition_of(org,
    P), "event")``; rows that cannot become events become dead letters on ``DLQ_SUBJECT`` with
    their table, key and reason, in the same transaction position (and so the same batch).
    That includes poison rows: an org ``contracts.ids.check_org`` refuses, a json value nested
    deeper than ``limits.MAX_JSON_DEPTH``, an event larger than ``max_payload`` (the NATS
    server's, less room for headers) allows. A dead letter keeps the row whole when it fits,
    else an excerpt with the row's size and digest, so it always fits.
    ``problems`` collects mapping problems found in Relation messages, for the caller to log.
    """

    def __init__(self, config: SourceConfig, partitions: int, trace: TraceFn, *,
                 max_payload: int | None = None) -> None:
        self.config = config
        self.partitions = partitions
        self.trace = trace
        self.max_payload = max_payload  # None: no size limit (pure tests)
        self.decoder = PgOutputDecoder()
        self.problems: list[str] = []
        self._limit = config.rows_per_batch
        self._mappings: dict[int, TableMapping | None] = {}
        self._columns: dict[int, list[tuple[str, int, bool]]] = {}  # (name, type oid, is text)
        self._subjects: dict[str, str] = {}
        self._txn: _Open | None = None

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def feed(self, data: bytes) -> list[Item]:
        if data[:1] == b"I":  # most messages: a fast path, the full decoder for anything unusual
            fast = self._fast_insert(data)
            if fast is not None:
                return fast
        msg = self.decoder.decode(data)
        if isinstance(msg, Insert | Update | Delete):
            return self._change(msg)
        if isinstance(msg, Begin):
            if self._txn is not None:
                raise PgOutputError("Begin inside a transaction")
            lsn_text = format_lsn(msg.final_lsn)
            self._txn = _Open(msg.final_lsn, lsn_text, to_unix(msg.commit_ts), msg.xid)
            return []
        if isinstance(msg, Commit):
            return self._commit(msg)
        if isinstance(msg, Relation):
            self._relation(msg)
        elif isinstance(msg, Truncate):
            log.info("ignoring a TRUNCATE of %d relation(s): truncates are not events", len(msg.relation_ids))
        elif isinstance(msg, StreamStart):
            raise PgOutputError("streamed transaction received, but the source asks for protocol 1")
        return []

    def _relation(self, rel: Relation) -> None:
        mapping = self.config.mapping_for(rel.namespace or "pg_catalog", rel.name)
        self._mappings[rel.relation_id] = mapping
        self._columns[rel.relation_id] = [(c.name, c.type_oid, c.type_oid in _TEXT_OIDS) for c in rel.columns]
        if mapping is not None:
            self.problems += validate_mapping(mapping, rel)

    def _fast_insert(self, data: bytes) -> list[Item] | None:
        """An Insert of text/NULL values read directly (what pgoutput.decode_message and
        RelationCache.change would make of it); None hands the message to the full decoder."""
        txn = self._txn
        if txn is None or len(data) < 8 or data[5] != 0x4E:  # 'N': new tuple
            return None
        relation_id = int.from_bytes(data[1:5], "big")
        if relation_id not in self._mappings:
            return None
        mapping = self._mappings[relation_id]
        if mapping is None or "insert" not in mapping.ops:
            return []
        values = text_tuple(data, 6)
        columns = self._columns[relation_id]
        if values is None or len(values) != len(columns):
            return None
        out = self._room(txn)
        msg_id = self._next_id(txn)
        try:
            row = {name: v if text or v is None else convert_text(oid, v)
                   for (name, oid, text), v in zip(columns, values, strict=True)}
        except PgOutputError as exc:  # a value that cannot be read: the row is bad, not the stream
            raw = {name: v for (name, _, _), v in zip(columns, values, strict=True)}
            txn.pending.append(self._dead(txn, mapping, raw, str(exc), msg_id, _value_code(exc)))
            return out
        self._row(txn, mapping, row, "insert", msg_id)
        return out

    def _room(self, txn: _Open) -> list[Item]:
        """The transaction's pending chunk if it is full (bounds memory for huge transactions)."""
        return [self._flush(txn)] if len(txn.pending) >= self._limit else []

    def _next_id(self, txn: _Open) -> dict[str, str]:
        index = txn.count
        txn.count += 1
        # the commit's time is the event time of its rows, for every later stage (not when a
        # source catching up on the slot happens to publish them)
        return {"Nats-Msg-Id": f"{txn.lsn_text}:{index}", TIME_HEADER: repr(txn.committed_at)}

    def _change(self, msg: Insert | Update | Delete) -> list[Item]:
        txn = self._txn
        if txn is None:
            raise PgOutputError("row change outside a transaction")
        if msg.relation_id not in self._mappings:  # Postgres sends a Relation before a table's first change
            self.decoder.relations.get(msg.relation_id)  # raises, naming the relation
        mapping = self._mappings.get(msg.relation_id)
        if mapping is None:
            return []
        op: Op = "insert" if isinstance(msg, Insert) else "update" if isinstance(msg, Update) else "delete"
        if op not in mapping.ops:
            return []
        out = self._room(txn)
        msg_id = self._next_id(txn)
        try:
            change = self.decoder.relations.change(msg)
        except PgOutputError as exc:  # a value that cannot be read: the row is bad, not the stream
            raw = msg.old if isinstance(msg, Delete) else msg.new
            names = self.decoder.relations.get(msg.relation_id).column_names
            row = {n: v if isinstance(v, str | None) else str(v) for n, v in zip(names, raw, strict=False)}
            txn.pending.append(self._dead(txn, mapping, row, str(exc), msg_id, _value_code(exc)))
            return out
        self._row(txn, mapping, change.row, op, msg_id)
        return out

    def _row(self, txn: _Open, mapping: TableMapping, row: dict[str, Any], op: Op,
             msg_id: dict[str, str]) -> None:
        try:
            event = row_to_event(mapping, row, table=_event_table(mapping), op=op, lsn=txn.lsn_text,
                                 committed_at=txn.committed_at)
        except RowError as exc:
            txn.pending.append(self._dead(txn, mapping, row, str(exc), msg_id, exc.code))
            return
        event.trace = self.trace(event.id, txn.committed_at)
        payload = encode(event)
        if self.max_payload is not None and len(payload) > (budget := event_budget(self.max_payload)):
            reason = (f"the event is {len(payload)} bytes, over the {budget} bytes the NATS server's "
                      f"max_payload ({self.max_payload}) leaves after headers; shrink the row "
                      "(fields, message) or raise max_payload")
            txn.pending.append(self._dead(txn, mapping, row, reason, msg_id, "size"))
            return
        subject = self._subjects.get(event.org)
        if subject is None:
            subject = EVENTS.out(partition_of(event.org, self.partitions), "event")
            self._subjects[event.org] = subject
        txn.pending.append(BatchMsg(subject, payload, msg_id))

    def _dead(self, txn: _Open, mapping: TableMapping, row: dict[str, Any], reason: str,
              msg_id: dict[str, str], code: str) -> BatchMsg:
        """The dead letter of a row, in the row's place; ``code`` classes it (see limits.DEAD_REASON_HEADER)."""
        key = row.get(mapping.id_column)
        try:
            payload = msgspec.json.encode(row, enc_hook=_json_safe)
        except (TypeError, ValueError, RecursionError):
            payload = repr(row).encode()
        budget = MIN_BUDGET if self.max_payload is None else max(MIN_BUDGET, event_budget(self.max_payload))
        letter, _ = build_dead_letter(stage=_STAGE, reason=reason, budget=budget, payload=payload,
                                      at=txn.committed_at, key="" if key is None else str(key),
                                      headers={"lsn": txn.lsn_text, "xid": str(txn.xid)},
                                      cause=_CAUSES.get(code, "rejected"))
        letter = msgspec.structs.replace(letter, table=mapping.qualified_name)
        return BatchMsg(DLQ_SUBJECT, encode(letter), {**msg_id, DEAD_REASON_HEADER: code})

    def _flush(self, txn: _Open) -> Chunk:
        chunk = Chunk(txn.commit_lsn, txn.first_index, txn.pending, txn.committed_at)
        txn.first_index += len(txn.pending)
        txn.pending = []
        return chunk

    def _commit(self, commit: Commit) -> list[Item]:
        txn = self._txn
        if txn is None:
            raise PgOutputError("Commit outside a transaction")
        self._txn = None
        if commit.commit_lsn != txn.commit_lsn:
            raise PgOutputError(f"Commit at {format_lsn(commit.commit_lsn)} does not match its Begin "
                                f"({txn.lsn_text})")
        if txn.count == 0:
            return [Durable(commit.end_lsn)]
        chunk = self._flush(txn)
        chunk.end_lsn = commit.end_lsn
        chunk.txn_messages = txn.count
        return [chunk]


# ---------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class SourceMetrics:
    lag_bytes: Gauge
    flushed_lsn: Gauge
    active: Gauge
    rows: Counter
    dead_letters: Counter
    skipped: Counter
    batches: Counter
    publish_retries: Counter
    transaction_messages: Histogram
    batch_messages: Histogram
    publish_seconds: Histogram


_metrics: SourceMetrics | None = None
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)


def source_metrics() -> SourceMetrics:
    """The process's source metrics, registered once in ``pipeline.foundation.runtime.metrics.REGISTRY``."""
    global _metrics
    if _metrics is None:
        r = REGISTRY
        _metrics = SourceMetrics(
            lag_bytes=Gauge("tocsin_source_replication_lag_bytes",
                            "Server WAL position minus the LSN the source reported flushed", ["slot"],
                            registry=r),
            flushed_lsn=Gauge("tocsin_source_flushed_lsn", "LSN reported flushed (durable in JetStream)",
                              ["slot"], registry=r),
            active=Gauge("tocsin_source_active", "1 when this replica streams the slot, 0 on standby",
                         ["slot"], registry=r),
            rows=Counter("tocsin_source_rows", "Rows published (events and dead letters)", ["slot"],
                         registry=r),
            dead_letters=Counter("tocsin_source_dead_letters",
                                 "Rows sent to the dead letters, by reason (org, id, size, depth, value, row)",
                                 ["slot", "reason"], registry=r),
            skipped=Counter("tocsin_source_rows_skipped", "Rows skipped on resume as already published",
                            ["slot"], registry=r),
            batches=Counter("tocsin_source_batches", "Atomic batches committed", ["slot"], registry=r),
            publish_retries=Counter("tocsin_source_publish_retries", "Batch publishes retried", ["slot"],
                                    registry=r),
            transaction_messages=Histogram("tocsin_source_transaction_rows", "Rows per published transaction",
                                           ["slot"], buckets=_SIZES, registry=r),
            batch_messages=Histogram("tocsin_source_batch_messages", "Messages per atomic batch", ["slot"],
                                     buckets=_SIZES, registry=r),
            publish_seconds=Histogram("tocsin_source_publish_seconds", "Atomic batch publish latency",
                                      ["slot"], buckets=_LATENCY, registry=r),
        )
    return _metrics


# ---------------------------------------------------------------------------- the session (I/O)

PublishFn = Callable[[NATS, Sequence[BatchMsg]], Awaitable[int]]


async def read_checkpoint(js: JetStreamContext, slot: str) -> Checkpoint | None:
    """The last checkpoint, read from the stream leader (a direct get may be served by a lagging replica)."""
    try:
        raw = await js.get_last_msg(EVENTS.stream, checkpoint_subject(slot), direct=False)
    except NotFoundError:
        return None
    return msgspec.json.decode(bytes(raw.data or b""), type=Checkpoint)


class SourceSession:
    """One replication connection's worth of streaming, for the replica holding the slot's lock.

    Runs until :meth:`stop` (then it publishes what it has read, reports it and returns) or until
    a connection fails (then it raises; the service reconnects and a new session resumes from
    the checkpoint).
    """

    def __init__(self, nc: NATS, js: JetStreamContext, *, dsn: str, config: SourceConfig, partitions: int,
                 lock_conn: Any, application_name: str = "tocsin-source", publish: PublishFn = publish_atomic,
                 trace: TraceFn | None = None, clock: Callable[[], float] = time.time) -> None:
        self.nc, self.js, self.dsn, self.config = nc, js, dsn, config
        self.partitions = partitions
        self.lock_conn = lock_conn
        self.application_name = application_name
        self.publish = publish
        self.clock = clock
        self.assembler = TransactionAssembler(config, partitions, trace or trace_context_factory())
        self.metrics = source_metrics()
        self.slot = config.slot
        self.checkpoint: Checkpoint | None = None
        self.flushed = 0
        self.server_wal = 0
        self._wake = anyio.Event()
        self._stopping = False
        self._reader_scope: anyio.CancelScope | None = None
        self.streaming = anyio.Event()  # set once START_REPLICATION succeeded
        self._publisher_done = anyio.Event()

    def stop(self) -> None:
        """Stop reading; what was read is still published and reported."""
        self._stopping = True
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    async def run(self) -> None:
        # Events are judged against the server this session talks to (a reconnect may reach
        # another one; a new session reads it again).
        self.assembler.max_payload = self.nc.max_payload
        self.checkpoint = await read_checkpoint(self.js, self.slot)
        self.flushed = parse_lsn(self.checkpoint.lsn) if self.checkpoint else 0
        stream = await self._open()
        try:
            log.info("streaming slot %s from %s (checkpoint %s)", self.slot, format_lsn(self.flushed),
                     self.checkpoint)
            self.streaming.set()
            self._wake.set()  # a first status update moves the slot up to the checkpoint
            # Room for a full batch of small transactions (each is a chunk and a Durable): with
            # 16 items, a batch held 8 of them and the serial publisher capped the source at
            # ~250 transactions/s; 256 items are at most ~80 MB of 999-row chunks.
            send, receive = anyio.create_memory_object_stream[Item](256)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._publisher, receive)
                tg.start_soon(self._watch)
                tg.start_soon(self._feedback, stream)
                await self._reader(stream, send)
                # Reader stopped (drain): the publisher finishes the queue, then a last status update.
                await self._publisher_done.wait()
                await stream.send_status(self.flushed, pg_micros(self.clock()))
                tg.cancel_scope.cancel()
        finally:
            await stream.close()

    async def _open(self) -> ReplicationStream:
        """Connect and START_REPLICATION from the checkpoint.

        A replica that just died may hold the slot for a moment (its walsender has to notice),
        so a busy slot is retried for a while.
        """
        deadline = time.monotonic() + 15.0
        while True:
            stream = await ReplicationStream.connect(self.dsn, application_name=self.application_name)
            try:
                await stream.check_wal_level()
                _, _, self.server_wal = await stream.identify()
                await stream.start(self.slot, [self.config.publication], self.flushed)
                return stream
            except SlotBusyError as exc:
                await stream.close()
                if time.monotonic() > deadline or self._stopping:
                    raise
                log.info("slot busy, retrying: %s", exc)
                await anyio.sleep(0.25)
            except BaseException:
                await stream.close()
                raise

    # -- reader

    async def _reader(self, stream: ReplicationStream, send: MemoryObjectSendStream[Item]) -> None:
        with anyio.CancelScope() as scope:
            self._reader_scope = scope
            if self._stopping:
                scope.cancel()
            async with send:
                assembler = self.assembler
                marked = 0
                while True:
                    frames = stream.read_available(512)
                    if not frames:
                        await stream.wait_readable()
                        continue
                    for raw in frames:
                        frame = parse_frame(raw)
                        if isinstance(frame, XLogData):
                            if frame.wal_end > self.server_wal:
                                self.server_wal = frame.wal_end
                            for item in assembler.feed(frame.data):
                                await send.send(item)
                            if assembler.problems:
                                for p in assembler.problems:
                                    log.warning("mapping problem: %s", p)
                                assembler.problems.clear()
                        elif isinstance(frame, Keepalive):
                            if frame.wal_end > self.server_wal:
                                self.server_wal = frame.wal_end
                            if frame.reply:
                                self._wake.set()
                            # Between transactions everything before wal_end was sent to us.
                            if not assembler.in_transaction and frame.wal_end > marked:
                                marked = frame.wal_end
                                await send.send(Durable(frame.wal_end))
                    await anyio.lowlevel.checkpoint()

    # -- publisher

    async def _publisher(self, receive: MemoryObjectReceiveStream[Item]) -> None:
        """Commit batches in order; cut one as soon as nothing more is waiting (low latency when
        idle, full batches under load)."""
        packer = BatchPacker(self.config.rows_per_batch, self.checkpoint, self.flushed)
        try:
            async with receive:
                while True:
                    try:
                        item = receive.receive_nowait()
                    except anyio.WouldBlock:
                        batch = packer.flush()
                        if batch is not None:
                            await self._commit(batch)
                            continue
                        try:
                            item = await receive.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        batch = packer.flush()
                        if batch is not None:
                            await self._commit(batch)
                        break
                    for batch in packer.add(item):
                        await self._commit(batch)
        finally:
            self._publisher_done.set()

    def _advance(self, lsn: int, *, urgent: bool) -> None:
        if lsn > self.flushed:
            self.flushed = lsn
            self.metrics.flushed_lsn.labels(self.slot).set(lsn)
            if urgent:
                self._wake.set()

    async def _commit(self, batch: Batch) -> None:
        m, slot = self.metrics, self.slot
        if batch.skipped:
            m.skipped.labels(slot).inc(batch.skipped)
        cp = batch.checkpoint
        if cp is None:
            self._advance(batch.flushed, urgent=False)
            return
        rollup = {"Nats-Rollup": "sub"}  # only the latest checkpoint is kept
        msgs = [*batch.msgs, BatchMsg(checkpoint_subject(slot), msgspec.json.encode(cp), rollup)]
        before = self.checkpoint
        backoff = self.config.reconnect_backoff
        while True:
            try:
                await self._wait_connected()
                t0 = time.perf_counter()
                await self.publish(self.nc, msgs)
                m.publish_seconds.labels(slot).observe(time.perf_counter() - t0)
                break
            except MaxPayloadError:
                # The server's limit shrank since this session judged the rows (the client checks
                # before sending: nothing went out). A new session reads the limit and re-judges.
                raise
            except Exception as exc:
                m.publish_retries.labels(slot).inc()
                log.warning("publishing a batch of %d message(s) up to %s:%d failed, retrying: %s: %s",
                            len(msgs), cp.commit_lsn, cp.next_index, type(exc).__name__, exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_backoff_max)
                # The batch is atomic: stored whole (a lost PubAck) or not at all; the checkpoint says which.
                found = await self._reread_checkpoint()
                if checkpoint_key(found) >= checkpoint_key(cp):
                    break
                if checkpoint_key(found) != checkpoint_key(before):
                    raise RuntimeError(f"the checkpoint moved to {found} while this source was publishing; "
                                       "is another source writing for the same slot?") from exc
        self.checkpoint = cp
        m.batches.labels(slot).inc()
        m.batch_messages.labels(slot).observe(len(msgs))
        m.rows.labels(slot).inc(len(batch.msgs))
        for dead in batch.dead_letters:
            self._log_dead_letter(dead)
        for chunk in batch.completed:
            m.transaction_messages.labels(slot).observe(chunk.txn_messages)
        log.debug("published %d message(s) up to %s:%d%s", len(batch.msgs), cp.commit_lsn, cp.next_index,
                  " (complete)" if cp.complete else "")
        self._advance(batch.flushed, urgent=True)

    def _log_dead_letter(self, msg: BatchMsg) -> None:
        """Count and log a published dead letter: skipping a row is never silent."""
        headers = msg.headers or {}
        code = headers.get(DEAD_REASON_HEADER, "row")
        self.metrics.dead_letters.labels(self.slot, code).inc()
        try:
            letter = decode_as(msg.payload, DeadLetter)
        except (msgspec.DecodeError, msgspec.ValidationError):  # our own encoding: not expected
            letter = DeadLetter(stage=_STAGE, reason="?")
        log.warning("skipped a row of %s (key %.64r) at %s: dead letter on %s (%s): %s", letter.table, letter.key,
                    headers.get("Nats-Msg-Id", "?"), msg.subject, code, letter.reason)

    async def _wait_connected(self) -> None:
        """Do not let the client buffer a batch while disconnected: it would be sent late, maybe twice."""
        waited = 0.0
        while not self.nc.is_connected:
            if self.nc.is_closed:
                raise ConnectionError("the NATS connection is closed")
            await anyio.sleep(0.05)
            waited += 0.05
            if waited > 30:
                raise TimeoutError("NATS has been unreachable for 30 s")

    async def _reread_checkpoint(self) -> Checkpoint | None:
        backoff = self.config.reconnect_backoff
        while True:
            try:
                await self._wait_connected()
                return await read_checkpoint(self.js, self.slot)
            except Exception as exc:
                log.warning("reading the checkpoint failed, retrying: %s: %s", type(exc).__name__, exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_backoff_max)

    # -- feedback and watch

    async def _feedback(self, stream: ReplicationStream) -> None:
        while True:
            with anyio.move_on_after(self.config.status_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await stream.send_status(self.flushed, pg_micros(self.clock()))
            await anyio.sleep(0.05)  # at most ~20 updates a second

    async def _watch(self) -> None:
        """Check the lock connection (losing it means losing the lock) and measure the lag."""
        while True:
            with anyio.fail_after(10):
                wal = await current_wal_lsn(self.lock_conn)
            self.metrics.lag_bytes.labels(self.slot).set(max(0, wal - self.flushed))
            await anyio.sleep(2.0)


# ---------------------------------------------------------------------------- a source process


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stages.source.runner",
                                description="Stream the events table into JetStream (the source stage only).")
    p.add_argument("--nats-url", required=True)
    p.add_argument("--postgres-dsn", required=True)
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--slot", default="tocsin")
    p.add_argument("--publication", default="tocsin")
    p.add_argument("--replica", default=None, help="replica name (default: random)")
    p.add_argument("--batch-messages", type=int, default=1000)
    p.add_argument("--status-interval", type=float, default=10.0)
    p.add_argument("--log-level", default="info")
    return p


async def _run(args: argparse.Namespace) -> None:
    from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
    from stages.source.service import SourceService

    replica = args.replica or uuid.uuid4().hex[:8]
    config = SourceConfig(slot=args.slot, publication=args.publication, batch_messages=args.batch_messages,
                          status_interval=args.status_interval)
    nc = await connect(args.nats_url, name=f"tocsin-source-{replica}")
    try:
        js = nc.jetstream()
        await ensure_partitions(js, nc, args.partitions)
        await ensure_stream(js, EVENTS)
        service = SourceService(nc, js, dsn=args.postgres_dsn, config=config, partitions=args.partitions,
                                replica=replica)
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            log.info("source %s ready", replica)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("signal %d: draining", signum)
                    break
            await service.drain()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from pipeline.foundation.logs import setup_logging
    from pipeline.foundation.telemetry import setup_tracing

    setup_logging(args.log_level)
    setup_tracing(service_name="tocsin-source")
    if not math.isfinite(args.status_interval):
        raise SystemExit("--status-interval must be finite")
    anyio.run(_run, args)


if __name__ == "__main__":
    # Run the canonical module, not this __main__ copy: the service imports stages.source.runner,
    # and two copies would register the metrics twice.
    from stages.source.runner import main as _main

    _main()
