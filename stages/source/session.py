"""Hop A's I/O: committed transactions from logical replication into EVENTS, effectively once.

:class:`SourceSession` does the I/O for one replication connection and leaves every decision to
:mod:`stages.source.core`: a reader task decodes frames and feeds them to the core's
:class:`~stages.source.core.TransactionAssembler`, a publisher task packs its chunks
(:class:`~stages.source.core.BatchPacker`) and commits each batch as ONE atomic batch whose last
message is the checkpoint (subject ``tocsin.events.source.<slot>``, ``Nats-Rollup: sub``), and
only after the PubAck of a transaction's last chunk reports its end LSN as flushed to Postgres; a
feedback task sends the standby status updates.

A source process is ``tocsin run source`` (``pipeline.application``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.messages import DeadLetter, decode_as
from pipeline.foundation.runtime.jetstream import publish_atomic
from pipeline.foundation.runtime.subjects import EVENTS
from pipeline.foundation.runtime.wire import TIME_HEADER, BatchMsg
from stages.source.config import SourceConfig
from stages.source.core import (
    STAGE,
    Batch,
    BatchPacker,
    Checkpoint,
    Item,
    Message,
    TraceFn,
    TransactionAssembler,
    after_failed_publish,
    checkpoint_subject,
    decode_checkpoint,
    encode_checkpoint,
    resume_lsn,
)
from stages.source.limits import DEAD_REASON_HEADER
from stages.source.metrics import source_metrics
from stages.source.pgoutput import format_lsn
from stages.source.replication import (
    Keepalive,
    ReplicationStream,
    SlotBusyError,
    XLogData,
    current_wal_lsn,
    parse_frame,
    pg_micros,
)
from stages.source.tracing import trace_context_factory

__all__ = ["PublishFn", "SourceSession", "read_checkpoint", "to_batch_msg"]

log = logging.getLogger("tocsin.source")

_ROLLUP = {"Nats-Rollup": "sub"}  # only the latest checkpoint is kept


def to_batch_msg(m: Message) -> BatchMsg:
    """A core message as it goes on the wire: its id for the stream, its event time and, for a dead
    letter, the reason code (stored with it, so `nats stream view` shows it)."""
    headers = {"Nats-Msg-Id": m.msg_id, TIME_HEADER: repr(m.time)}
    if m.dead is not None:
        headers[DEAD_REASON_HEADER] = m.dead
    return BatchMsg(m.subject, m.payload, headers)


PublishFn = Callable[[NATS, Sequence[BatchMsg]], Awaitable[int]]


async def read_checkpoint(js: JetStreamContext, slot: str) -> Checkpoint | None:
    """The last checkpoint, read from the stream leader (a direct get may be served by a lagging replica)."""
    try:
        raw = await js.get_last_msg(EVENTS.stream, checkpoint_subject(slot), direct=False)
    except NotFoundError:
        return None
    return decode_checkpoint(bytes(raw.data or b""))


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
        self.flushed = resume_lsn(self.checkpoint)
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
                            if assembler.problems or assembler.notes:
                                self._report(assembler)
                        elif isinstance(frame, Keepalive):
                            if frame.wal_end > self.server_wal:
                                self.server_wal = frame.wal_end
                            if frame.reply:
                                self._wake.set()
                            for item in assembler.keepalive(frame.wal_end):
                                await send.send(item)
                    await anyio.lowlevel.checkpoint()

    @staticmethod
    def _report(assembler: TransactionAssembler) -> None:
        for problem in assembler.problems:
            log.warning("mapping problem: %s", problem)
        for note in assembler.notes:
            log.info("%s", note)
        assembler.problems.clear()
        assembler.notes.clear()

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
        msgs = [*map(to_batch_msg, batch.msgs), BatchMsg(checkpoint_subject(slot), encode_checkpoint(cp), _ROLLUP)]
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
                verdict = after_failed_publish(found, cp, before)
                if verdict == "stored":
                    break
                if verdict == "conflict":
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

    def _log_dead_letter(self, msg: Message) -> None:
        """Count and log a published dead letter: skipping a row is never silent."""
        code = msg.dead or "row"
        self.metrics.dead_letters.labels(self.slot, code).inc()
        try:
            letter = decode_as(msg.payload, DeadLetter)
        except (msgspec.DecodeError, msgspec.ValidationError):  # our own encoding: not expected
            letter = DeadLetter(stage=STAGE, reason="?")
        log.warning("skipped a row of %s (key %.64r) at %s: dead letter on %s (%s): %s", letter.table, letter.key,
                    msg.msg_id, msg.subject, code, letter.reason)

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
