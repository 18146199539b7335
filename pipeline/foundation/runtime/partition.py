"""One partition of a stateful stage: acquire, rebuild, then fetch / step / commit / ack.

The hop-B protocol of the brief, per fetched batch: skip inputs at or below the
partition's progress, run the pure core over the rest (and over due timers), commit one
atomic batch (progress fenced with Nats-Expected-Last-Subject-Sequence, changed state keys
with rollup, outputs with deterministic Nats-Msg-Id, dead letters), then ack the inputs.
A crash before the commit redoes the step; after it, the redelivered inputs are skipped.

No input blocks a partition: one that cannot be decoded, is rejected, or whose effect cannot
be published (over the server's max_payload, say) is committed as a dead letter, which always
fits (an excerpt, the size and digest of an input too large to keep whole), and the partition
goes on. See :meth:`PartitionWorker._process`.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import decode as decode_message
from pipeline.foundation.runtime.commit import CommitUnknown, GroupCommitter
from pipeline.foundation.runtime.deadletter import MIN_BUDGET, bounded, build_dead_letter
from pipeline.foundation.runtime.jetstream import (
    BATCH_HEADER_ROOM,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_SUBJECT,
    BatchError,
    BatchMsg,
    TooLarge,
    Unpublishable,
    last_message,
    message_size,
    one_per_subject,
    plan_chunks,
    publish_atomic,
    unpublishable,
)
from pipeline.foundation.runtime.metrics import StageMetrics
from pipeline.foundation.runtime.pull import RawPuller
from pipeline.foundation.runtime.reads import DELETED, StaleRead, read_last_per_subject
from pipeline.foundation.runtime.step import Reject, StageCore, Step
from pipeline.foundation.runtime.subjects import StreamNames, state_headers, token
from pipeline.foundation.telemetry import commit_span, payload_attributes, step_span
from pipeline.foundation.telemetry import enabled as tracing_enabled

__all__ = ["CONSUMER_IDLE_TIMEOUT", "MAX_MSG_ID", "TIME_HEADER", "Input", "PartitionWorker", "Progress", "StageSpec",
           "ack_metadata", "bounded_id", "consumer_name", "event_time"]

log = logging.getLogger("tocsin.runtime")

TIME_HEADER = "Tocsin-Time"  # the event time of an output: the time its input or timer was stepped at
TOMBSTONE_TTL = "300"  # seconds; the rollup already removed older values, so expiry = deletion
MAX_MSG_ID = 512  # characters of a Nats-Msg-Id; a longer one is shortened with a digest (bounded_id)


class Progress(msgspec.Struct, omit_defaults=True):
    """The partition's progress record: last input sequence per input, and who owns it."""

    inputs: dict[str, int] = {}
    owner: str = ""
    epoch: int = 0


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
    core: StageCore[Any, Any]
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


CONSUMER_IDLE_TIMEOUT = 300.0  # seconds without pulls after which the server removes a partition's consumer


def consumer_name(stage: str, input_name: str, p: int, epoch: int | None = None) -> str:
    """The durable consumer of input ``input_name`` of partition ``p`` in ownership ``epoch``
    (one per epoch, so a stale owner can never take a new owner's messages); without an
    epoch, the prefix of them all."""
    return f"{stage}_{input_name}_p{p}" if epoch is None else f"{stage}_{input_name}_p{p}_e{epoch}"


def event_time(msg: Msg, stream_time: float) -> float:
    """The event time of an input (:data:`TIME_HEADER`), else its stream time; never later than
    its stream time (an output is stored after the step that made it)."""
    raw = msg.headers.get(TIME_HEADER) if msg.headers else None
    if raw:
        try:
            return min(float(raw), stream_time)
        except ValueError:
            pass
    return stream_time


def ack_metadata(msg: Msg) -> tuple[int, int, int, int, int]:
    """(stream seq, consumer seq, delivered count, timestamp ns, pending) from the ack subject, cheaply."""
    tokens = (msg.reply or "").split(".")
    o = 2 if len(tokens) == 9 else 4
    return (int(tokens[o + 3]), int(tokens[o + 4]), int(tokens[o + 2]), int(tokens[o + 5]),
            int(tokens[o + 6]))


