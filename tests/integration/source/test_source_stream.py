"""Hop A in one process against real Postgres and nats-server: split transactions resumed exactly,
schema changes, update/delete, dead letters, wal_level, readiness of a standby."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import asyncpg
import pytest
from nats.aio.client import Client as NATS

from contracts.messages import DeadLetter, Event
from pipeline.foundation.embedded import NatsServer, PostgresServer, start_postgres
from pipeline.foundation.runtime.jetstream import connect, publish_atomic
from pipeline.foundation.runtime.wire import BatchMsg
from stages.source.config import SourceConfig
from stages.source.core import DLQ_SUBJECT
from stages.source.emit import migrate
from stages.source.mapping import TableMapping
from stages.source.replication import SetupError
from stages.source.service import SourceService
from stages.source.session import read_checkpoint
from tests.integration.source.source_helpers import (
    count_events,
    insert_rows,
    read_events,
    running_service,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def pg(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    await migrate(postgres_server.dsn)
    conn = await asyncpg.connect(postgres_server.dsn)
    yield conn
    await conn.close()


async def has_events(nc: NATS, n: int) -> bool:
    return await count_events(nc) >= n


class Recorder:
    """publish_atomic that records batches; after ``crash_after`` batches it hangs, like a process
    frozen right before its next publish (the test then cancels everything: a crash)."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.batches: list[list[BatchMsg]] = []
        self.crash_after = crash_after
        self.crashed = anyio.Event()

    async def __call__(self, nc: NATS, msgs: Sequence[BatchMsg]) -> int:
        if self.crash_after is not None and len(self.batches) >= self.crash_after:
            self.crashed.set()
            await anyio.sleep_forever()
        seq = await publish_atomic(nc, msgs)
        self.batches.append(list(msgs))
        return seq


async def test_source_split_transaction_resumes_after_its_last_published_part(
        nc: NATS, pg: asyncpg.Connection, postgres_server: PostgresServer) -> None:
    first = Recorder(crash_after=2)
    svc = SourceService(nc, nc.jetstream(), dsn=postgres_server.dsn, partitions=4, publish=first)
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        ids = await insert_rows(pg, 5000)
        with anyio.fail_after(20):
            await first.crashed.wait()
        tg.cancel_scope.cancel()  # no drain: the process "dies" between two parts
    assert [len(b) for b in first.batches] == [1000, 1000]
    cp = await read_checkpoint(nc.jetstream(), "tocsin")
    assert cp is not None and cp.next_index == 1998 and not cp.complete

    second = Recorder()
    async with running_service(nc, postgres_server.dsn, publish=second):
        await wait_until(lambda: has_events(nc, 5000), 20, "5000 events")
        await anyio.sleep(0.5)
    received = await read_events(nc)
    assert sorted(int(r.event.id) for r in received) == ids
    lsn = received[0].event.lsn
    assert [r.msg_id for r in received] == [f"{lsn}:{i}" for i in range(5000)]
    # The restart published exactly the parts that were missing: 1998.. in batches of 999 + checkpoint.
    assert [len(b) for b in second.batches] == [1000, 1000, 1000, 6]
    assert second.batches[0][0].headers is not None
    assert second.batches[0][0].headers["Nats-Msg-Id"] == f"{lsn}:1998"
    assert abs(float(second.batches[0][0].headers["Tocsin-Time"]) - time.time()) < 300  # the commit's time
    for batch in second.batches:
        assert batch[-1].subject == "tocsin.events.source.tocsin"
        assert batch[-1].headers == {"Nats-Rollup": "sub"}
    cp = await read_checkpoint(nc.jetstream(), "tocsin")
    assert cp is not None and cp.complete and cp.next_index == 5000 and cp.commit_lsn == lsn


async def test_source_column_added_while_streaming(nc: NATS, pg: asyncpg.Connection,
                                                   postgres_server: PostgresServer) -> None:
    async with running_service(nc, postgres_server.dsn):
        before = await insert_rows(pg, 100)
        await wait_until(lambda: has_events(nc, 100), 10, "the first 100 events")
        await pg.execute("ALTER TABLE events ADD COLUMN region text NOT NULL DEFAULT 'eu'")
        after = await insert_rows(pg, 100)
        async with pg.transaction():
            await pg.execute("ALTER TABLE events DROP COLUMN region")
            last = await insert_rows(pg, 10)
        await wait_until(lambda: has_events(nc, 210), 10, "210 events")
        await anyio.sleep(0.3)
    received = await read_events(nc)
    assert [int(r.event.id) for r in received] == before + after + last


