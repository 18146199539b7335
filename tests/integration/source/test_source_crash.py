"""Hop A under SIGKILL: 50,000 rows in random-size transactions while the source process is killed
and restarted at random moments; every row is in the stream exactly once, in commit order."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import anyio
import asyncpg
import pytest

from contracts.messages import Event
from pipeline.foundation.embedded import NatsServer, PostgresServer
from pipeline.foundation.runtime.jetstream import connect
from stages.source.emit import migrate
from stages.source.pgoutput import parse_lsn
from tests.integration.source.source_helpers import SourceProcess, count_events, read_events, wait_until

pytestmark = pytest.mark.integration

TOTAL = 50_000


def check_exactly_once_in_order(received: list, inserted: list[int]) -> None:
    events = [r for r in received if isinstance(r.message, Event)]
    ids = [int(r.event.id) for r in events]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate events"
    assert sorted(ids) == sorted(inserted), (
        f"missing {len(set(inserted) - set(ids))}, unexpected {len(set(ids) - set(inserted))}")
    # Commit order: commit LSNs never go back; inside a transaction, rows keep their order and
    # message ids count 0, 1, 2, ... across however many batches and restarts.
    position = [(parse_lsn(r.event.lsn), int(r.event.id)) for r in events]
    assert position == sorted(position), "events out of commit order"
    expected_index: dict[str, int] = {}
    for r in events:
        lsn, index = r.msg_id.rsplit(":", 1)
        assert lsn == r.event.lsn
        assert int(index) == expected_index.get(lsn, 0), f"gap or repeat in transaction {lsn} at {index}"
        expected_index[lsn] = int(index) + 1


async def test_source_sigkill_restarts_exactly_once_in_commit_order(
        nats_server: NatsServer, postgres_server: PostgresServer, tmp_path: Path) -> None:
    rng = random.Random(20240611)
    await migrate(postgres_server.dsn)
    source = SourceProcess(nats_server.url, postgres_server.dsn, tmp_path, "crashy")
    source.start()
    nc = await connect(nats_server.url)
    conn = await asyncpg.connect(postgres_server.dsn)
    inserted: list[int] = []
    kills = 0
    try:
        # Rows committed before the slot exists are not in it: start inserting once it does.
        await wait_until(lambda: _slot_exists(conn), 30, "the replication slot")
        async def insert_all() -> None:
            while len(inserted) < TOTAL:
                n = min(TOTAL - len(inserted), rng.choice([rng.randint(1, 50), rng.randint(1, 3000)]))
                rows = await conn.fetch(
                    "INSERT INTO events (org_id, resource_kind, resource_name, reason) "
                    "SELECT 'org' || (g % 11), 'Device', 'd' || g, 'Tick' FROM generate_series(1, $1) g "
                    "RETURNING id", n)
                inserted.extend(int(r[0]) for r in rows)
                await anyio.sleep(rng.uniform(0, 0.25))

        async with anyio.create_task_group() as tg:
            tg.start_soon(insert_all)
            while len(inserted) < TOTAL or kills < 3:
                # Kill a source that streams (a process start takes a second or more), at a random moment.
                await wait_until(functools.partial(_streamed, source, kills + 1), 60, "the restarted source streaming")
                await anyio.sleep(rng.uniform(0.3, 1.5))
                source.kill()
                kills += 1
                await anyio.sleep(rng.uniform(0, 0.3))
                source.start()
        with anyio.move_on_after(30):
            await wait_until(lambda: _count_is(nc, TOTAL), 30, f"{TOTAL} events")
        await anyio.sleep(1.0)  # anything extra would show up now
        received = await read_events(nc)
        assert kills >= 3
        check_exactly_once_in_order(received, inserted)
    finally:
        source.stop()
        await conn.close()
        await nc.close()


async def _streamed(source: SourceProcess, starts: int) -> bool:
    """The source process has started streaming ``starts`` times (its log says so once per start)."""
    return source.output().count("streaming slot") >= starts


async def _count_is(nc: object, n: int) -> bool:
    return await count_events(nc) >= n  # type: ignore[arg-type]


async def _slot_exists(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tocsin'"))
