"""The raw pull reader of a partition's durable consumer, on a real nats-server: every message
once and in order, bounded batches, an idle wait that ends, and a deleted consumer reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from pipeline.foundation.embedded import NatsServer, start_nats
from pipeline.foundation.runtime.jetstream import connect
from pipeline.foundation.runtime.pull import ConsumerGone, RawPuller

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _puller(url: str, **kw: Any) -> AsyncIterator[tuple[RawPuller, Any]]:
    """A stream P with a durable pull consumer c, and a started reader of it (and the JetStream context)."""
    nc = await connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="P", subjects=["p.>"], storage=StorageType.MEMORY))
    await js.add_consumer("P", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.ALL, max_waiting=4))
    puller = RawPuller(nc, "P", "c", **kw)
    await puller.start()
    try:
        yield puller, js
    finally:
        await puller.stop()
        await nc.close()


@pytest.mark.parametrize("batch", [1, 7, 256], ids=["batch-1", "batch-7", "batch-256"])
async def test_every_message_once_in_order_in_bounded_batches(nats_server: NatsServer, batch: int) -> None:
    got: list[int] = []
    sizes: list[int] = []
    async with _puller(nats_server.url, batch=batch, expires=0.5) as (puller, js):

        async def produce() -> None:
            for start in range(0, 600, 50):  # bursts (sent in order on one connection), so batches can form
                await asyncio.gather(*(js.publish("p.x", str(i).encode()) for i in range(start, start + 50)))
                await anyio.sleep(0.01)  # arrivals while batches are being read, and pulls expiring

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            with anyio.fail_after(30):
                while len(got) < 600:
                    msgs = await puller.next_batch(timeout=0.2)
                    sizes.append(len(msgs))
                    got += [int(m.data) for m in msgs]
                    if msgs:
                        await msgs[-1].ack()
    assert got == list(range(600))
    assert max(sizes) <= 2 * batch  # the reader is the flow control
    # (600 one-message fetches would be what a reader without an open pull ahead could do at best)
    assert len([s for s in sizes if s]) < 600 or batch == 1


async def test_idle_returns_nothing_after_the_timeout_and_then_delivers(nats_server: NatsServer) -> None:
    async with _puller(nats_server.url, batch=16, expires=0.3) as (puller, js):
        with anyio.fail_after(5):
            assert await puller.next_batch(timeout=1.0) == []  # several pulls expired meanwhile
        await js.publish("p.x", b"late")
        with anyio.fail_after(5):
            msgs = await puller.next_batch(timeout=3.0)
        assert [m.data for m in msgs] == [b"late"]


async def test_a_deleted_consumer_is_reported(nats_server: NatsServer) -> None:
    async with _puller(nats_server.url, batch=16, expires=5.0) as (puller, js):
        assert await puller.next_batch(timeout=0.2) == []  # a pull is open
        await js.delete_consumer("P", "c")
        with anyio.fail_after(5), pytest.raises(ConsumerGone):
            while True:
                await puller.next_batch(timeout=0.2)


async def test_a_consumer_lost_with_a_restarted_server_is_reported_without_spinning(nats_server: NatsServer) -> None:
    """A partition's consumer keeps its state in memory: after a restart of an R1 server it no
    longer exists, and a pull gets 503 (no responders) at once. The reader asks the server,
    which says the consumer does not exist, and reports it gone at once, without spinning."""
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="P", subjects=["p.>"], storage=StorageType.FILE))
    await js.add_consumer("P", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.ALL, mem_storage=True))
    puller = RawPuller(nc, "P", "c", batch=16, expires=0.5, gone_after=30.0)
    await puller.start()
    pulls = 0
    publish = nc.publish

    async def counting(subject: str, *args: Any, **kw: Any) -> None:
        nonlocal pulls
        pulls += subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")
        await publish(subject, *args, **kw)

    nc.publish = counting  # type: ignore[method-assign]
    try:
        assert await puller.next_batch(timeout=0.2) == []
        nats_server.kill()
        async with start_nats(nats_server.store_dir, port=nats_server.port):
            with anyio.fail_after(20):
                while not nc.is_connected or "P" not in [s.config.name for s in await js.streams_info()]:
                    await anyio.sleep(0.1)
            pulls = 0
            started = anyio.current_time()
            with anyio.fail_after(15), pytest.raises(ConsumerGone, match="consumer not found"):  # before gone_after
                while True:
                    await puller.next_batch(timeout=0.2)
            took = anyio.current_time() - started
            assert took < 5
            assert pulls <= took / 0.25 + 3  # paced: one pull a quarter second, not a pull per status
    finally:
        await puller.stop()
        await nc.close()
