"""The source stage's decisions, without I/O: pgoutput messages in, the messages to publish out.

- **Transaction assembly** (:class:`TransactionAssembler`): decodes pgoutput messages (a fast path
  reads all-text Inserts directly, :func:`text_tuple`; anything else goes through
  :mod:`stages.source.pgoutput`) and turns each committed transaction into :class:`Chunk` s: its
  events and dead letters, in order, at most ``rows_per_batch`` at a time, each
  :class:`Message` carrying its id ``<commit LSN>:<index>``. Transactions without events become
  :class:`Durable` marks.
- **Checkpoint and plan**: the :class:`Checkpoint` is the last message of every batch; :func:`plan`
  says what of a chunk it already covers, :func:`checkpoint_key` orders checkpoints and
  :func:`after_failed_publish` judges a publish whose answer was lost.
- **Batch packing** (:class:`BatchPacker`): chunks of consecutive transactions into atomic
  batches, each ending with the checkpoint.

Restart rule: the checkpoint says which transaction (commit LSN) the last batch belonged to,
how many of its messages are published and whether it was complete. Transactions below it are
skipped, a split transaction resumes after its last published message, so nothing depends on the
stream's duplicate window (an atomic batch holding a duplicate message id is refused whole, so
re-sending published parts would not even work).

Pure: no clock (times come from the commits), no network, no logging; what the session should
log is collected in :attr:`TransactionAssembler.problems` and :attr:`TransactionAssembler.notes`.
The session (:mod:`stages.source.session`) does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from contracts.messages import encode
from contracts.partition import partition_of
from pipeline.foundation.runtime.deadletter import MIN_BUDGET, build_dead_letter
from pipeline.foundation.runtime.subjects import EVENTS
from stages.source.limits import event_budget
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

__all__ = [
    "DLQ_SUBJECT",
    "STAGE",
    "AssemblySettings",
    "Batch",
    "BatchPacker",
    "Checkpoint",
    "Chunk",
    "Durable",
    "Item",
    "Message",
    "PublishVerdict",
    "TraceFn",
    "TransactionAssembler",
    "after_failed_publish",
    "checkpoint_key",
    "checkpoint_subject",
    "decode_checkpoint",
    "encode_checkpoint",
    "plan",
    "resume_lsn",
    "text_tuple",
]

STAGE = "source"
DLQ_SUBJECT = EVENTS.dlq(STAGE)


def checkpoint_subject(slot: str) -> str:
    """Where the source keeps its checkpoint for ``slot``, inside the EVENTS stream."""
    return f"{EVENTS.prefix}.source.{slot}"


# ---------------------------------------------------------------------------- messages, checkpoint and chunks


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a transaction, in its place: an event or (``dead`` set) a row's dead letter.

    ``msg_id`` (``<commit LSN>:<index>``) is the message's stream id and its place for the restart
    rule; ``time`` the commit's time, the event time of the row for every later stage (not when a
    source catching up on the slot happens to publish it); ``dead`` the dead letter's reason code
    (org, id, row, size, depth, value: see ``limits.DEAD_REASON_HEADER``).
    """

    subject: str
    payload: bytes
    msg_id: str
    time: float
    dead: str | None = None


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


def encode_checkpoint(cp: Checkpoint) -> bytes:
    return msgspec.json.encode(cp)


def decode_checkpoint(data: bytes) -> Checkpoint:
    """A stored checkpoint (raises ``msgspec.DecodeError``/``ValidationError`` on anything else)."""
    return msgspec.json.decode(data, type=Checkpoint)


def resume_lsn(cp: Checkpoint | None) -> int:
    """Where a session starts streaming (and what it reports flushed) from the last checkpoint."""
    return parse_lsn(cp.lsn) if cp is not None else 0


@dataclass(slots=True)
class Chunk:
    """Consecutive messages of one transaction: what goes into one atomic batch (with the checkpoint)."""

    commit_lsn: int
    first_index: int
    msgs: list[Message]
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


# ---------------------------------------------------------------------------- batch packing


@dataclass(slots=True)
class Batch:
    """One atomic batch: data messages, then ``checkpoint`` (None: nothing to publish, only ``flushed``
    moves). ``flushed`` is the LSN that is durable once the batch is."""

    msgs: list[Message]
    checkpoint: Checkpoint | None
    flushed: int
    completed: list[Chunk] = field(default_factory=list)  # transactions this batch completes
    skipped: int = 0  # messages left out as already published
    dead_letters: list[Message] = field(default_factory=list)  # those of ``msgs`` that are dead letters


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
        self._msgs: list[Message] = []
        self._last: tuple[Chunk, int] | None = None  # chunk of the last message packed, and how far
        self._cp_lsn = flushed
        self._completed: list[Chunk] = []
        self._skipped = 0
        self._dead: list[Message] = []
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
                self._dead += [m for m in part if m.dead is not None]
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


