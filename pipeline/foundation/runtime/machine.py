"""The decisions of one partition of a stateful stage, without I/O (sans-I/O, as h11 is for HTTP).

:class:`PartitionMachine` holds what a partition knows (its state, its progress, its timers,
what it must dead-letter or commit one at a time after a refused commit) and decides, from
events, what to do next; :class:`~pipeline.foundation.runtime.partition.PartitionWorker` does
the fetching, committing and acking, and tells the machine how it went. Time is an argument
(the wall clock of the worker, an input's event time), never read here.

Events and the action each returns:

- :meth:`~PartitionMachine.claimed`, :meth:`~PartitionMachine.restored`: the partition was
  acquired (its claim committed, its state read back); :meth:`~PartitionMachine.start_of` is
  where an input's consumer restarts, :meth:`~PartitionMachine.bound` that it did;
- :meth:`~PartitionMachine.fetched` (a fetched batch, or none when a timer may be due): the
  first action of the batch;
- :meth:`~PartitionMachine.committed`, :meth:`~PartitionMachine.recounted`,
  :meth:`~PartitionMachine.acked`: the previous action was done; the next action;
- :meth:`~PartitionMachine.refused`: the commit was refused for good; the :class:`Reset`.

Actions: :class:`Commit` (one atomic batch, in chunks; the worker adds its fence),
:class:`Recount` (ask the server how many inputs wait), :class:`Ack`, :class:`Reset` (acquire
the partition again: a delivery gap, a refused commit) and :class:`Done` (the batch is over).

The hop-B rules (BRIEF §4), per fetched batch: inputs at or below the partition's progress are
skipped; a delivery sequence that is not the next one is a gap (another fetcher, a
redelivery): reset. An input's time is its event time (:data:`TIME_HEADER`), else its stream
time; a due timer fires before an input exactly when its deadline is at or before the input's
time, and by the wall clock only when no input is waiting. So what a stage decides depends on
event times only, not on how inputs were batched, nor on a crash redone.

A commit holds fewer than :data:`MAX_BATCH` messages, and its outputs stay under half of
``max_commit_bytes`` (the state values, encoded at the commit, take the rest). No input
blocks a partition: one that cannot be decoded, is rejected, or whose effect cannot be
published (an output over ``max_payload``, say) is committed as a dead letter, which always
fits. A commit refused for good resets the partition and redoes its inputs and timers one
per commit; one refused alone is dead-lettered.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from contracts import decode as decode_message
from pipeline.foundation.runtime.deadletter import MIN_BUDGET, bounded, build_dead_letter
from pipeline.foundation.runtime.step import Reject, StageCore, Step
from pipeline.foundation.runtime.subjects import DIGEST, StreamNames, state_headers, token
from pipeline.foundation.runtime.wire import (
    BATCH_HEADER_ROOM,
    DELETED,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_SUBJECT,
    TIME_HEADER,
    BatchMsg,
    header_lines,
    message_size,
    plan_chunks,
    unpublishable,
)
from pipeline.foundation.telemetry import enabled as tracing_enabled
from pipeline.foundation.telemetry import payload_attributes, step_span

__all__ = ["MAX_MSG_ID", "TOMBSTONE_TTL", "Ack", "Action", "Commit", "CommitDraft", "Delivered",
           "Delivery", "Done", "Input", "PartitionMachine", "Progress", "Recount", "Reset", "StageSpec", "Tally",
           "ack_metadata", "bounded_id", "claim", "event_time"]

log = logging.getLogger("tocsin.runtime")

TOMBSTONE_TTL = "300"  # seconds; the rollup already removed older values, so expiry = deletion
MAX_MSG_ID = 512  # characters of a Nats-Msg-Id; a longer one is shortened with a digest (bounded_id)


class Progress(msgspec.Struct, omit_defaults=True):
    """The partition's progress record: last input sequence per input, and who owns it."""

    inputs: dict[str, int] = {}
    owner: str = ""
    epoch: int = 0


def claim(current: Progress, replica: str) -> Progress:
    """The progress record that claims the partition for ``replica``: committed, it moves the
    fence, so a stale owner can no longer commit."""
    return Progress(inputs=dict(current.inputs), owner=replica, epoch=current.epoch + 1)


@dataclass(frozen=True)
class Input:
    """An input of a stage: the partitioned ``out`` subjects of an upstream stream."""

    name: str
    names: StreamNames
    decode: Callable[[bytes], Any] = decode_message


