"""Reading a stage's state and outputs back from its stream (rebuild, API reads, history)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.wire import DELETED

__all__ = ["StaleRead", "read_last_per_subject", "read_messages", "read_partition_state"]

_IDLE = 10.0  # seconds a read may go without a message before it is abandoned


class StaleRead(Exception):
    """The server that served a read had not applied a message the reader knows exists: an R1
    read consumer on an R3 stream is placed on any replica, a follower still catching up
    included, and reads that replica's copy. Read again (a new consumer, maybe elsewhere)."""


def _pending(msg: Msg) -> int:
    tokens = (msg.reply or "").split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])


def _stream_seq(msg: Msg) -> int:
    tokens = (msg.reply or "").split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


async def read_messages(js: JetStreamContext, stream: str, subject: str | Sequence[str], *,
                        last_per_subject: bool = False, start_seq: int | None = None,
                        batch: int = 10_000, fresh: tuple[str, int] | None = None) -> AsyncIterator[Msg]:
    """Every message of ``subject`` (or of several subjects; or only the last per subject), in stream
    order; then stop.

    An ephemeral pull consumer read with raw pull requests on one plain subscription:
    nats-py's ``fetch`` waits on each message separately, several times slower for the
    100k-message reads of a state rebuild.

    ``fresh=(marker, seq)``: the reader knows the last message of subject ``marker`` (which
    ``subject`` must not match) is at stream sequence ``seq`` or later. The marker is read
    along (not yielded) and :class:`StaleRead` is raised at the end if the serving replica
    had not got that far: what was yielded may then be stale and must be thrown away.
    ``start_seq``: only the messages from that stream sequence on (not with ``last_per_subject``).
    """
    subjects = [subject] if isinstance(subject, str) else list(subject)  # (several must not overlap)
    if fresh is not None:
        subjects.append(fresh[0])
    filters = {"filter_subject": subjects[0]} if len(subjects) == 1 else {"filter_subjects": subjects}
    policy = DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.ALL
    if start_seq is not None:
        policy, filters["opt_start_seq"] = DeliverPolicy.BY_START_SEQUENCE, start_seq  # type: ignore[assignment]
    cfg = ConsumerConfig(deliver_policy=policy, ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                         num_replicas=1, **filters)  # type: ignore[arg-type]
    marker_seq = 0
    try:
        info = await js.add_consumer(stream, cfg)
    except NotFoundError:
        if fresh is not None:
            raise StaleRead(f"stream {stream} not found, but {fresh[0]} is known at {fresh[1]}") from None
        return
    nc = js._nc
    name = info.name
    pending = info.num_pending or 0
    received: list[Msg] = []
    done = asyncio.Event()
    want = 0

    async def collect(m: Msg) -> None:  # a callback: no per-message wait in this task
        received.append(m)
        if len(received) >= want or not m.reply:
            done.set()

    sub = await nc.subscribe(nc.new_inbox(), cb=collect)
    try:
        while pending > 0:  # (the marker's own delivery is counted in pending too)
            want = min(pending, batch)
            received.clear()
            done.clear()
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                             json.dumps({"batch": want, "no_wait": True}).encode(), reply=sub.subject)
            seen = -1
            while not done.is_set():  # a replica that stops answering (it is starting, say): give up
                if len(received) == seen:
                    raise TimeoutError(f"{stream}: no messages from the read consumer for {_IDLE} s")
                seen = len(received)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=_IDLE)
            for m in received:
                if not m.reply:  # a status message (no more messages / timeout): ask again
                    continue
                pending = _pending(m)
                if fresh is not None and m.subject == fresh[0]:
                    marker_seq = _stream_seq(m)
                else:
                    yield m
                if pending == 0:
                    break
        if fresh is not None and marker_seq < fresh[1]:
            raise StaleRead(f"{stream} read from a replica behind: {fresh[0]} at {marker_seq or 'none'}, "
                            f"expected {fresh[1]} or later")
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(stream, name)
        except Exception:  # it also expires on its own
            pass


async def read_last_per_subject(js: JetStreamContext, stream: str, subject: str | Sequence[str], *,
                                fresh: tuple[str, int] | None = None) -> AsyncIterator[tuple[Msg, bool]]:
    """The last message of every subject under ``subject``, with whether it is a tombstone
    (``fresh``: see :func:`read_messages`)."""
    async for m in read_messages(js, stream, subject, last_per_subject=True, fresh=fresh):
        yield m, bool(m.headers and m.headers.get(DELETED))


async def read_partition_state(js: JetStreamContext, stream: str, subject: str, progress: str, *,
                               patience: float = 3.0) -> list[tuple[Msg, bool]]:
    """:func:`read_last_per_subject` as of the partition's last commit (for readers that are
    not the partition's owner, like the API): its progress record is read from the stream
    leader, and a read served by a replica behind it is done again. Raises :class:`StaleRead`
    after ``patience`` seconds (a node catching up for longer): better an error than an old
    view, an empty one even, that makes an operator act on alerts or silences long gone."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    while True:
        raw = await last_message(js, stream, progress, leader=True)
        fresh = (progress, raw[0]) if raw is not None else None
        try:
            return [x async for x in read_last_per_subject(js, stream, subject, fresh=fresh)]
        except StaleRead:
            if loop.time() > give_up:
                raise
            await asyncio.sleep(0.2)
