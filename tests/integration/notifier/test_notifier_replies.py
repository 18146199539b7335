"""The ledger's request/reply: answers matched to their requests, deadlines, no responders."""

from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest
from nats.aio.msg import Msg

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect
from stages.notifier.ledger import Ledger, _Replies
from stages.notifier.records import LedgerRecord

from .helpers import T0

pytestmark = pytest.mark.integration


async def test_each_request_gets_its_own_answer_and_silence_times_out(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)

    pending: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        await asyncio.sleep(0.05 if int(msg.data) % 2 else 0.0)  # odd ones after the even ones
        await nc.publish(msg.reply, b"re:" + msg.data)

    async def echo(msg: Msg) -> None:  # answers "n" requests, ignores "quiet" ones
        if not msg.data.startswith(b"quiet"):
            task = asyncio.create_task(answer(msg))
            pending.add(task)
            task.add_done_callback(pending.discard)

    await nc.subscribe("svc", cb=echo)
    replies = _Replies(nc, timeout=0.5)
    try:
        answers = await asyncio.gather(*(replies.request("svc", str(i).encode(), {}) for i in range(50)))
        t0 = time.monotonic()
        outcomes = await asyncio.gather(replies.request("svc", b"quiet-1", {}), replies.request("svc", b"7", {}),
                                        replies.request("svc", b"quiet-2", {}), return_exceptions=True)
        waited = time.monotonic() - t0
    finally:
        await nc.close()
    assert [a.data for a in answers] == [b"re:%d" % i for i in range(50)]
    assert isinstance(outcomes[0], nats.errors.TimeoutError) and isinstance(outcomes[2], nats.errors.TimeoutError)
    assert isinstance(outcomes[1], Msg) and outcomes[1].data == b"re:7"
    assert 0.4 <= waited < 2.0


async def test_a_write_without_the_ledger_stream_says_no_responders(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    try:
        with pytest.raises(nats.errors.NoRespondersError):
            await Ledger(nc, nc.jetstream(), timeout=2).write(LedgerRecord(
                id="s-nowhere", state="sending", at=T0, org="acme", receiver="team", integration="webhook[0]",
                group_key="{}"))
    finally:
        await nc.close()
