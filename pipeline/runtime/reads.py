"""Reading a stage's state and outputs back from its stream (rebuild, API reads, history)."""

from __future__ import annotations

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
                        batch: int = 5000) -> AsyncIterator[Msg]:
    """Every message of ``subject`` (or only the last per subject), in stream order; then stop."""
    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.ALL,
                         ack_policy=AckPolicy.NONE, inactive_threshold=30.0, max_ack_pending=-1)
    try:
        psub = await js.pull_subscribe(subject, durable=None, stream=stream, config=cfg)
    except NotFoundError:
        return
    try:
        pending = (await psub.consumer_info()).num_pending or 0
        while pending > 0:
            for m in await psub.fetch(min(pending, batch), timeout=10):
                pending = _pending(m)
                yield m
    finally:
        try:
            await js.delete_consumer(stream, psub._consumer)
        except Exception:  # it also expires on its own
            pass
        await psub.unsubscribe()


async def read_last_per_subject(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[tuple[Msg, bool]]:
    """The last message of every subject under ``subject``, with whether it is a tombstone."""
    async for m in read_messages(js, stream, subject, last_per_subject=True):
        yield m, bool(m.headers and m.headers.get(DELETED))