@dataclass
class StageSpec:
    """What the runtime needs to know to run one stateful stage."""

    name: str
    core: StageCore[Any, Any]  # (a configuration reload replaces it: read it at each use)
    inputs: list[Input]
    output: StreamNames
    partitions: int
    fetch_batch: int = 256
    max_ack_pending: int = 2048
    ack_wait: float = 60.0
    output_ttl: int | None = 7 * 24 * 3600  # seconds outputs are kept (history); None = forever
    dlq_ttl: int | None = 30 * 24 * 3600
    # bytes of one atomic commit; a commit of several inputs that would be larger is split
    max_commit_bytes: int = MAX_BATCH_BYTES
    # Where state keys live (``state``, ``state_filter``, ``key_of_state_subject``), when not in
    # ``output`` (a chain keeps each stage's keys on that stage's subjects: pipeline.foundation.runtime.chain)
    state_layout: Any = None
    # the subjects of the output stream, when more than ``output.all`` (a chain's: every member's)
    output_subjects: tuple[str, ...] = ()


class Delivery(Protocol):
    """A delivered input as the machine reads it (a nats ``Msg`` is one): its JetStream ack
    subject (``reply``) holds its stream and delivery sequences, time and pending count."""

    @property
    def subject(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


@dataclass
class Delivered:
    """A :class:`Delivery` made by hand (tests, tools)."""

    subject: str
    reply: str
    data: bytes = b""
    headers: dict[str, str] | None = None

    @classmethod
    def at(cls, seq: int, dseq: int, *, time: float, pending: int = 0, data: bytes = b"",
           subject: str = "in", headers: dict[str, str] | None = None) -> Delivered:
        """Stream sequence ``seq``, delivery ``dseq``, stored at ``time`` (seconds)."""
        return cls(subject, f"$JS.ACK.S.C.1.{seq}.{dseq}.{round(time * 1e9)}.{pending}", data, headers)


def event_time(msg: Any, stream_time: float) -> float:
    """The event time of an input (:data:`TIME_HEADER`), else its stream time; never later than
    its stream time (an output is stored after the step that made it)."""
    raw = msg.headers.get(TIME_HEADER) if msg.headers else None
    if raw:
        try:
            return min(float(raw), stream_time)
        except ValueError:
            pass
    return stream_time


def ack_metadata(msg: Any) -> tuple[int, int, int, int, int]:
    """(stream seq, consumer seq, delivered count, timestamp ns, pending) from the ack subject, cheaply."""
    tokens = (msg.reply or "").split(".")
    o = 2 if len(tokens) == 9 else 4
    return (int(tokens[o + 3]), int(tokens[o + 4]), int(tokens[o + 2]), int(tokens[o + 5]),
            int(tokens[o + 6]))


def bounded_id(msg_id: str) -> str:
    """A ``Nats-Msg-Id`` of bounded length: a long one (made of user data, say) is shortened
    to a prefix and a digest of it, deterministically, so the server's duplicate window and
    the header stay small."""
    if len(msg_id) <= MAX_MSG_ID:
        return msg_id
    return f"{msg_id[:64]}~{hashlib.blake2b(msg_id.encode('utf-8', 'surrogatepass'), digest_size=16).hexdigest()}"


# An input (input name, stream sequence, "") or a timer ("", deadline, state key) of a commit.
Unit = tuple[str, float, str]

_DEL = object()  # a deleted key in a draft's changes


@dataclass
class CommitDraft:
    """A commit being assembled: its outputs and dead letters, changed keys, inputs and timers."""

    msgs: list[BatchMsg] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)  # key -> value, or deleted
    inputs: int = 0
    units: list[Unit] = field(default_factory=list)  # the inputs and timers it carries
    bytes: int = 0  # of msgs
    traces: list[str] = field(default_factory=list)  # traceparents of its steps (for the commit's span)

    def size(self) -> int:
        return 1 + len(self.msgs) + len(self.changes)

    def empty(self) -> bool:
        return not (self.inputs or self.msgs or self.changes)


@dataclass
class _Effect:
    """What one input or timer adds to a commit."""

    changes: Mapping[str, Any]
    msgs: list[BatchMsg]
    bytes: int
    problem: str = ""  # why it cannot be committed, or ""
    outputs: int = 0


# ---------------------------------------------------------------------- actions