# ---------------------------------------------------------------------------- a publish whose answer was lost


PublishVerdict = Literal["stored", "retry", "conflict"]


def after_failed_publish(found: Checkpoint | None, sent: Checkpoint, before: Checkpoint | None) -> PublishVerdict:
    """What the checkpoint read after a failed publish says of the batch that carried ``sent``.

    The batch is atomic: stored whole (only the PubAck was lost) or not at all. ``stored``: the
    stream's checkpoint is at or past ``sent``; ``retry``: it is still ``before`` (where it was when
    the batch went out); ``conflict``: it moved elsewhere, so another source writes for the slot.
    """
    if checkpoint_key(found) >= checkpoint_key(sent):
        return "stored"
    if checkpoint_key(found) != checkpoint_key(before):
        return "conflict"
    return "retry"


# ---------------------------------------------------------------------------- transactions to chunks


class TraceFn(Protocol):
    """The trace context (headers) of the event ``event_id`` of a transaction committed at ``committed_at``."""

    def __call__(self, event_id: str, committed_at: float) -> dict[str, str]: ...


class AssemblySettings(Protocol):
    """What the assembler reads of the source's settings (``stages.source.config.SourceConfig``)."""

    @property
    def rows_per_batch(self) -> int: ...

    def mapping_for(self, schema: str, table: str) -> TableMapping | None: ...


@dataclass(slots=True)
class _Open:
    commit_lsn: int
    lsn_text: str
    committed_at: float
    xid: int = 0
    first_index: int = 0
    count: int = 0
    pending: list[Message] = field(default_factory=list)


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
    ``problems`` collects mapping problems found in Relation messages (for the caller to log as
    warnings), ``notes`` what was ignored (to log as information).
    """

    def __init__(self, config: AssemblySettings, partitions: int, trace: TraceFn, *,
                 max_payload: int | None = None) -> None:
        self.config = config
        self.partitions = partitions
        self.trace = trace
        self.max_payload = max_payload  # None: no size limit (pure tests)
        self.decoder = PgOutputDecoder()
        self.problems: list[str] = []
        self.notes: list[str] = []
        self._limit = config.rows_per_batch
        self._mappings: dict[int, TableMapping | None] = {}
        self._columns: dict[int, list[tuple[str, int, bool]]] = {}  # (name, type oid, is text)
        self._subjects: dict[str, str] = {}
        self._txn: _Open | None = None
        self._marked = 0  # the last keepalive position made a Durable mark

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def keepalive(self, wal_end: int) -> list[Item]:
        """A keepalive from the server: between transactions everything before ``wal_end`` was sent,
        so it is durable once what came before is (a mark only when it moves)."""
        if self._txn is not None or wal_end <= self._marked:
            return []
        self._marked = wal_end
        return [Durable(wal_end)]

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
            self.notes.append(f"ignoring a TRUNCATE of {len(msg.relation_ids)} relation(s): truncates are not events")
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

    def _next_id(self, txn: _Open) -> str:
        index = txn.count
        txn.count += 1
        return f"{txn.lsn_text}:{index}"

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

    def _row(self, txn: _Open, mapping: TableMapping, row: dict[str, Any], op: Op, msg_id: str) -> None:
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
        txn.pending.append(Message(subject, payload, msg_id, txn.committed_at))

    def _dead(self, txn: _Open, mapping: TableMapping, row: dict[str, Any], reason: str,
              msg_id: str, code: str) -> Message:
        """The dead letter of a row, in the row's place; ``code`` classes it (see limits.DEAD_REASON_HEADER)."""
        key = row.get(mapping.id_column)
        try:
            payload = msgspec.json.encode(row, enc_hook=_json_safe)
        except (TypeError, ValueError, RecursionError):
            payload = repr(row).encode()
        budget = MIN_BUDGET if self.max_payload is None else max(MIN_BUDGET, event_budget(self.max_payload))
        letter, _ = build_dead_letter(stage=STAGE, reason=reason, budget=budget, payload=payload,
                                      at=txn.committed_at, key="" if key is None else str(key),
                                      headers={"lsn": txn.lsn_text, "xid": str(txn.xid)},
                                      cause=_CAUSES.get(code, "rejected"))
        letter = msgspec.structs.replace(letter, table=mapping.qualified_name)
        return Message(DLQ_SUBJECT, encode(letter), msg_id, txn.committed_at, code)

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


