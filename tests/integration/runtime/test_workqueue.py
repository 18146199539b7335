"""The work-queue consumer (pipeline.foundation.runtime.workqueue) on a real nats-server:
every message handled once, at most ``concurrency`` at a time, a failed handler's message
redelivered, a drain returning what it could not finish."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect
from pipeline.foundation.runtime.workqueue import WorkQueue, ensure_work_consumer, num_delivered

pytestmark = pytest.mark.integration

STREAM, CONSUMER = "WQ_TEST", "workers"


async def _setup(js: JetStreamContext, count: int) -> None:
    await js.add_stream(StreamConfig(name=STREAM, subjects=["wq.>"], storage=StorageType.MEMORY))
    await ensure_work_consumer(js, STREAM, CONSUMER, filter_subject="wq.in.>", ack_wait=5.0, max_ack_pending=100)
    for i in range(count):
        await js.publish(f"wq.in.{i}", str(i).encode())


async def test_every_message_once_within_the_concurrency(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await _setup(js, 40)
    seen: list[int] = []
    running = peak = 0
    done = anyio.Event()

    async def handle(msg: Msg) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        seen.append(int(msg.data))
        await msg.ack()
        if len(seen) == 40:
            done.set()

    queue = WorkQueue(nc, STREAM, CONSUMER, handle, concurrency=4, ack_wait=5.0, fetch_timeout=0.5)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(queue.run)
            assert queue.ready
            with anyio.fail_after(10):
                await done.wait()
            await queue.drain(1.0)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    assert sorted(seen) == list(range(40)) and 1 < peak <= 4
    assert not queue.ready and not queue.in_flight


async def test_a_failing_handler_gets_the_message_again(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await _setup(js, 1)
    deliveries: list[int] = []
    done = anyio.Event()

    async def handle(msg: Msg) -> None:
        deliveries.append(num_delivered(msg))
        if len(deliveries) == 1:
            raise RuntimeError("a bug")  # returned with error_delay, not lost
        await msg.ack()
        done.set()

    queue = WorkQueue(nc, STREAM, CONSUMER, handle, concurrency=2, ack_wait=5.0, fetch_timeout=0.5,
                      error_delay=0.2)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(queue.run)
            with anyio.fail_after(4):  # well under the 5 s ack wait: the nak returned it
                await done.wait()
            await queue.drain(1.0)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    assert deliveries == [1, 2]


async def test_drain_returns_an_unfinished_message_at_once(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await _setup(js, 1)
    started = anyio.Event()

    async def stuck(msg: Msg) -> None:
        started.set()
        await anyio.sleep_forever()

    got: list[int] = []
    again = anyio.Event()

    async def handle(msg: Msg) -> None:
        got.append(num_delivered(msg))
        await msg.ack()
        again.set()

    try:
        first = WorkQueue(nc, STREAM, CONSUMER, stuck, concurrency=1, ack_wait=30.0, fetch_timeout=0.5)
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await started.wait()
            with anyio.fail_after(5):
                await first.drain(timeout=0.2)
            tg.cancel_scope.cancel()
        second = WorkQueue(nc, STREAM, CONSUMER, handle, concurrency=1, ack_wait=30.0, fetch_timeout=0.5)
        async with anyio.create_task_group() as tg:
            await tg.start(second.run)
            with anyio.fail_after(5):  # not the 30 s ack wait
                await again.wait()
            await second.drain(1.0)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    assert got == [2]