@dataclass
class Commit:
    """Commit ``body`` atomically in ``chunks`` ([start, end) of it), each chunk after a copy of
    ``progress`` carrying the worker's fence (``Nats-Expected-Last-Subject-Sequence``).

    Only a timer whose effect alone is larger than one atomic batch has several chunks; a
    crash between them redoes the timer, whose deterministic ids make the repeated outputs
    duplicates the stream drops."""

    body: list[BatchMsg]
    progress: BatchMsg
    chunks: list[tuple[int, int]]
    units: list[Unit]
    traces: list[str]


@dataclass
class Recount:
    """Nothing arrived though inputs were said to be waiting: ask the server how many wait on
    ``inputs`` (what was waiting may be gone, by its TTL say), so the clock is not stopped for good."""

    inputs: list[str]


@dataclass
class Ack:
    """Ack ``msgs`` (AckAll: the last of each input acks every one before it); ``pending``:
    per input, what the server said was not yet delivered (the lag)."""

    msgs: list[Any]
    pending: dict[str, int]


@dataclass
class Reset:
    """Acquire the partition again: its state is read back as committed."""

    reason: str


@dataclass
class Done:
    """The batch is over."""


Action = Commit | Recount | Ack | Reset | Done


@dataclass
class Tally:
    """What the machine did, for the worker's metrics (it takes and clears it)."""

    inputs: int = 0
    skipped: int = 0
    outputs: int = 0
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, cause) -> count


_encoder = msgspec.json.Encoder()

_Run = Generator[Action, Any, None]


