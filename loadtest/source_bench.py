"""Source stage (hop A) benchmark: throughput and commit-to-stream latency.

Starts an embedded Postgres (default durability settings) and nats-server, and runs the source
as its own process (``tocsin run source``), so the figures are the source's, not this process's.

1. Throughput, backlog: N rows are committed in T-row transactions while the source is stopped;
   then the source starts and the time from its first to its last PubAck gives rows/s.
2. Throughput, live: N rows committed as fast as one connection can while the source runs; rows/s
   from the first commit to the PubAck of the last row.
3. Latency at R rows/s: R/100 rows committed every 10 ms for S seconds; per row, the JetStream
   message timestamp minus the Postgres commit timestamp (same host clock); p50/p99/max.

Targets: >= 15,000 rows/s; p99 < 50 ms at 1,000 rows/s.
Run: ``.venv/bin/python -m loadtest.source_bench``
(defaults: ``--rows 200000 --txn-rows 1000 --rate 1000 --seconds 10 --partitions 16``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import asyncpg
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.messages import Event, decode
from pipeline.foundation.embedded import start_nats, start_postgres
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.subjects import EVENTS
from stages.source.emit import migrate

__all__ = ["main"]

_INSERT = ("INSERT INTO events (org_id, resource_kind, resource_name, reason) "
           "SELECT 'org' || (g % 97), 'Device', 'd' || g, 'Tick' FROM generate_series(1, $1) g")


def _source(nats_url: str, dsn: str, log: Path, partitions: int) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.application.cli", "run", "source", "--nats-url", nats_url,
             "--postgres-dsn", dsn, "--partitions", str(partitions), "--replica", "bench",
             "--storage.path", str(log.parent / "source"), "--log.level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    while proc.poll() is None:
        await anyio.sleep(0.05)


async def _count(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(EVENTS.stream, subjects_filter=f"{EVENTS.prefix}.out.>")
    return sum((info.state.subjects or {}).values())


async def _wait_count(nc: NATS, n: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while await _count(nc) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {n} events")
        await anyio.sleep(0.02)


async def _read(nc: NATS, start_seq: int) -> list[tuple[Event, float]]:
    """(event, stream timestamp) of every event from ``start_seq`` on."""
    js = nc.jetstream()
    psub = await js.pull_subscribe(f"{EVENTS.prefix}.out.>", durable=None, stream=EVENTS.stream,
                                   config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                                         opt_start_seq=start_seq, ack_policy=AckPolicy.NONE,
                                                         inactive_threshold=30.0))
    pending = (await psub.consumer_info()).num_pending or 0
    out: list[tuple[Event, float]] = []
    while len(out) < pending:
        for m in await psub.fetch(min(10000, pending - len(out)), timeout=10):
            ev = decode(m.data)
            assert isinstance(ev, Event)
            out.append((ev, m.metadata.timestamp.timestamp()))
    await psub.unsubscribe()
    return out


async def _last_seq(nc: NATS) -> int:
    return int((await nc.jetstream().stream_info(EVENTS.stream)).state.last_seq)


async def run(rows: int, txn_rows: int, rate: int, seconds: float, partitions: int,
              data_dir: str | None) -> None:
    with tempfile.TemporaryDirectory(dir=data_dir) as d:
        tmp = Path(d)
        async with start_postgres(tmp / "pg") as pg, start_nats(tmp / "nats") as ns:
            nc = await connect(ns.url)
            await ensure_stream(nc.jetstream(), EVENTS)
            await migrate(pg.dsn)
            conn = await asyncpg.connect(pg.dsn)
            log = tmp / "source.log"

            procs: list[subprocess.Popen[bytes]] = []
            try:
                # Create the slot, then stop the source and let a backlog build up.
                proc = _source(ns.url, pg.dsn, log, partitions)
                procs.append(proc)
                while not await conn.fetchval("SELECT count(*) FROM pg_replication_slots"):
                    await anyio.sleep(0.05)
                await conn.execute(_INSERT, 1)
                await _wait_count(nc, 1, timeout=60)
                await _stop(proc)
                base = await _count(nc)
                for _ in range(rows // txn_rows):
                    await conn.execute(_INSERT, txn_rows)
                first_seq = await _last_seq(nc) + 1
                proc = _source(ns.url, pg.dsn, log, partitions)
                procs.append(proc)
                await _wait_count(nc, base + rows)
                stamps = [t for _, t in await _read(nc, first_seq)]
                backlog_rate = rows / (max(stamps) - min(stamps))

                # Live: commit as fast as one connection can while the source runs.
                base = await _count(nc)
                first_seq = await _last_seq(nc) + 1
                t_first = time.time()
                for _ in range(rows // txn_rows):
                    await conn.execute(_INSERT, txn_rows)
                commit_rate = rows / (time.time() - t_first)
                await _wait_count(nc, base + rows)
                live = await _read(nc, first_seq)
                first_commit = min(ev.committed_at for ev, _ in live)
                live_rate = rows / (max(t for _, t in live) - first_commit)

                # Latency at a steady rate: rate/100 rows every 10 ms.
                base = await _count(nc)
                first_seq = await _last_seq(nc) + 1
                per_tick = max(1, rate // 100)
                ticks = int(seconds * 100)
                t0 = time.monotonic()
                for i in range(ticks):
                    await conn.execute(_INSERT, per_tick)
                    delay = t0 + (i + 1) * 0.01 - time.monotonic()
                    if delay > 0:
                        await anyio.sleep(delay)
                await _wait_count(nc, base + per_tick * ticks)
                lat = sorted((t - ev.committed_at) * 1000 for ev, t in await _read(nc, first_seq))
                p50 = statistics.median(lat)
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

                await _stop(proc)
                await conn.close()
                await nc.close()
            finally:
                for p in procs:  # never leave a source behind, whatever happened
                    if p.poll() is None:
                        p.kill()

    print("command: .venv/bin/python -m loadtest.source_bench "
          f"--rows {rows} --txn-rows {txn_rows} --rate {rate} --seconds {seconds:g} "
          f"--partitions {partitions}" + (f" --data-dir {data_dir}" if data_dir else ""))
    print(f"throughput, backlog of {rows} rows in {txn_rows}-row transactions: {backlog_rate:,.0f} rows/s "
          "(first to last PubAck)")
    print(f"throughput, live: {live_rate:,.0f} rows/s from first commit to last PubAck "
          f"(the inserting connection committed {commit_rate:,.0f} rows/s)")
    print(f"latency at {per_tick * 100} rows/s for {seconds:g}s ({len(lat)} rows), commit to stream: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms")
    print(f"targets: >= 15,000 rows/s -> {'met' if min(backlog_rate, live_rate) >= 15000 else 'MISSED'}; "
          f"p99 < 50 ms -> {'met' if p99 < 50 else 'MISSED'}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m loadtest.source_bench", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--txn-rows", type=int, default=1000)
    p.add_argument("--rate", type=int, default=1000, help="rows/s of the latency phase")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--data-dir", default=None,
                   help="where the servers keep their data (default: the system temp dir); "
                        "/dev/shm takes disk sync latency out of the figures")
    a = p.parse_args()
    anyio.run(run, a.rows, a.txn_rows, a.rate, a.seconds, a.partitions, a.data_dir)


if __name__ == "__main__":
    main()
