"""One partition of a stateful stage: acquire, rebuild, then fetch / step / commit / ack.

The hop-B protocol of the brief, per fetched batch: skip inputs at or below the
partition's progress, run the pure core over the rest (and over due timers), commit one
atomic batch (progress fenced with Nats-Expected-Last-Subject-Sequence, changed state keys
with rollup, outputs with deterministic Nats-Msg-Id, dead letters), then ack the inputs.
A crash before the commit redoes the step; after it, the redelivered inputs are skipped.

What to do is decided by the partition's sans-I/O machine
(:class:`~pipeline.foundation.runtime.machine.PartitionMachine`: skips, gaps, timers, commit
splits, dead letters, message ids); :class:`PartitionWorker` acquires the partition, fetches,
commits (adding its fence) and acks, and tells the machine how each went.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from pipeline.foundation.runtime.commit import CommitUnknown, GroupCommitter
from pipeline.foundation.runtime.jetstream import BatchError, TooLarge, last_message, one_per_subject, publish_atomic
from pipeline.foundation.runtime.machine import (
    MAX_MSG_ID,
    Ack,
    Action,
    Commit,
    CommitDraft,
    Done,
    Input,
    PartitionMachine,
    Progress,
    Recount,
    Reset,
    StageSpec,
    Tally,
    ack_metadata,
    bounded_id,
    claim,
    event_time,
)
from pipeline.foundation.runtime.metrics import StageMetrics
from pipeline.foundation.runtime.pull import RawPuller
from pipeline.foundation.runtime.reads import StaleRead, read_last_per_subject
from pipeline.foundation.runtime.step import Step
from pipeline.foundation.runtime.wire import BatchMsg
from pipeline.foundation.telemetry import commit_span

# (MAX_MSG_ID ... event_time: the machine's, named here too for the modules that import them from here)
__all__ = ["CONSUMER_IDLE_TIMEOUT", "MAX_MSG_ID", "Input", "PartitionWorker", "Progress", "StageSpec",
           "ack_metadata", "bounded_id", "consumer_name", "event_time"]

log = logging.getLogger("tocsin.runtime")

CONSUMER_IDLE_TIMEOUT = 300.0  # seconds without pulls after which the server removes a partition's consumer


def consumer_name(stage: str, input_name: str, p: int, epoch: int | None = None) -> str:
    """The durable consumer of input ``input_name`` of partition ``p`` in ownership ``epoch``
    (one per epoch, so a stale owner can never take a new owner's messages); without an
    epoch, the prefix of them all."""
    return f"{stage}_{input_name}_p{p}" if epoch is None else f"{stage}_{input_name}_p{p}_e{epoch}"


class _Reset(Exception):
    """The partition must be acquired again (fenced, gap, consumer lost, a commit refused)."""


class PartitionWorker:
    """Owns partition ``p`` of a stage while it is assigned to this replica."""

    def __init__(self, nc: NATS, js: JetStreamContext, spec: StageSpec, p: int, replica: str,
                 metrics: StageMetrics, should_own: Callable[[], bool] = lambda: True,
                 committer: GroupCommitter | None = None) -> None:
        self.nc, self.js, self.spec, self.p, self.replica = nc, js, spec, p, replica
        self.committer = committer or GroupCommitter(nc)  # shared by a process's partitions of a stage
        self.metrics = metrics
        self.should_own = should_own
        self.machine = PartitionMachine(spec, p)
        self.fence = 0
        self.ready = False
        self._stopping = False
        self._subs: dict[str, RawPuller] = {}
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

    @property
    def state(self) -> dict[str, Any]:
        """The partition's state (the machine's)."""
        return self.machine.state

    @property
    def progress(self) -> Progress:
        return self.machine.progress

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
        rollup = not await one_per_subject(self.js, spec.output.stream)  # a stream of the older layout
        raw = await last_message(self.js, spec.output.stream, spec.output.progress(p), leader=True)
        fence = raw[0] if raw is not None else 0
        current = msgspec.json.decode(raw[1], type=Progress) if raw is not None and raw[1] else Progress()
        # Claim: a new progress record moves the fence, so a stale owner can no longer commit.
        mine = claim(current, self.replica)
        self.fence = await publish_atomic(self.nc, [BatchMsg(
            spec.output.progress(p), self._encoder.encode(mine),
            {"Nats-Expected-Last-Subject-Sequence": str(fence), **({"Nats-Rollup": "sub"} if rollup else {})})])
        self.machine.claimed(mine, rollup=rollup)
        await self._rebuild()
        for inp in spec.inputs:
            await self._bind(inp)
        self.ready = True
        self.metrics.rebuild_seconds.labels(spec.name).observe(time.monotonic() - t0)
        log.debug("%s p%d acquired (epoch %d, %d keys, inputs %s)", spec.name, p, mine.epoch,
                 len(self.state), mine.inputs)

    async def _rebuild(self, patience: float = 60.0) -> None:
        """State = the last value of every state subject of the partition, read from a replica
        that has applied our claim (a lagging follower's older state would make the core decide
        again what it already decided, with other outputs: duplicates with other ids)."""
        out, layout = self.spec.output, self._layout
        give_up = time.monotonic() + patience
        while True:
            state: dict[str, Any] = {}
            try:
                async for m, deleted in read_last_per_subject(self.js, out.stream, layout.state_filter(self.p),
                                                              fresh=(out.progress(self.p), self.fence)):
                    if deleted:
                        continue
                    key = layout.key_of_state_subject(m.subject, m.headers)  # a digested key is in a header
                    state[key] = self._decode_value(key, m.data)
                self.machine.restored(state)
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
        start = self.machine.start_of(inp.name)
        cfg = ConsumerConfig(
            durable_name=name, filter_subject=inp.names.out_filter(self.p),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            ack_policy=AckPolicy.ALL, ack_wait=spec.ack_wait, max_ack_pending=spec.max_ack_pending,
            max_deliver=-1, max_waiting=64, mem_storage=True,
            inactive_threshold=CONSUMER_IDLE_TIMEOUT,  # removes the consumer of an owner that died mid-claim
        )
        info = await self.js.add_consumer(inp.names.stream, cfg)
        puller = RawPuller(self.nc, inp.names.stream, name, batch=spec.fetch_batch)
        await puller.start()
        self._subs[inp.name] = puller
        self.machine.bound(inp.name, info.num_pending or 0)

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
                    with anyio.move_on_after(self.machine.wait_time(time.time())):
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

    async def _recount(self, action: Recount) -> dict[str, int]:
        counts = {}
        for inp in self.spec.inputs:
            if inp.name in action.inputs:
                info = await self.js.consumer_info(inp.names.stream, self._consumer_name(inp))
                counts[inp.name] = info.num_pending or 0
        return counts

    async def _process(self, batches: list[tuple[str, list[Msg]]]) -> None:
        """Step a fetched batch (or none: a timer may be due): do what the machine says until
        the batch is done (see :mod:`pipeline.foundation.runtime.machine` for what it decides).

        A commit the server or the client refuses for good (a state value over max_payload, a
        batch too large) resets the partition, and the machine redoes it one input or timer per
        commit, the refused one dead-lettered: the partition never loops on one message."""
        machine = self.machine
        t0 = time.perf_counter()
        try:
            action: Action = machine.fetched(batches, time.time(), self.nc.max_payload)
            while not isinstance(action, Done):
                if isinstance(action, Commit):
                    await self._commit_action(action)
                    action = machine.committed()
                elif isinstance(action, Recount):
                    action = machine.recounted(await self._recount(action))
                elif isinstance(action, Ack):
                    for msg in action.msgs:  # AckAll: the last message acks every one before it
                        await msg.ack()
                    for name, pending in action.pending.items():
                        self._m_lag[name].set(pending)
                    action = machine.acked()
                else:
                    raise _Reset(action.reason)
        except BaseException:
            machine.abandoned()
            raise
        finally:
            self._count(machine.take_tally())
        self._m_step.observe(time.perf_counter() - t0)

    def _count(self, tally: Tally) -> None:
        if tally.inputs:
            self._m_inputs.inc(tally.inputs)
        if tally.skipped:
            self._m_skipped.inc(tally.skipped)
        if tally.outputs:
            self._m_outputs.inc(tally.outputs)
        for (kind, cause), n in tally.dead_letters.items():
            self.metrics.dead_letters.labels(self.spec.name, kind, cause).inc(n)

    async def _commit_action(self, commit: Commit) -> None:
        """One atomic batch per chunk: the progress record (fenced), then the chunk's messages."""
        spec, p = self.spec, self.p
        with commit_span(f"{spec.name} commit", commit.traces, {
                "tocsin.partition": p, "tocsin.stage": spec.name, "messaging.system": "nats",
                "messaging.operation.type": "publish", "messaging.destination.name": spec.output.stream,
                "messaging.batch.message_count": len(commit.body) + 1}):
            t0 = time.perf_counter()
            progress = commit.progress
            try:
                for start, end in commit.chunks:
                    msgs = [BatchMsg(progress.subject, progress.payload, {
                        "Nats-Expected-Last-Subject-Sequence": str(self.fence), **(progress.headers or {})}),
                        *commit.body[start:end]]
                    self.fence = await self.committer.commit(msgs)
                    self._m_commits.inc()
            except BatchError as exc:
                if exc.deterministic and commit.units:
                    raise _Reset(self.machine.refused(exc.description, too_large=isinstance(exc, TooLarge)).reason
                                 ) from exc
                raise
            self._m_commit.observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------ for tests
    def _add(self, draft: CommitDraft, result: Step[Any], base: str, now: float) -> CommitDraft:
        """Add a step's effect to ``draft`` (unchecked, no unit)."""
        return self.machine.add(draft, result, base, now)

    async def _commit(self, draft: CommitDraft) -> None:
        """Commit ``draft`` now (outside a batch)."""
        action = self.machine.seal(draft)
        if isinstance(action, Reset):
            raise _Reset(action.reason)
        await self._commit_action(action)


def _plain_decoder(value_type: Any) -> Callable[[str, bytes], Any]:
    decoder = msgspec.json.Decoder(value_type)
    return lambda _key, data: decoder.decode(data)

