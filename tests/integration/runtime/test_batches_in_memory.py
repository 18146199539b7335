"""The embedded nats-server stages atomic batches of R1 file streams in memory: a batch is
staged under the tmpfs place while it is open, commits, survives a server restart (the
server removes the link at start; it is made again), and the place is removed at the end."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
from nats.aio.client import Client as NATS

from pipeline.foundation.embedded import memory_dir, start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_stream, publish_atomic
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import BatchMsg

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(memory_dir() is None, reason="no writable tmpfs at /dev/shm on this machine")]

NAMES = StreamNames("staging")


async def _linked(batches: Path, timeout: float = 10.0) -> Path:
    with anyio.fail_after(timeout):
        while not batches.is_symlink():
            await anyio.sleep(0.05)
    return batches.resolve()


async def _count(nc: NATS) -> int:
    return int((await nc.jetstream().stream_info(NAMES.stream)).state.messages)


async def test_batches_are_staged_in_memory_across_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    batches = store / "jetstream" / "$G" / "streams" / NAMES.stream / "batches"
    async with start_nats(store) as server:
        nc = await connect(server.url)
        await ensure_stream(nc.jetstream(), NAMES)
        place = await _linked(batches)
        assert str(place).startswith(str(memory_dir()))

        # An open batch: its staged store is in memory, and nothing is stored until the commit.
        batch_id = uuid.uuid4().hex
        for i in range(1, 4):
            await nc.publish(NAMES.out(0, "x"), b"m", headers={"Nats-Batch-Id": batch_id,
                                                               "Nats-Batch-Sequence": str(i)})
        await nc.flush()
        with anyio.fail_after(5):
            while not any(place.iterdir()):
                await anyio.sleep(0.02)
        assert await _count(nc) == 0
        reply = await nc.request(NAMES.out(0, "x"), b"m", timeout=5, headers={
            "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "4", "Nats-Batch-Commit": "1"})
        assert b'"seq":4' in reply.data.replace(b" ", b"")
        assert await _count(nc) == 4
        with anyio.fail_after(5):
            while any(place.iterdir()):  # the server deletes the staged store after the commit
                await anyio.sleep(0.02)
        await nc.close()

        server.kill()
        async with start_nats(store, port=server.port) as again:
            assert await _linked(batches) == place
            nc = await connect(again.url)
            assert await _count(nc) == 4
            await publish_atomic(nc, [BatchMsg(NAMES.out(0, "y"), b"n") for _ in range(10)])
            assert await _count(nc) == 14
            assert batches.is_symlink()
            await nc.close()
    assert not place.exists()  # removed with the last server on the store