class _Reset(Exception):
    """The partition must be acquired again (fenced, gap, consumer lost, a commit refused)."""


# An input (input name, stream sequence, "") or a timer ("", deadline, state key) of a commit.
_Unit = tuple[str, float, str]


@dataclass
class _Commit:
    msgs: list[BatchMsg] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)  # key -> value or _DEL
    inputs: int = 0
    units: list[_Unit] = field(default_factory=list)  # the inputs and timers it carries
    bytes: int = 0  # of msgs
    traces: list[str] = field(default_factory=list)  # traceparents of its steps (for the commit's span)

    def size(self) -> int:
        return 1 + len(self.msgs) + len(self.changes)


@dataclass
class _Effect:
    """What one input or timer adds to a commit."""

    changes: dict[str, Any]
    msgs: list[BatchMsg]
    bytes: int
    problem: str = ""  # why it cannot be committed, or ""
    outputs: int = 0


_DEL = object()


class PartitionWorker:
    """Owns partition ``p`` of a stage while it is assigned to this replica."""

    def __init__(self, nc: NATS, js: JetStreamContext, spec: StageSpec, p: int, replica: str,
                 metrics: StageMetrics, should_own: Callable[[], bool] = lambda: True,
                 committer: GroupCommitter | None = None) -> None:
        self.nc, self.js, self.spec, self.p, self.replica = nc, js, spec, p, replica
        self.committer = committer or GroupCommitter(nc)  # shared by a process's partitions of a stage
        self.metrics = metrics
        self.should_own = should_own
        self.state: dict[str, Any] = {}
        self.progress = Progress()
        self.fence = 0
        self.ready = False
        self._stopping = False
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._trace_of: dict[str, str] = {}  # key -> the traceparent of the step that set its timer
        self._subs: dict[str, RawPuller] = {}
        self._expected_dseq: dict[str, int] = {}
        self._pending: dict[str, int] = {}  # per input: messages not yet delivered, as last reported
        # After a commit refused for good (see _refused): up to where inputs (by input name) and
        # timers (name "") are committed one at a time, and those to dead-letter (cause, reason).
        self._isolate: dict[str, float] = {}
        self._poison: dict[_Unit, tuple[str, str]] = {}
        self._layout = spec.state_layout or spec.output
        # a core whose keys hold values of several types (a chain) decodes them by key
        self._decode_value: Callable[[str, bytes], Any] = getattr(
            spec.core, "decode_value", None) or _plain_decoder(spec.core.value_type)
        self._encoder = msgspec.json.Encoder()
        # the metric children of the hot path, resolved once (``labels`` costs a lookup per call)
        self._m_inputs = metrics.inputs.labels(spec.name)
        self._m_outputs = metrics.outputs.labels(spec.name)
        self._m_skipped = metrics.skipped.labels(spec.name)
        self._m_step = metrics.step_seconds.labels(spec.name)
        self._m_commits = metrics.commits.labels(spec.name)
        self._m_commit = metrics.commit_seconds.labels(spec.name)
        self._m_lag = {inp.name: metrics.lag.labels(spec.name, inp.name, str(p)) for inp in spec.inputs}
        self._out_headers: dict[str, str] = {}
        # How a state key's new value replaces the old: by the stream's one-message-per-subject
        # limit (no header), or, in a stream of the older layout, by a rollup (see subjects).
        self._replace: dict[str, str] = {"Nats-Rollup": "sub"}
        if spec.output_ttl:
            self._out_headers["Nats-TTL"] = str(spec.output_ttl)

    def stop(self) -> None:
        """Finish the step in flight, then let the partition go."""
        self._stopping = True

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        failures = 0
        while not self._stopping:
            try:
                await self._acquire()
                if not started:
                    task_status.started()
                    started = True
                failures = 0
                await self._serve()
            except (_Reset, BatchError, CommitUnknown) as exc:
                failures += 1
                log.warning("%s p%d: %s; re-acquiring", self.spec.name, self.p, exc)
                self.metrics.resets.labels(self.spec.name).inc()
            except (TimeoutError, OSError, anyio.BrokenResourceError) as exc:
                failures += 1
                log.warning("%s p%d: %r; re-acquiring", self.spec.name, self.p, exc)
            except Exception:  # unforeseen (a NATS error, a bug): log it, never kill the process
                failures += 1
                log.exception("%s p%d: unexpected error; re-acquiring", self.spec.name, self.p)
            self.ready = False
            if self._stopping:
                break
            await anyio.sleep(min(0.2 * 2 ** min(failures, 5), 5.0))
            if not self.should_own():
                break
        if not started:
            task_status.started()
        await self._unsubscribe()

    async def _acquire(self) -> None:
        spec, p = self.spec, self.p
        t0 = time.monotonic()
        await self._unsubscribe()
        self._replace = {} if await one_per_subject(self.js, spec.output.stream) else {"Nats-Rollup": "sub"}
        raw = await last_message(self.js, spec.output.stream, spec.output.progress(p), leader=True)
        fence = raw[0] if raw is not None else 0
        current = msgspec.json.decode(raw[1], type=Progress) if raw is not None and raw[1] else Progress()
        # Claim: a new progress record moves the fence, so a stale owner can no longer commit.
        claim = Progress(inputs=dict(current.inputs), owner=self.replica, epoch=current.epoch + 1)
        self.fence = await publish_atomic(self.nc, [BatchMsg(
            spec.output.progress(p), self._encoder.encode(claim),
            {"Nats-Expected-Last-Subject-Sequence": str(fence), **self._replace})])
        self.progress = claim
        await self._rebuild()
        for inp in spec.inputs:
            await self._bind(inp)
        self.ready = True
        self.metrics.rebuild_seconds.labels(spec.name).observe(time.monotonic() - t0)
        log.debug("%s p%d acquired (epoch %d, %d keys, inputs %s)", spec.name, p, claim.epoch,
                 len(self.state), claim.inputs)

    async def _rebuild(self, patience: float = 60.0) -> None:
        """State = the last value of every state subject of the partition, read from a replica
        that has applied our claim (a lagging follower's older state would make the core decide
        again what it already decided, with other outputs: duplicates with other ids)."""
        out, layout = self.spec.output, self._layout
        give_up = time.monotonic() + patience
        while True:
            self.state = {}
            self._deadlines = {}
            self._heap = []
            self._trace_of = {}
            try:
                async for m, deleted in read_last_per_subject(self.js, out.stream, layout.state_filter(self.p),
                                                              fresh=(out.progress(self.p), self.fence)):
                    if deleted:
                        continue
                    key = layout.key_of_state_subject(m.subject, m.headers)  # a digested key is in a header
                    value = self._decode_value(key, m.data)
                    self.state[key] = value
                    self._track(key, value)
                return
            except (StaleRead, TimeoutError) as exc:
                if isinstance(exc, StaleRead):
                    self.metrics.stale_reads.labels(self.spec.name).inc()
                if time.monotonic() > give_up:
                    raise _Reset(f"state rebuild: {exc}") from None
                log.info("%s p%d: %s; reading again", self.spec.name, self.p, exc)
                await anyio.sleep(0.25)

    def _consumer_name(self, inp: Input, epoch: int | None = None) -> str:
        return consumer_name(self.spec.name, inp.name, self.p, self.progress.epoch if epoch is None else epoch)

    async def _bind(self, inp: Input) -> None:
        """(Re)create the partition's durable consumer from just after its progress.

        Its state is kept in memory: the progress record, not the consumer, says where the
        partition is (a consumer lost with a restarted server is re-made from it on the next
        acquire), and a file-backed consumer rewrites its state file up to 10 times a second,
        a fifth of nats-server's CPU at 1,000 events/s (Go profile, docs/loadtest.md)."""
        spec = self.spec
        name = self._consumer_name(inp)
        # The previous owner's consumer (and one of a version that named consumers without the
        # epoch): a stale owner waking up finds its consumer gone, and never pulls from ours.
        # (Ours is new: every acquire claims a new epoch.)
        previous = self._consumer_name(inp, self.progress.epoch - 1)
        for old in (previous, consumer_name(spec.name, inp.name, self.p)):
            try:
                await self.js.delete_consumer(inp.names.stream, old)
            except NotFoundError:
                pass
        start = self.progress.inputs.get(inp.name, 0) + 1
        cfg = ConsumerConfig(
            durable_name=name, filter_subject=inp.names.out_filter(self.p),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.ALL, ack_wait=spec.ack_wait, max_ack_pending=spec.max_ack_pending,
            max_deliver=-1, max_waiting=64, mem_storage=True,
            inactive_threshold=CONSUMER_IDLE_TIMEOUT,  # removes the consumer of an owner that died mid-claim
        )
        info = await self.js.add_consumer(inp.names.stream, cfg)
        self._pending[inp.name] = info.num_pending or 0
        puller = RawPuller(self.nc, inp.names.stream, name, batch=spec.fetch_batch)
        await puller.start()
        self._subs[inp.name] = puller
        self._expected_dseq[inp.name] = 1

    async def _unsubscribe(self) -> None:
        for puller in self._subs.values():
            await puller.stop()
        self._subs = {}

    # ------------------------------------------------------------------ the loop
    async def _serve(self) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, list[Msg] | str]](4)
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            for inp in self.spec.inputs:
                tg.start_soon(self._fetch_loop, inp, send.clone())
            send.close()
            items: list[tuple[str, list[Msg] | str]] = []
            try:
                while not self._stopping:
                    items = []
                    with anyio.move_on_after(self._time_to_next_deadline()):
                        items.append(await receive.receive())
                    while True:
                        try:
                            items.append(receive.receive_nowait())
                        except anyio.WouldBlock:
                            break
                    for _, payload in items:
                        if isinstance(payload, str):
                            raise _Reset(payload)
                    await self._process([(name, msgs) for name, msgs in items if not isinstance(msgs, str)])
            except Exception as exc:  # raised outside the task group, so not wrapped in an ExceptionGroup
                error = exc
                # Give back what was fetched and not committed, so it is redelivered at once rather
                # than after the ack wait.
                with anyio.CancelScope(shield=True):
                    await self._give_back([m for _, msgs in items if not isinstance(msgs, str) for m in msgs])
                    while True:
                        try:
                            _, left = receive.receive_nowait()
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                        if not isinstance(left, str):
                            await self._give_back(left)
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _give_back(self, msgs: list[Msg]) -> None:
        for m in msgs:
            try:
                await m.nak()
            except Exception:  # a lost connection, a deleted consumer: nothing to give back to
                return

    async def _fetch_loop(self, inp: Input, send: Any) -> None:
        puller = self._subs[inp.name]
        async with send:
            while True:
                try:
                    msgs = await puller.next_batch(timeout=1.0)
                    if not msgs:
                        continue
                except Exception as exc:
                    await send.send((inp.name, f"fetch from {inp.names.stream} failed: {exc!r}"))
                    return
                await send.send((inp.name, msgs))

    def _behind(self) -> bool:
        """Inputs are waiting: time is theirs, and no timer fires by the clock."""
        return any(self._pending.values())

    async def _recount_pending(self) -> None:
        """Nothing arrived though inputs were said to be waiting: ask the server again (what was
        waiting may have been removed, by its TTL say), so the clock is not stopped for good."""
        for inp in self.spec.inputs:
            if self._pending.get(inp.name):
                info = await self.js.consumer_info(inp.names.stream, self._consumer_name(inp))
                self._pending[inp.name] = info.num_pending or 0

    def _time_to_next_deadline(self) -> float:
        if self._behind():
            return 1.0  # timers fire as the inputs' times pass them
        while self._heap and self._deadlines.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale entry: the key's deadline changed
        if not self._heap:
            return 1.0
        return max(0.0, min(1.0, self._heap[0][0] - time.time()))

    def _track(self, key: str, value: Any) -> None:
        deadline = self.spec.core.deadline(key, value) if value is not None else None
        if deadline is None:
            self._deadlines.pop(key, None)
            return
        if self._deadlines.get(key) != deadline:
            self._deadlines[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    async def _process(self, batches: list[tuple[str, list[Msg]]]) -> None:
        """Step a fetched batch.

        An input's time is its event time (:data:`TIME_HEADER`, set by the stage that wrote it:
        the time of the input or timer that made it), else its stream time (a source's event,
        an API push). A due timer fires before an input exactly when its deadline is at or
        before the input's time, and by the clock only when no input is waiting. So what a stage
        decides depends on event times only: not on how inputs were batched, nor on a crash
        redone, nor on how far behind the stages ran. (With stream times, a stage catching up
        on a backlog would write its outputs close together, and the next stage would see, say,
        an alert resolved and fired again within one group interval, and fold the two.)

        An input or timer whose effect cannot be published (an output over the server's
        max_payload, too many messages) is dead-lettered in its place. A commit the server or
        the client refuses for good (a state value over max_payload, a batch too large) resets
        the partition and redoes it one input or timer per commit, the refused one dead-lettered
        (see :meth:`_refused`): the partition never loops on one message."""
        if not batches and self._behind():
            await self._recount_pending()
        commit = _Commit()
        acks: dict[str, Msg] = {}
        wall = time.time()
        t0 = time.perf_counter()
        for name, msgs in batches:
            for msg in msgs:
                seq, dseq, _, ts, pending = ack_metadata(msg)
                if dseq != self._expected_dseq[name]:
                    raise _Reset(f"input {name}: delivery {dseq} where {self._expected_dseq[name]} was "
                                 "expected (another fetcher or a redelivery)")
                self._expected_dseq[name] = dseq + 1
                acks[name] = msg
                self._pending[name] = pending
                if seq <= self.progress.inputs.get(name, 0):
                    self._m_skipped.inc()
                    continue
                now = event_time(msg, ts / 1e9)
                commit = await self._fire_due(commit, min(now, wall))
                commit = await self._step_one(commit, name, msg, seq, now)
                if self._isolate:
                    commit = await self._commit_alone(commit)
        if not self._behind():
            commit = await self._fire_due(commit, wall)
        if commit.inputs or commit.msgs or commit.changes:
            await self._commit(commit)
        for msg in acks.values():  # AckAll: the last message acks every one before it
            await msg.ack()
        for name in acks:
            self._m_lag[name].set(self._pending[name])
        if self._isolate:
            self._end_isolation()
        self._m_step.observe(time.perf_counter() - t0)

    async def _fire_due(self, commit: _Commit, upto: float) -> _Commit:
        """Fire every timer due at or before ``upto``, in deadline order (timers a firing sets
        that are due too fire in the same pass)."""
        spec, p = self.spec, self.p
        while self._heap and self._heap[0][0] <= upto:
            deadline, key = heapq.heappop(self._heap)
            if self._deadlines.get(key) != deadline:
                continue  # stale entry: the key's deadline changed
            del self._deadlines[key]
            base = f"{spec.name}:{p}:t:{key}:{deadline!r}"
            unit = ("", deadline, key)
            cause, reason = self._poison.pop(unit, ("", ""))
            effect: _Effect | None = None
            tc: dict[str, str] = {}
            if not reason:
                try:
                    # the timer continues the trace of the input that set it (a group's flush, its alert's)
                    parent = self._trace_of.pop(key, None)
                    with step_span(f"{spec.name} timer", {"traceparent": parent} if parent else None,
                                   {"tocsin.partition": p, "tocsin.stage": spec.name}) as tc:
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
            commit = await self._apply(commit, effect, unit)
            self._remember_trace(commit, effect, tc)
            if self._isolate:
                commit = await self._commit_alone(commit)
        return commit

    async def _step_one(self, commit: _Commit, name: str, msg: Msg, seq: int, now: float) -> _Commit:
        spec, p = self.spec, self.p
        base = f"{spec.name}:{p}:{name}:{seq}"
        unit = (name, float(seq), "")
        poisoned = self._poison.pop(unit, None)
        cause, reason = poisoned or ("", "")
        effect: _Effect | None = None
        tc: dict[str, str] = {}
        if not reason:
            try:
                inp = next(i for i in spec.inputs if i.name == name).decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                cause, reason = "undecodable", f"cannot decode: {exc}"
            except RecursionError:
                cause, reason = "undecodable", "cannot decode: nested deeper than the decoder allows"
            except Exception as exc:
                cause, reason = "undecodable", f"cannot decode: {exc!r}"
            else:
                try:
                    attrs = {"tocsin.partition": p, "tocsin.input_seq": seq, "tocsin.stage": spec.name,
                             "messaging.destination.name": msg.subject, "messaging.consumer.group.name": spec.name,
                             **payload_attributes(inp)} if tracing_enabled() else _NO_ATTRIBUTES
                    headers = msg.headers
                    if attrs and (not headers or "traceparent" not in headers):
                        headers = getattr(inp, "trace", None) or headers  # a source's event: in its payload
                    with step_span(f"{spec.name} step", headers, attrs) as tc:
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
        commit = await self._apply(commit, effect, unit)
        self._remember_trace(commit, effect, tc)
        self.progress.inputs[name] = seq
        commit.inputs += 1
        self._m_inputs.inc()
        return commit

    def _remember_trace(self, commit: _Commit, effect: _Effect, tc: Mapping[str, str]) -> None:
        """The step's trace, for its commit's span and for the timers it set (kept in memory only:
        after a restart a timer starts a trace of its own)."""
        tp = tc.get("traceparent") if tc else None
        if not tp or not tracing_enabled():
            return
        if len(commit.traces) < 32:
            commit.traces.append(tp)
        for key in effect.changes:
            if key in self._deadlines:
                self._trace_of[key] = tp
            else:
                self._trace_of.pop(key, None)

    def _prepare(self, result: Step[Any], base: str, now: float, *, timer: bool = False) -> _Effect:
        """The messages of a step's outputs, and why they cannot be committed (or "").

        Only a timer's effect may be larger than one atomic batch (it is committed in parts, see
        :meth:`_commit`). State values are encoded at the commit, once per key (a key changed by
        every input of a batch is written once); one over a limit is found there (see
        :meth:`_refused`)."""
        spec = self.spec
        msgs: list[BatchMsg] = []
        size = 0
        problem = ""
        if not timer and len(result.outputs) + len(result.changes) + 1 >= MAX_BATCH:
            problem = (f"one input produced {len(result.outputs)} outputs and {len(result.changes)} state "
                       f"changes, more than an atomic batch holds ({MAX_BATCH})")
        max_payload = self.nc.max_payload
        # Our own headers (a bounded id, a time, a TTL) take less than this: a smaller message
        # fits without counting them (counting costs more than the rest of this loop).
        surely_fits = max_payload - BATCH_HEADER_ROOM - 4 * MAX_MSG_ID - 1024
        for i, out in enumerate(result.outputs):
            part = self.p if out.partition is None else out.partition
            hdrs = dict(self._out_headers)
            hdrs["Nats-Msg-Id"] = msg_id = bounded_id(out.msg_id or f"{base}:{i}")
            hdrs[TIME_HEADER] = repr(now)
            if out.headers:
                hdrs.update(out.headers)
            suffix = token(out.subject) if out.subject and "." not in out.subject else (out.subject or "_")
            m = BatchMsg((out.names or spec.output).out(part, suffix, msg_id), self._encoder.encode(out.payload),
                         hdrs)
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

    def _dead_letter(self, kind: str, cause: str, reason: str, base: str, *, msg: Msg | None = None,
                     seq: int = 0, at: float, key: str = "", excerpt_only: bool = False) -> _Effect:
        """The effect of an input or timer dead-lettered: one dead letter, which always fits."""
        spec, p = self.spec, self.p
        hdrs = {"Nats-Msg-Id": bounded_id(f"dlq:{base}")}
        if spec.dlq_ttl:
            hdrs["Nats-TTL"] = str(spec.dlq_ttl)
        subject = spec.output.dlq(p, hdrs["Nats-Msg-Id"])
        room = self.nc.max_payload - message_size(hdrs, b"") - len(subject) - BATCH_HEADER_ROOM
        budget = MIN_BUDGET if excerpt_only else max(MIN_BUDGET, room)
        payload = msg.data if msg is not None else b""
        _, data = build_dead_letter(
            stage=spec.name, reason=reason, budget=budget, payload=payload,
            subject=msg.subject if msg is not None else "", stream_seq=seq,
            headers=dict(msg.headers or {}) if msg is not None else None, at=at, key=key, cause=cause)
        self.metrics.dead_letters.labels(spec.name, kind, cause).inc()
        what = f"{msg.subject} seq {seq} ({len(payload)} bytes)" if msg is not None else f"timer of {key[:100]!r}"
        log.warning("%s p%d: dead letter (%s) for %s: %s", spec.name, p, cause, what, bounded(reason, 300))
        return _Effect({}, [BatchMsg(subject, data, hdrs)], len(data))

    async def _add(self, commit: _Commit, result: Step[Any], base: str, now: float) -> _Commit:
        """Add a step's effect to ``commit`` (for tests: unchecked, no unit)."""
        return await self._apply(commit, self._prepare(result, base, now), None)

    async def _apply(self, commit: _Commit, effect: _Effect, unit: _Unit | None) -> _Commit:
        """Apply an effect to the state and add it to ``commit`` (committed first when the two
        would not fit in one atomic batch: its outputs are kept under half the byte limit, for
        the state values, whose size is known only at the commit)."""
        if commit.size() + len(effect.msgs) + len(effect.changes) >= MAX_BATCH or (
                commit.units and commit.bytes + effect.bytes > self.spec.max_commit_bytes // 2):
            await self._commit(commit)
            commit = _Commit()
        for key, value in effect.changes.items():
            if value is None:
                self.state.pop(key, None)
                commit.changes[key] = _DEL
            else:
                self.state[key] = value
                commit.changes[key] = value
            self._track(key, value)
        commit.msgs.extend(effect.msgs)
        commit.bytes += effect.bytes
        if unit is not None:
            commit.units.append(unit)
        if effect.outputs:
            self._m_outputs.inc(effect.outputs)
        return commit

    async def _commit_alone(self, commit: _Commit) -> _Commit:
        """While isolating (after a refused commit), every input or timer is committed alone."""
        if commit.units:
            await self._commit(commit)
            return _Commit()
        return commit

    def _end_isolation(self) -> None:
        for name, mark in list(self._isolate.items()):
            if name:  # (or what was marked is gone from the stream: nothing is waiting)
                done = self.progress.inputs.get(name, 0) >= mark or not self._pending.get(name)
            else:
                done = not any(d <= mark and self._deadlines.get(k) == d for d, k in self._heap)
            if done:
                del self._isolate[name]

    async def _commit(self, commit: _Commit) -> None:
        """One atomic batch: progress (fenced), changed state keys, outputs.

        Only a timer whose effect alone is larger than an atomic batch (a regrouping reload,
        say) is committed in parts, in order, each with the progress record; a crash between
        parts redoes the timer from the last committed state, and its deterministic ids make
        the repeated outputs duplicates the stream drops.
        """
        spec, p = self.spec, self.p
        body: list[BatchMsg] = []
        stored_key = getattr(self._layout, "stored_key", None)  # the key a reader sees (a chain's, unprefixed)
        for key, value in commit.changes.items():
            subject = self._layout.state(p, key)
            hkey = stored_key(key) if stored_key else key
            if value is _DEL:
                body.append(BatchMsg(subject, b"", state_headers(
                    subject, hkey, {**self._replace, DELETED: "1", "Nats-TTL": TOMBSTONE_TTL})))
            else:
                try:
                    data = self._encoder.encode(value)
                except Exception as exc:  # (nested too deep, say): no commit of it can ever succeed
                    if not commit.units:
                        raise
                    raise self._refused(commit, Unpublishable(
                        f"the state value of {key[:100]!r} cannot be encoded: {exc!r}")) from exc
                body.append(BatchMsg(subject, data, state_headers(subject, hkey, self._replace)))
        body.extend(commit.msgs)
        with commit_span(f"{spec.name} commit", commit.traces, {
                "tocsin.partition": p, "tocsin.stage": spec.name, "messaging.system": "nats",
                "messaging.operation.type": "publish", "messaging.destination.name": spec.output.stream,
                "messaging.batch.message_count": len(body) + 1}):
            await self._commit_body(commit, body)

    async def _commit_body(self, commit: _Commit, body: list[BatchMsg]) -> None:
        spec, p = self.spec, self.p
        t0 = time.perf_counter()
        progress = self._encoder.encode(self.progress)
        chunks = plan_chunks([len(m.payload) for m in body], MAX_BATCH - 1,
                             spec.max_commit_bytes - len(progress)) or [(0, 0)]
        try:
            if len(chunks) > 1 and (len(commit.units) > 1 or any(name for name, _, _ in commit.units)):
                # (only a timer's effect is committed in parts: an input's is all or nothing)
                raise TooLarge(f"a commit of {sum(len(m.payload) for m in body)} bytes is over the limit of "
                               f"{spec.max_commit_bytes} bytes of one atomic commit")
            for start, end in chunks:
                msgs = [BatchMsg(spec.output.progress(p), progress,
                                 {"Nats-Expected-Last-Subject-Sequence": str(self.fence), **self._replace}),
                        *body[start:end]]
                self.fence = await self.committer.commit(msgs)
                self._m_commits.inc()
        except BatchError as exc:
            if exc.deterministic and commit.units:
                raise self._refused(commit, exc) from exc
            raise
        self._m_commit.observe(time.perf_counter() - t0)

    def _refused(self, commit: _Commit, exc: BatchError) -> _Reset:
        """A commit refused for good: re-acquire (the state is read again, as it was before the
        commit), then redo its inputs and timers one per commit; one refused alone is
        dead-lettered. The core is deterministic, so the redo decides what the refused commit
        did, but for the dead-lettered one."""
        if len(commit.units) == 1:
            unit = commit.units[0]
            cause = "too_large" if isinstance(exc, TooLarge) else "refused"
            self._poison[unit] = (cause, f"its commit was refused: {exc.description}")
            what = f"input {unit[0]} seq {int(unit[1])}" if unit[0] else f"timer of {unit[2][:100]!r}"
            return _Reset(f"the commit of {what} was refused ({bounded(exc.description, 300)}); "
                          "it will be dead-lettered")
        for name, pos, _ in commit.units:
            self._isolate[name] = max(pos, self._isolate.get(name, pos))
        return _Reset(f"a commit of {len(commit.units)} inputs and timers was refused "
                      f"({bounded(exc.description, 300)}); committing them one at a time")


_NO_ATTRIBUTES: Mapping[str, Any] = {}


def _plain_decoder(value_type: Any) -> Callable[[str, bytes], Any]:
    decoder = msgspec.json.Decoder(value_type)
    return lambda _key, data: decoder.decode(data)


def bounded_id(msg_id: str) -> str:
    """A ``Nats-Msg-Id`` of bounded length: a long one (made of user data, say) is shortened
    to a prefix and a digest of it, deterministically, so the server's duplicate window and
    the header stay small."""
    if len(msg_id) <= MAX_MSG_ID:
        return msg_id
    return f"{msg_id[:64]}~{hashlib.blake2b(msg_id.encode('utf-8', 'surrogatepass'), digest_size=16).hexdigest()}"