@pytest.mark.parametrize(
    ("identity", "ops", "expected"),
    [
        ("FULL", ["insert", "update", "delete"], [("insert", "a"), ("update", "b"), ("delete", "b")]),
        ("DEFAULT", ["insert", "update"], [("insert", "a"), ("update", "b")]),
        ("FULL", ["update"], [("update", "b")]),
        ("DEFAULT", ["insert", "delete"], "REPLICA IDENTITY FULL"),
    ],
    ids=["full-identity-all-ops", "default-identity-updates", "only-updates", "deletes-need-full-identity"],
)
async def test_source_update_and_delete(nc: NATS, pg: asyncpg.Connection, postgres_server: PostgresServer,
                                        identity: str, ops: list, expected: list | str) -> None:
    await pg.execute(f"ALTER TABLE events REPLICA IDENTITY {identity}")
    config = SourceConfig(tables=[TableMapping(ops=ops)])
    if isinstance(expected, str):
        svc = SourceService(nc, nc.jetstream(), dsn=postgres_server.dsn, config=config)
        with pytest.raises(SetupError, match=expected):
            await svc.run()
        return
    async with running_service(nc, postgres_server.dsn, config):
        row_id = await pg.fetchval(
            "INSERT INTO events (org_id, resource_kind, resource_name, reason, message) "
            "VALUES ('acme', 'Device', 'd1', 'Tick', 'a') RETURNING id")
        await pg.execute("UPDATE events SET message = 'b' WHERE id = $1", row_id)
        await pg.execute("DELETE FROM events WHERE id = $1", row_id)
        await wait_until(lambda: has_events(nc, len(expected)), 10, f"{len(expected)} events")
        await anyio.sleep(0.3)
    received = [r.message for r in await read_events(nc)]
    assert [(e.op, e.message) for e in received if isinstance(e, Event)] == expected
    assert all(isinstance(e, Event) and e.reason == "Tick" and e.id == str(row_id) for e in received)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("fields", "'[1, 2]'::jsonb", "fields_column"),
        ("org_id", "''", "org_column"),
        ("resource_name", "''", "resource_name_column"),
    ],
    ids=["fields-not-an-object", "empty-org", "empty-resource-name"],
)
async def test_source_bad_row_goes_to_dead_letters_in_the_same_batch(
        nc: NATS, pg: asyncpg.Connection, postgres_server: PostgresServer, column: str, value: str,
        reason: str) -> None:
    recorder = Recorder()
    async with running_service(nc, postgres_server.dsn, publish=recorder):
        async with pg.transaction():
            good = await insert_rows(pg, 1)
            cols = {"org_id": "'acme'", "resource_kind": "'Device'", "resource_name": "'d1'",
                    "reason": "'Tick'", column: value}
            bad = await pg.fetchval(f"INSERT INTO events ({', '.join(cols)}) "
                                    f"VALUES ({', '.join(cols.values())}) RETURNING id")
        await wait_until(lambda: _dead_letters(nc, 1), 10, "the dead letter")
    received = await read_events(nc)
    assert len(received) == 2
    event, letter = received[0].message, received[1].message
    assert isinstance(event, Event) and event.id == str(good[0])
    assert isinstance(letter, DeadLetter)
    assert received[1].subject == DLQ_SUBJECT
    assert (letter.stage, letter.table, letter.key) == ("source", "public.events", str(bad))
    assert reason in letter.reason
    assert [r.msg_id for r in received] == [f"{event.lsn}:0", f"{event.lsn}:1"]
    assert len(recorder.batches) == 1 and len(recorder.batches[0]) == 3  # event, dead letter, checkpoint


async def _dead_letters(nc: NATS, n: int) -> bool:
    info = await nc.jetstream().stream_info("TOCSIN_EVENTS", subjects_filter=DLQ_SUBJECT)
    return info.state.messages >= n and sum((info.state.subjects or {}).values()) >= n


async def test_source_events_carry_a_fresh_w3c_traceparent(nc: NATS, pg: asyncpg.Connection,
                                                          postgres_server: PostgresServer) -> None:
    async with running_service(nc, postgres_server.dsn):
        await insert_rows(pg, 20)
        await wait_until(lambda: has_events(nc, 20), 10, "20 events")
    parents = [r.event.trace.get("traceparent", "") for r in await read_events(nc)]
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", p) for p in parents), parents[:3]
    assert len({p.split("-")[1] for p in parents}) == 20  # one trace per row


async def test_source_standby_is_ready_and_only_one_replica_streams(nc: NATS, pg: asyncpg.Connection,
                                                                    postgres_server: PostgresServer) -> None:
    async with running_service(nc, postgres_server.dsn, replica="one") as one, \
            running_service(nc, postgres_server.dsn, replica="two") as two:
        await wait_until(lambda: _any_active(one, two), 10, "an active replica")
        await anyio.sleep(2.5)  # the standby has polled the lock a few times by now
        assert one.ready and two.ready
        assert [one.active, two.active].count(True) == 1
        ids = await insert_rows(pg, 50)
        await wait_until(lambda: has_events(nc, 50), 10, "50 events")
        await anyio.sleep(0.3)
    assert [int(r.event.id) for r in await read_events(nc)] == ids


async def _any_active(*services: SourceService) -> bool:
    return any(s.active for s in services)


async def test_source_refuses_wal_level_replica_with_how_to_fix_it(nc: NATS, tmp_path: Path) -> None:
    settings = {"wal_level": "replica", "fsync": "off"}
    async with start_postgres(tmp_path / "pg-replica", settings=settings) as server:
        svc = SourceService(nc, nc.jetstream(), dsn=server.dsn)
        with pytest.raises(SetupError) as info:
            await svc.run()
    message = str(info.value)
    assert "wal_level = replica" in message
    assert "ALTER SYSTEM SET wal_level = logical" in message
    assert "restart" in message
