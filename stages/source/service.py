"""The source stage as a service: set Postgres up, elect one reader per slot, stream, reconnect, drain.

More than one replica may run. Each takes a session-level advisory lock keyed by the slot name
(``pg_try_advisory_lock`` on an ordinary connection) before it opens the replication
connection; the others are standbys polling the lock every ``lock_poll`` seconds. Postgres
releases the lock when the holder's connection dies, so a standby takes over within a
second or two of the holder's death (Postgres itself also refuses a second reader of an
active slot). A standby is ready (healthy) too: it is doing its job.

Failures of Postgres or NATS end the session; the service reconnects with exponential backoff
and resumes from the checkpoint in the stream. Setup problems that retrying cannot fix
(``wal_level``, a publication missing a table, a mapping that does not fit the table) raise
:class:`~stages.source.replication.SetupError` with what to change.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from pipeline.foundation.runtime.jetstream import ensure_stream, publish_atomic
from pipeline.foundation.runtime.subjects import EVENTS
from stages.source.config import SourceConfig, load_source_config
from stages.source.core import TraceFn
from stages.source.mapping import validate_mapping
from stages.source.metrics import source_metrics
from stages.source.migrate import apply_schema
from stages.source.pgoutput import Column
from stages.source.replication import (
    SetupError,
    check_wal_level,
    ensure_publication,
    ensure_slot,
    lock_key,
    table_columns,
    try_lock,
)
from stages.source.session import PublishFn, SourceSession

__all__ = ["SourceOptions", "SourceService", "build_source", "setup_postgres"]

log = logging.getLogger("tocsin.source")


@dataclass(frozen=True)
class SourceOptions:
    """What the application hands the source stage."""

    dsn: str
    partitions: int
    config: SourceConfig | Mapping[str, Any] | None = None  # tocsin.source (None: the defaults)
    replica: str | None = None
    stream_replicas: int = 1


def build_source(nc: NATS, js: JetStreamContext, options: SourceOptions) -> SourceService:
    """The source stage of a Tocsin process."""
    if not options.dsn:
        raise ValueError("the source stage needs a Postgres DSN")
    return SourceService(nc, js, dsn=options.dsn, config=load_source_config(options.config),
                         partitions=options.partitions, replica=options.replica,
                         stream_replicas=options.stream_replicas)


def _setup_error(exc: BaseException) -> SetupError | None:
    """The SetupError inside ``exc`` (task groups wrap errors in exception groups)."""
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _setup_error(inner)
            if found is not None:
                return found
    return None


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an error, or of each error inside an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}".strip()


def _retryable(exc: BaseException) -> bool:
    """Connection trouble (retry) as opposed to a statement Postgres refused (fatal at setup)."""
    return isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
                      | asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError)


async def setup_postgres(conn: Any, config: SourceConfig) -> None:
    """Check wal_level; apply the schema (``config.migrate``); check every table against its mapping;
    create the publication and the slot when missing (and allowed). Idempotent; serialised between
    replicas by an advisory lock."""
    await check_wal_level(conn)
    setup_key = lock_key(f"{config.slot}/setup")
    await conn.execute("SELECT pg_advisory_lock($1::bigint)", setup_key)
    try:
        if config.migrate:
            await apply_schema(conn)
        for t in config.tables:
            info = await table_columns(conn, t)
            if info is None:
                raise SetupError(f"table {t.qualified_name} does not exist (source.tables)")
            columns, identity = info
            problems = validate_mapping(t, [Column(0, name, oid, -1) for name, oid in columns])
            if "delete" in t.ops and identity != "f":
                problems.append(f"table {t.qualified_name}: ops include delete but deleted rows carry only "
                                f"the key; run ALTER TABLE {t.qualified_name} REPLICA IDENTITY FULL")
            if problems:
                raise SetupError("; ".join(problems))
        await ensure_publication(conn, config.publication, config.tables, create=config.create_publication)
        await ensure_slot(conn, config.slot, create=config.create_slot)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1::bigint)", setup_key)


class SourceService:
    """One source replica (see the module docstring)."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, dsn: str, config: SourceConfig | None = None,
                 partitions: int = 16, replica: str | None = None, stream_replicas: int = 1,
                 publish: PublishFn = publish_atomic, trace: TraceFn | None = None) -> None:
        self.nc, self.js, self.dsn = nc, js, dsn
        self.config = config or SourceConfig()
        self.partitions = partitions
        self.replica = replica or uuid.uuid4().hex[:8]
        self.stream_replicas = stream_replicas
        self.publish = publish
        self.trace = trace
        self.metrics = source_metrics()
        self.session: SourceSession | None = None
        self._ready = False
        self._streamed = False  # the last session got to stream (then reconnect at once-ish)
        self._draining = False
        self._drain = anyio.Event()
        self._done = anyio.Event()

    @property
    def ready(self) -> bool:
        """Set up and either streaming or standing by."""
        return self._ready and not self._draining

    @property
    def active(self) -> bool:
        """This replica holds the slot's lock and streams."""
        return self.session is not None and self.session.streaming.is_set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await ensure_stream(self.js, EVENTS, replicas=self.stream_replicas)
            await self._setup()
            self._ready = True
            task_status.started()
            await self._lead_forever()
        finally:
            self._done.set()

    async def _setup(self) -> None:
        backoff = self.config.reconnect_backoff
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                try:
                    await setup_postgres(conn, self.config)
                finally:
                    await _close(conn)
                return
            except SetupError:
                raise
            except Exception as exc:
                if not _retryable(exc):
                    raise SetupError(f"setting up Postgres for the source failed: {exc}") from exc
                log.warning("Postgres not reachable for setup (%s); retrying in %.1fs", _describe(exc),
                            backoff)
                await self._pause(backoff)
                if self._draining:
                    raise
                backoff = min(backoff * 2, self.config.reconnect_backoff_max)

    async def _lead_forever(self) -> None:
        backoff = self.config.reconnect_backoff
        while not self._draining:
            try:
                await self._lead_once()
            except Exception as exc:
                fatal = _setup_error(exc)
                if fatal is not None:
                    raise fatal from exc
                if self._draining:
                    break
                log.warning("source session ended (%s); reconnecting in %.1fs", _describe(exc), backoff)
                await self._pause(backoff)
                longest = self.config.reconnect_backoff_max
                backoff = self.config.reconnect_backoff if self._streamed else min(backoff * 2, longest)
                continue
            backoff = self.config.reconnect_backoff

    async def _lead_once(self) -> None:
        """Wait for the lock, then stream until drained or a failure."""
        app_name = f"tocsin-source-lock-{self.replica}"
        conn = await asyncpg.connect(self.dsn, timeout=10, server_settings={"application_name": app_name})
        session: SourceSession | None = None
        try:
            key = lock_key(self.config.slot)
            while not await try_lock(conn, key):
                if self._draining:
                    return
                await self._pause(self.config.lock_poll)
            if self._draining:
                return
            log.info("replica %s holds the lock of slot %s", self.replica, self.config.slot)
            session = SourceSession(self.nc, self.js, dsn=self.dsn, config=self.config,
                                    partitions=self.partitions, lock_conn=conn,
                                    application_name=f"tocsin-source-{self.replica}",
                                    publish=self.publish, trace=self.trace)
            self.session = session
            self.metrics.active.labels(self.config.slot).set(1)
            await session.run()
        finally:
            self._streamed = session is not None and session.streaming.is_set()
            self.session = None
            self.metrics.active.labels(self.config.slot).set(0)
            await _close(conn)

    async def _pause(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._drain.wait()

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop reading; publish and report what was read; release the slot and the lock."""
        self._draining = True
        self._drain.set()
        if self.session is not None:
            self.session.stop()
        with anyio.move_on_after(timeout):
            await self._done.wait()


async def _close(conn: Any) -> None:
    """Close politely if Postgres answers within 5 s, else drop the socket."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(5):
                await conn.close()
        except Exception:
            conn.terminate()
