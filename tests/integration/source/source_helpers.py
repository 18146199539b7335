"""Helpers for the source tests: insert rows, run source processes, read EVENTS back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.messages import DeadLetter, Event, decode
from pipeline.foundation.runtime.subjects import EVENTS
from stages.source.config import SourceConfig
from stages.source.service import SourceService

__all__ = [
    "Received",
    "count_events",
    "SourceProcess",
    "active_replica",
    "insert_rows",
    "read_events",
    "running_service",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[3]


async def insert_rows(conn: asyncpg.Connection, n: int, *, org_mod: int = 7, tag: str = "Tick") -> list[int]:
    """Insert ``n`` rows in one transaction (one statement); return their ids in insertion order."""
    rows = await conn.fetch(
        "INSERT INTO events (org_id, resource_kind, resource_name, reason) "
        "SELECT 'org' || (g % $2), 'Device', 'd' || g, $3 FROM generate_series(1, $1) g RETURNING id",
        n, org_mod, tag)
    return [int(r[0]) for r in rows]


@dataclass
class Received:
    subject: str
    seq: int
    msg_id: str
    message: Event | DeadLetter

    @property
    def event(self) -> Event:
        assert isinstance(self.message, Event), self.message
        return self.message


async def read_events(nc: NATS, subject: str = f"{EVENTS.prefix}.>") -> list[Received]:
    """Every event and dead letter in EVENTS (checkpoints left out), in stream order."""
    js = nc.jetstream()
    psub = await js.pull_subscribe(subject, durable=None, stream=EVENTS.stream,
                                   config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                         ack_policy=AckPolicy.NONE, inactive_threshold=30.0))
    try:
        pending = (await psub.consumer_info()).num_pending or 0
        out: list[Received] = []
        seen = 0
        while seen < pending:
            for m in await psub.fetch(min(5000, pending - seen), timeout=10):
                seen += 1
                if ".source." in m.subject:
                    continue
                msg = decode(m.data)
                assert isinstance(msg, Event | DeadLetter), msg
                msg_id = (m.headers or {}).get("Nats-Msg-Id", "")
                out.append(Received(m.subject, m.metadata.sequence.stream, msg_id, msg))
        return out
    finally:
        await psub.unsubscribe()


async def count_events(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(EVENTS.stream, subjects_filter=f"{EVENTS.prefix}.out.>")
    return sum((info.state.subjects or {}).values())


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took; fail with ``what`` after ``timeout``."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await anyio.sleep(0.05)
    return time.monotonic() - t0


async def active_replica(dsn: str) -> str | None:
    """The replica streaming (from pg_stat_replication's application_name), if any."""
    conn = await asyncpg.connect(dsn)
    try:
        names = await conn.fetch("SELECT application_name FROM pg_stat_replication "
                                 "WHERE application_name LIKE 'tocsin-source-%'")
    finally:
        await conn.close()
    return names[0][0].removeprefix("tocsin-source-") if names else None


class SourceProcess:
    """``tocsin run source`` as a child process (for SIGKILL tests); its source settings
    (``status_interval``) in a Tocsin settings file of its own."""

    def __init__(self, nats_url: str, dsn: str, tmp: Path, replica: str, *, partitions: int = 4,
                 status_interval: float = 1.0) -> None:
        storage = tmp / f"source-{replica}"
        storage.mkdir(parents=True, exist_ok=True)
        settings = storage / "tocsin.yml"
        settings.write_text(f"source:\n  status_interval: {status_interval!r}\n", encoding="utf-8")
        self.args = [sys.executable, "-m", "pipeline.application.cli", "run", "source", "--nats-url", nats_url,
                     "--postgres-dsn", dsn, "--partitions", str(partitions), "--replica", replica,
                     "--storage.path", str(storage), "--tocsin.config.file", str(settings),
                     "--log.level", "info"]
        self.replica = replica
        self.log = tmp / f"source-{replica}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@asynccontextmanager
async def running_service(nc: NATS, dsn: str, config: SourceConfig | None = None, *, partitions: int = 4,
                          **kwargs: object) -> AsyncIterator[SourceService]:
    """A source service in this process; drained on exit, or cancelled like a crash with ``svc.crash()``."""
    svc = SourceService(nc, nc.jetstream(), dsn=dsn, config=config, partitions=partitions,
                        **kwargs)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(svc.run)
        try:
            yield svc
        finally:
            with anyio.move_on_after(15, shield=True):
                await svc.drain()
            tg.cancel_scope.cancel()


def decode_json(data: bytes) -> dict[str, object]:
    return msgspec.json.decode(data)