class PartitionMachine:
    """The decisions of partition ``p`` of ``spec``'s stage (see the module)."""

    def __init__(self, spec: StageSpec, p: int, *, max_payload: int = 1024 * 1024) -> None:
        self.spec, self.p = spec, p
        self.max_payload = max_payload  # the server's, as the worker last saw it
        self.state: dict[str, Any] = {}
        self.progress = Progress()
        self.deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._trace_of: dict[str, str] = {}  # key -> the traceparent of the step that set its timer
        self._expected_dseq: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # per input: messages not yet delivered, as last reported
        # After a commit refused for good (see refused): up to where inputs (by input name) and
        # timers (name "") are committed one at a time, and those to dead-letter (cause, reason).
        # Both outlive a reset: they are what the reset is for.
        self.isolate: dict[str, float] = {}
        self.poison: dict[Unit, tuple[str, str]] = {}
        self.tally = Tally()
        self._layout = spec.state_layout or spec.output
        self._decoders = {inp.name: inp.decode for inp in spec.inputs}
        self._out_headers: dict[str, str] = {"Nats-TTL": str(spec.output_ttl)} if spec.output_ttl else {}
        self._ttl_line = f"Nats-TTL: {spec.output_ttl}\r\n" if spec.output_ttl else ""  # (its header line)
        self._suffixes: dict[str, str] = {}  # Out.subject -> its subject token (few distinct ones)
        # How a state key's new value replaces the old: by the stream's one-message-per-subject
        # limit (no header), or, in a stream of the older layout, by a rollup (see subjects).
        self._set_replace(True)
        self._run: _Run | None = None
        self._awaiting: Action | None = None
        self._timed_by: Any = spec.core  # the core the timers were derived with

    # ------------------------------------------------------------------ acquiring
    def claimed(self, progress: Progress, *, rollup: bool) -> None:
        """Our claim is committed: ``progress`` is the partition's; ``rollup``: the output stream
        replaces a state value by a rollup (an older layout), not by its per-subject limit."""
        self._abandon()
        self.progress = progress
        self._set_replace(rollup)

    def _set_replace(self, rollup: bool) -> None:
        """The headers of a state value and of a tombstone (shared by every message: never
        changed), with their header lines, made once."""
        self._replace: dict[str, str] = {"Nats-Rollup": "sub"} if rollup else {}
        self._replace_lines = header_lines(self._replace)
        self._tombstone = {**self._replace, DELETED: "1", "Nats-TTL": TOMBSTONE_TTL}
        self._tombstone_lines = header_lines(self._tombstone)

    def restored(self, state: dict[str, Any]) -> None:
        """The partition's state, as read back from its state subjects (its timers with it)."""
        self._abandon()
        self.state = state
        self._trace_of = {}
        self._retime()

    def _retime(self) -> None:
        self.deadlines = {}
        self._heap = []
        self._timed_by = self.spec.core
        for key, value in self.state.items():
            self.track(key, value)

    def sync_core(self) -> None:
        """A new core (a configuration reload replaced ``spec.core``) may time the same values
        differently (a group of an older configuration is re-checked, say): derive the timers
        again with it. The state and what it holds stay."""
        if self.spec.core is not self._timed_by:
            self._retime()

    def start_of(self, name: str) -> int:
        """The stream sequence input ``name``'s consumer starts from: just after the progress."""
        return self.progress.inputs.get(name, 0) + 1

    def bound(self, name: str, pending: int) -> None:
        """Input ``name``'s consumer is new (its first delivery is 1), with ``pending`` waiting."""
        self.pending[name] = pending
        self._expected_dseq[name] = 1

    @property
    def rollup(self) -> bool:
        """A state value replaces the old one by a rollup (a stream of the older layout)."""
        return bool(self._replace)

    # ------------------------------------------------------------------ time
    def behind(self) -> bool:
        """Inputs are waiting: time is theirs, and no timer fires by the clock."""
        return any(self.pending.values())

    def wait_time(self, wall: float) -> float:
        """How long to wait for inputs before a timer may be due (at most a second)."""
        self.sync_core()
        if self.behind():
            return 1.0  # timers fire as the inputs' times pass them
        while self._heap and self.deadlines.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale entry: the key's deadline changed
        if not self._heap:
            return 1.0
        return max(0.0, min(1.0, self._heap[0][0] - wall))

    def track(self, key: str, value: Any) -> None:
        """Key ``key`` now holds ``value`` (None: deleted): its timer follows."""
        deadline = self.spec.core.deadline(key, value) if value is not None else None
        if deadline is None:
            self.deadlines.pop(key, None)
            return
        if self.deadlines.get(key) != deadline:
            self.deadlines[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    def next_due(self, upto: float) -> tuple[float, str] | None:
        """The earliest timer due at or before ``upto`` (by deadline, then key), taken off the
        timers (firing it sets what follows), or None."""
        while self._heap and self._heap[0][0] <= upto:
            deadline, key = heapq.heappop(self._heap)
            if self.deadlines.get(key) != deadline:
                continue  # stale entry: the key's deadline changed
            del self.deadlines[key]
            return deadline, key
        return None

    def apply(self, changes: Mapping[str, Any], draft: CommitDraft | None = None) -> None:
        """Apply a step's changes to the state and the timers (and to ``draft``'s changed keys)."""
        state, deadlines, heap = self.state, self.deadlines, self._heap
        deadline_of = self.spec.core.deadline
        changed = draft.changes if draft is not None else None
        for key, value in changes.items():  # (track, inlined: a step changes a few keys, each costs)
            if value is None:
                state.pop(key, None)
                if changed is not None:
                    changed[key] = _DEL
                deadlines.pop(key, None)
                continue
            state[key] = value
            if changed is not None:
                changed[key] = value
            deadline = deadline_of(key, value)
            if deadline is None:
                deadlines.pop(key, None)
            elif deadlines.get(key) != deadline:
                deadlines[key] = deadline
                heapq.heappush(heap, (deadline, key))

    # ------------------------------------------------------------------ a batch
    def fetched(self, batches: Sequence[tuple[str, Sequence[Delivery]]], wall: float,
                max_payload: int | None = None) -> Action:
        """A fetched batch (per input, in delivery order), or none (a timer may be due) at wall
        clock ``wall``: the first action."""
        if self._run is not None:
            raise RuntimeError("a batch is in progress: finish it (or reset) first")
        if max_payload:
            self.max_payload = max_payload
        self.sync_core()
        self._run = self._batch(batches, wall)
        return self._resume(None)

    def committed(self) -> Action:
        """The :class:`Commit` is stored: the next action."""
        return self._resume(None, Commit)

    def recounted(self, pending: Mapping[str, int]) -> Action:
        """The answer to :class:`Recount`: the next action."""
        return self._resume(dict(pending), Recount)

    def acked(self) -> Action:
        """The :class:`Ack` is sent: the next action."""
        return self._resume(None, Ack)

    def refused(self, description: str, *, too_large: bool = False) -> Reset:
        """The :class:`Commit` was refused for good (sending it again would be refused again).

        Reset (the state is read again, as it was before the commit), then redo its inputs and
        timers one per commit; one refused alone is dead-lettered. The core is deterministic,
        so the redo decides what the refused commit did, but for the dead-lettered one."""
        commit = self._awaiting
        if not isinstance(commit, Commit):
            raise RuntimeError(f"refused while awaiting {commit!r}, not a commit")
        self._abandon()
        return self._refuse(commit.units, description, too_large)

    def _refuse(self, units: Sequence[Unit], description: str, too_large: bool) -> Reset:
        if len(units) == 1:
            unit = units[0]
            self.poison[unit] = ("too_large" if too_large else "refused", f"its commit was refused: {description}")
            what = f"input {unit[0]} seq {int(unit[1])}" if unit[0] else f"timer of {unit[2][:100]!r}"
            return Reset(f"the commit of {what} was refused ({bounded(description, 300)}); "
                         "it will be dead-lettered")
        for name, pos, _ in units:
            self.isolate[name] = max(pos, self.isolate.get(name, pos))
        return Reset(f"a commit of {len(units)} inputs and timers was refused "
                     f"({bounded(description, 300)}); committing them one at a time")

    def abandoned(self) -> None:
        """The batch failed some other way (the worker resets): drop what is left of it."""
        self._abandon()

    def take_tally(self) -> Tally:
        tally, self.tally = self.tally, Tally()
        return tally

    def _abandon(self) -> None:
        if self._run is not None:
            self._run.close()
        self._run = self._awaiting = None

    def _resume(self, value: Any, expected: type | None = None) -> Action:
        if self._run is None or (expected is not None and not isinstance(self._awaiting, expected)):
            raise RuntimeError(f"no {expected.__name__ if expected else 'batch'} awaited (awaiting "
                               f"{self._awaiting!r})")
        try:
            action = self._run.send(value)
        except StopIteration:
            self._run = self._awaiting = None
            return Done()
        except BaseException:
            self._run = self._awaiting = None
            raise
        if isinstance(action, Reset):
            self._abandon()
        else:
            self._awaiting = action
        return action

    def _batch(self, batches: Sequence[tuple[str, Sequence[Delivery]]], wall: float) -> _Run:
        if not batches and self.behind():
            counts = yield Recount([name for name, n in self.pending.items() if n])
            self.pending.update(counts)
        draft = CommitDraft()
        acks: dict[str, Delivery] = {}
        for name, msgs in batches:
            for msg in msgs:
                seq, dseq, _, ts, pending = ack_metadata(msg)
                if dseq != self._expected_dseq[name]:
                    yield Reset(f"input {name}: delivery {dseq} where {self._expected_dseq[name]} was "
                                "expected (another fetcher or a redelivery)")
                    return
                self._expected_dseq[name] = dseq + 1
                acks[name] = msg
                self.pending[name] = pending
                if seq <= self.progress.inputs.get(name, 0):
                    self.tally.skipped += 1
                    continue
                now = event_time(msg, ts / 1e9)
                if self._heap and self._heap[0][0] <= now:  # (most inputs find no timer due)
                    draft = yield from self._fire_due(draft, min(now, wall))
                draft = yield from self._step_one(draft, name, msg, seq, now)
                if self.isolate:
                    draft = yield from self._commit_alone(draft)
        if not self.behind():
            draft = yield from self._fire_due(draft, wall)
        if not draft.empty():
            yield from self._commit(draft)
        if acks:
            yield Ack(list(acks.values()), {name: self.pending[name] for name in acks})
        if self.isolate:
            self._end_isolation()

    def _fire_due(self, draft: CommitDraft, upto: float) -> Generator[Action, Any, CommitDraft]:
        """Fire every timer due at or before ``upto``, in deadline order (timers a firing sets
        that are due too fire in the same pass)."""
        spec, p = self.spec, self.p
        while (due := self.next_due(upto)) is not None:
            deadline, key = due
            base = f"{spec.name}:{p}:t:{key}:{deadline!r}"
            unit = ("", deadline, key)
            cause, reason = self.poison.pop(unit, ("", ""))
            effect: _Effect | None = None
            tc: dict[str, str] = {}
            if not reason:
                try:
                    # the timer continues the trace of the input that set it (a group's flush, its alert's)
                    parent = self._trace_of.pop(key, None) if self._trace_of else None
                    if tracing_enabled():
                        with step_span(f"{spec.name} timer", {"traceparent": parent} if parent else None,
                                       {"tocsin.partition": p, "tocsin.stage": spec.name}) as tc:
                            result = spec.core.fire(self.state, key, deadline)
                    else:  # (what step_span does then, without its cost)
                        tc = {"traceparent": parent} if parent else {}
                        result = spec.core.fire(self.state, key, deadline)
                    if tc:
                        for out in result.outputs:
                            out.headers = {**tc, **(out.headers or {})}
                    effect = self._prepare(result, base, deadline, timer=True)
                    if effect.problem:
                        cause, reason = "too_large", effect.problem
                except RecursionError:
                    cause, reason = "step_failed", "timer failed: nested too deep (RecursionError)"
                except Exception as exc:  # a bug in a core must not stop the partition
                    log.exception("%s p%d: timer of %r failed", spec.name, p, key[:200])
                    cause, reason = "step_failed", f"timer failed: {exc!r}"
            if reason or effect is None:
                # The timer is dropped (its state stays as it was) and kept as a dead letter.
                effect = self._dead_letter("timer", cause, reason, base, at=deadline, key=key)
            draft = yield from self._add(draft, effect, unit)
            self._remember_trace(draft, effect, tc)
            if self.isolate:
                draft = yield from self._commit_alone(draft)
        return draft

    def _step_one(self, draft: CommitDraft, name: str, msg: Delivery, seq: int,
                  now: float) -> Generator[Action, Any, CommitDraft]:
        spec, p = self.spec, self.p
        base = f"{spec.name}:{p}:{name}:{seq}"
        unit = (name, float(seq), "")
        poisoned = self.poison.pop(unit, None)
        cause, reason = poisoned or ("", "")
        effect: _Effect | None = None
        tc: dict[str, str] = {}
        if not reason:
            try:
                inp = self._decoders[name](msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                cause, reason = "undecodable", f"cannot decode: {exc}"
            except RecursionError:
                cause, reason = "undecodable", "cannot decode: nested deeper than the decoder allows"
            except Exception as exc:
                cause, reason = "undecodable", f"cannot decode: {exc!r}"
            else:
                try:
                    headers = msg.headers
                    if tracing_enabled():
                        attrs = {"tocsin.partition": p, "tocsin.input_seq": seq, "tocsin.stage": spec.name,
                                 "messaging.destination.name": msg.subject,
                                 "messaging.consumer.group.name": spec.name, **payload_attributes(inp)}
                        if not headers or "traceparent" not in headers:
                            headers = getattr(inp, "trace", None) or headers  # a source's event: in its payload
                        with step_span(f"{spec.name} step", headers, attrs) as tc:
                            result = spec.core.step(self.state, inp, now)
                    else:  # (what step_span does then, without its cost)
                        parent = headers.get("traceparent") if headers else None
                        tc = {"traceparent": parent} if parent else {}
                        result = spec.core.step(self.state, inp, now)
                    if tc:
                        for out in result.outputs:
                            out.headers = {**tc, **(out.headers or {})}
                    effect = self._prepare(result, base, now)
                    if effect.problem:
                        cause, reason = "too_large", effect.problem
                except Reject as exc:
                    cause, reason = "rejected", f"rejected: {exc}"
                except RecursionError:  # (no traceback: a thousand frames of it say nothing more)
                    cause, reason = "step_failed", "step failed: nested too deep (RecursionError)"
                except Exception as exc:  # a bug in a core must not stop the partition
                    log.exception("%s p%d: step failed on %s seq %d", spec.name, p, name, seq)
                    cause, reason = "step_failed", f"step failed: {exc!r}"
        if reason or effect is None:
            effect = self._dead_letter("input", cause, reason, base, msg=msg, seq=seq, at=now,
                                       excerpt_only=poisoned is not None)
        draft = yield from self._add(draft, effect, unit)
        self._remember_trace(draft, effect, tc)
        self.progress.inputs[name] = seq
        draft.inputs += 1
        self.tally.inputs += 1
        return draft

    def _remember_trace(self, draft: CommitDraft, effect: _Effect, tc: Mapping[str, str]) -> None:
        """The step's trace, for its commit's span and for the timers it set (kept in memory only:
        after a restart a timer starts a trace of its own)."""
        tp = tc.get("traceparent") if tc else None
        if not tp or not tracing_enabled():
            return
        if len(draft.traces) < 32:
            draft.traces.append(tp)
        for key in effect.changes:
            if key in self.deadlines:
                self._trace_of[key] = tp
            else:
                self._trace_of.pop(key, None)

    def _prepare(self, result: Step[Any], base: str, now: float, *, timer: bool = False) -> _Effect:
        """The messages of a step's outputs, and why they cannot be committed (or "").

        Only a timer's effect may be larger than one atomic batch (it is committed in parts, see
        :class:`Commit`). State values are encoded at the commit, once per key (a key changed by
        every input of a batch is written once); one over a limit is found there."""
        spec = self.spec
        msgs: list[BatchMsg] = []
        size = 0
        problem = ""
        if not timer and len(result.outputs) + len(result.changes) + 1 >= MAX_BATCH:
            problem = (f"one input produced {len(result.outputs)} outputs and {len(result.changes)} state "
                       f"changes, more than an atomic batch holds ({MAX_BATCH})")
        max_payload = self.max_payload
        # Our own headers (a bounded id, a time, a TTL) take less than this: a smaller message
        # fits without counting them (counting costs more than the rest of this loop).
        surely_fits = max_payload - BATCH_HEADER_ROOM - 4 * MAX_MSG_ID - 1024
        at = repr(now)
        suffixes = self._suffixes
        for i, out in enumerate(result.outputs):
            part = self.p if out.partition is None else out.partition
            hdrs = dict(self._out_headers)
            hdrs["Nats-Msg-Id"] = msg_id = bounded_id(out.msg_id or f"{base}:{i}")
            hdrs[TIME_HEADER] = at
            if out.headers:
                hdrs.update(out.headers)
                lines = None  # (made by the publisher)
            elif msg_id.isascii() and "\r" not in msg_id and "\n" not in msg_id:
                # the header lines of hdrs, made here at a fraction of the cost (header_lines)
                lines = f"{self._ttl_line}Nats-Msg-Id: {msg_id}\r\n{TIME_HEADER}: {at}\r\n".encode()
            else:
                lines = None
            suffix = out.subject
            if not suffix:
                suffix = "_"
            elif "." not in suffix:  # a token (a subject of several is taken as it is)
                suffix = suffixes.get(suffix) or self._suffix(suffix)
            m = BatchMsg((out.names or spec.output).out(part, suffix, msg_id), _encoder.encode(out.payload), hdrs,
                         lines)
            msgs.append(m)
            size += len(m.payload)
            if not problem and (len(m.payload) > surely_fits or out.headers or len(m.subject) > MAX_SUBJECT):
                why = unpublishable(m, max_payload)
                if why:
                    problem = f"output {i} cannot be published: {why}"
        if not problem and not timer and size > spec.max_commit_bytes // 2:
            problem = (f"its outputs take {size} bytes, over half the {spec.max_commit_bytes}-byte limit of "
                       "one atomic commit")
        return _Effect(result.changes, msgs, size, problem, len(result.outputs))

    def _suffix(self, subject: str) -> str:
        suffix = token(subject)
        if len(self._suffixes) < 1024:
            self._suffixes[subject] = suffix
        return suffix

    def _dead_letter(self, kind: str, cause: str, reason: str, base: str, *, msg: Delivery | None = None,
                     seq: int = 0, at: float, key: str = "", excerpt_only: bool = False) -> _Effect:
        """The effect of an input or timer dead-lettered: one dead letter, which always fits."""
        spec, p = self.spec, self.p
        hdrs = {"Nats-Msg-Id": bounded_id(f"dlq:{base}")}
        if spec.dlq_ttl:
            hdrs["Nats-TTL"] = str(spec.dlq_ttl)
        subject = spec.output.dlq(p, hdrs["Nats-Msg-Id"])
        room = self.max_payload - message_size(hdrs, b"") - len(subject) - BATCH_HEADER_ROOM
        budget = MIN_BUDGET if excerpt_only else max(MIN_BUDGET, room)
        payload = msg.data if msg is not None else b""
        _, data = build_dead_letter(
            stage=spec.name, reason=reason, budget=budget, payload=payload,
            subject=msg.subject if msg is not None else "", stream_seq=seq,
            headers=dict(msg.headers or {}) if msg is not None else None, at=at, key=key, cause=cause)
        self.tally.dead_letters[kind, cause] = self.tally.dead_letters.get((kind, cause), 0) + 1
        what = f"{msg.subject} seq {seq} ({len(payload)} bytes)" if msg is not None else f"timer of {key[:100]!r}"
        log.warning("%s p%d: dead letter (%s) for %s: %s", spec.name, p, cause, what, bounded(reason, 300))
        return _Effect({}, [BatchMsg(subject, data, hdrs)], len(data))

    def add(self, draft: CommitDraft, result: Step[Any], base: str, now: float) -> CommitDraft:
        """Add a step's effect to ``draft`` (for tests: unchecked, no unit, never committed first)."""
        self._merge(draft, self._prepare(result, base, now), None)
        return draft

    def _add(self, draft: CommitDraft, effect: _Effect, unit: Unit | None) -> Generator[Action, Any, CommitDraft]:
        """Apply an effect to the state and add it to ``draft`` (committed first when the two
        would not fit in one atomic batch: its outputs are kept under half the byte limit, for
        the state values, whose size is known only at the commit)."""
        if draft.size() + len(effect.msgs) + len(effect.changes) >= MAX_BATCH or (
                draft.units and draft.bytes + effect.bytes > self.spec.max_commit_bytes // 2):
            yield from self._commit(draft)
            draft = CommitDraft()
        self._merge(draft, effect, unit)
        return draft

    def _merge(self, draft: CommitDraft, effect: _Effect, unit: Unit | None) -> None:
        self.apply(effect.changes, draft)
        draft.msgs.extend(effect.msgs)
        draft.bytes += effect.bytes
        if unit is not None:
            draft.units.append(unit)
        self.tally.outputs += effect.outputs

    def _commit_alone(self, draft: CommitDraft) -> Generator[Action, Any, CommitDraft]:
        """While isolating (after a refused commit), every input or timer is committed alone."""
        if draft.units:
            yield from self._commit(draft)
            return CommitDraft()
        return draft

    def _end_isolation(self) -> None:
        for name, mark in list(self.isolate.items()):
            if name:  # (or what was marked is gone from the stream: nothing is waiting)
                done = self.progress.inputs.get(name, 0) >= mark or not self.pending.get(name)
            else:
                done = not any(d <= mark and self.deadlines.get(k) == d for d, k in self._heap)
            if done:
                del self.isolate[name]

    def _commit(self, draft: CommitDraft) -> Generator[Action, Any, None]:
        """Yield the :class:`Commit` of ``draft``; a commit that can never succeed (a state value
        that cannot be encoded, an input's commit over the byte limit) is refused here."""
        yield self.seal(draft)  # (after a Reset the batch is not resumed)

    def seal(self, draft: CommitDraft) -> Commit | Reset:
        """The commit of ``draft``: progress, changed state keys, outputs and dead letters, in
        chunks; or the :class:`Reset` of a commit refused before it was sent."""
        spec, p, layout = self.spec, self.p, self._layout
        body: list[BatchMsg] = []
        state_subject = layout.state
        replace, replace_lines = self._replace, self._replace_lines
        size = 0
        for key, value in draft.changes.items():
            subject = state_subject(p, key)
            if value is _DEL:
                data, hdrs, lines = b"", self._tombstone, self._tombstone_lines
            else:
                try:
                    data = _encoder.encode(value)
                except Exception as exc:  # (nested too deep, say): no commit of it can ever succeed
                    if not draft.units:
                        raise
                    return self._refuse(draft.units, f"the state value of {key[:100]!r} cannot be encoded: "
                                        f"{exc!r}", False)
                hdrs, lines = replace, replace_lines
            if DIGEST in subject:  # the whole key in a header (state_headers), as a reader sees it
                stored_key = getattr(layout, "stored_key", None)  # (a chain's: unprefixed)
                hdrs, lines = state_headers(subject, stored_key(key) if stored_key else key, hdrs), None
            body.append(BatchMsg(subject, data, hdrs, lines))
            size += len(data)
        body.extend(draft.msgs)
        size += draft.bytes if draft.bytes else sum(len(m.payload) for m in draft.msgs)  # (bytes: of msgs)
        progress = _encoder.encode(self.progress)
        if len(body) <= MAX_BATCH - 1 and size <= spec.max_commit_bytes - len(progress):
            chunks = [(0, len(body))]  # (what plan_chunks says, without its pass over the sizes)
        else:
            chunks = plan_chunks([len(m.payload) for m in body], MAX_BATCH - 1,
                                 spec.max_commit_bytes - len(progress)) or [(0, 0)]
        if len(chunks) > 1 and (len(draft.units) > 1 or any(name for name, _, _ in draft.units)):
            # (only a timer's effect is committed in parts: an input's is all or nothing)
            description = (f"a commit of {sum(len(m.payload) for m in body)} bytes is over the limit of "
                           f"{spec.max_commit_bytes} bytes of one atomic commit")
            if not draft.units:
                return Reset(description)
            return self._refuse(draft.units, description, True)
        return Commit(body, BatchMsg(spec.output.progress(p), progress, self._replace), chunks,
                      list(draft.units), draft.traces)
