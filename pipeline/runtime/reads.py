"""Reading a stage's state and outputs back from its stream (rebuild, API reads, history)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

__all__ = ["DELETED", "read_last_per_subject", "read_messages"]

DELETED = "Tocsin-Deleted"  # header of a state tombstone


def _pending(msg: Msg) -> int:
    tokens = (msg.reply or "").split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])


async def read_messages(js: JetStreamContext, stream: str, subject: str, *, last_per_subject: bool = False,
                        batch: int = 10_000) -> AsyncIterator[Msg]:
    """Every message of ``subject`` (or only the last per subject), in stream order; then stop.

    An ephemeral pull consumer read with raw pull requests on one plain subscription:
    nats-py's ``fetch`` waits on each message separately, several times slower for the
    100k-message reads of a state rebuild.
    """
    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.ALL,
                         ack_policy=AckPolicy.NONE, inactive_threshold=30.0, filter_subject=subject,
                         mem_storage=True, num_replicas=1)
    try:
        info = await js.add_consumer(stream, cfg)
    except NotFoundError:
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
        while pending > 0:
            want = min(pending, batch)
            received.clear()
            done.clear()
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
                             json.dumps({"batch": want, "no_wait": True}).encode(), reply=sub.subject)
            await asyncio.wait_for(done.wait(), timeout=30)
            for m in received:
                if not m.reply:  # a status message (no more messages / timeout): ask again
                    continue
                pending = _pending(m)
                yield m
                if pending == 0:
                    return
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(stream, name)
        except Exception:  # it also expires on its own
            pass


async def read_last_per_subject(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[tuple[Msg, bool]]:
    """The last message of every subject under ``subject``, with whether it is a tombstone."""
    async for m in read_messages(js, stream, subject, last_per_subject=True):
        yield m, bool(m.headers and m.headers.get(DELETED))
