"""Hop A across failures: a standby takes over a SIGKILLed source; Postgres and nats-server restart
mid-stream; in each case every committed row is in the stream exactly once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest
from nats.aio.client import Client as NATS

from pipeline.foundation.embedded import EmbeddedError, NatsServer, PostgresServer, start_nats, start_postgres
from pipeline.foundation.runtime.jetstream import connect
from stages.source.emit import migrate
from tests.integration.source.source_helpers import (
    SourceProcess,
    active_replica,
    count_events,
    insert_rows,
    read_events,
    running_service,
    wait_until,
)

pytestmark = pytest.mark.integration

PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


async def has_events(nc: NATS, n: int) -> bool:
    return await count_events(nc) >= n


async def assert_stream_matches_table(nc: NATS, dsn: str) -> None:
    """The table is the oracle: rows whose commit was lost in a Postgres crash were never streamed."""
    conn = await asyncpg.connect(dsn)
    try:
        in_table = sorted(int(r[0]) for r in await conn.fetch("SELECT id FROM events"))
    finally:
        await conn.close()
    await wait_until(lambda: has_events(nc, len(in_table)), 30, f"{len(in_table)} events")
    await anyio.sleep(0.5)
    ids = [int(r.event.id) for r in await read_events(nc)]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates"
    assert sorted(ids) == in_table
    assert ids == sorted(ids), "out of commit order"  # one inserting session: ids follow commit order


async def test_source_standby_takes_over_within_10s_of_sigkill(
        nats_server: NatsServer, postgres_server: PostgresServer, tmp_path: Path) -> None:
    await migrate(postgres_server.dsn)
    sources = {name: SourceProcess(nats_server.url, postgres_server.dsn, tmp_path, name)
               for name in ("a", "b")}
    for s in sources.values():
        s.start()
    nc = await connect(nats_server.url)
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        await wait_until(lambda: _streaming(postgres_server.dsn), 30, "a streaming replica")
        first = await active_replica(postgres_server.dsn)
        assert first in sources
        ids = await insert_rows(conn, 300)
        await wait_until(lambda: has_events(nc, 300), 10, "300 events")
        sources[first].kill()
        killed_at = time.monotonic()
        ids += await insert_rows(conn, 300)
        await wait_until(lambda: has_events(nc, 600), 15, "600 events after the takeover")
        took = time.monotonic() - killed_at
        assert took < 10, f"takeover took {took:.1f}s"
        assert await active_replica(postgres_server.dsn) == ({"a", "b"} - {first}).pop()
        await anyio.sleep(0.5)
        received = [int(r.event.id) for r in await read_events(nc)]
        assert received == ids
    finally:
        for s in sources.values():
            s.stop()
        await conn.close()
        await nc.close()


async def _streaming(dsn: str) -> bool:
    return await active_replica(dsn) is not None


class Inserter:
    """Inserts 100-row transactions every 20 ms until stopped, riding out a Postgres restart."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.committed = 0
        self.failures = 0
        self.stop = False

    async def run(self) -> None:
        conn: asyncpg.Connection | None = None
        while not self.stop:
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.dsn, timeout=2)
                self.committed += len(await insert_rows(conn, 100))
            except Exception:  # the server went away mid-statement: any asyncpg error, reconnect
                self.failures += 1
                if conn is not None:
                    conn.terminate()
                conn = None
                await anyio.sleep(0.1)
            await anyio.sleep(0.02)
        if conn is not None:
            await conn.close()


async def test_source_survives_a_postgres_restart_mid_stream(
        nats_server: NatsServer, postgres_server: PostgresServer, tmp_path: Path) -> None:
    await migrate(postgres_server.dsn)
    nc = await connect(nats_server.url)
    inserter = Inserter(postgres_server.dsn)
    try:
        async with running_service(nc, postgres_server.dsn) as svc, anyio.create_task_group() as tg:
            await wait_until(lambda: _active(svc), 10, "the source to stream")
            tg.start_soon(inserter.run)
            await wait_until(lambda: has_events(nc, 1000), 10, "1000 events before the restart")
            postgres_server.kill()
            await anyio.sleep(0.5)
            async with _restart_postgres(postgres_server):
                await wait_until(lambda: _committed_since(inserter, 1000), 30, "inserts after the restart")
                inserter.stop = True
                assert inserter.failures > 0
                await assert_stream_matches_table(nc, postgres_server.dsn)
                await svc.drain()
    finally:
        inserter.stop = True
        await nc.close()


async def _active(svc: object) -> bool:
    return bool(svc.active)  # type: ignore[attr-defined]


async def _committed_since(inserter: Inserter, n: int) -> bool:
    if not hasattr(inserter, "mark"):
        inserter.mark = inserter.committed  # type: ignore[attr-defined]
    return inserter.committed - inserter.mark >= n  # type: ignore[attr-defined]


@asynccontextmanager
async def _restart_postgres(server: PostgresServer) -> AsyncIterator[PostgresServer]:
    """start_postgres on the same data dir and port; retried while the old backends exit."""
    deadline = time.monotonic() + 30
    async with AsyncExitStack() as stack:
        while True:
            try:
                restarted = await stack.enter_async_context(
                    start_postgres(server.data_dir, port=server.port, settings=PG_SETTINGS))
                break
            except EmbeddedError:
                if time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.5)
        yield restarted


async def test_source_survives_a_nats_restart_mid_stream(
        nats_server: NatsServer, postgres_server: PostgresServer) -> None:
    await migrate(postgres_server.dsn)
    nc = await connect(nats_server.url)
    inserter = Inserter(postgres_server.dsn)
    try:
        async with running_service(nc, postgres_server.dsn) as svc, anyio.create_task_group() as tg:
            await wait_until(lambda: _active(svc), 10, "the source to stream")
            tg.start_soon(inserter.run)
            await wait_until(lambda: has_events(nc, 1000), 10, "1000 events before the restart")
            nats_server.kill()
            await anyio.sleep(1.0)
            async with start_nats(nats_server.store_dir, port=nats_server.port):
                await wait_until(lambda: _committed_since(inserter, 1000), 30, "inserts after the restart")
                inserter.stop = True
                await assert_stream_matches_table(nc, postgres_server.dsn)
                await svc.drain()
    finally:
        inserter.stop = True
        await nc.close()
