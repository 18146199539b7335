"""Postgres logical replication, at the protocol level, and the slot/publication/lock admin around it.

psycopg 3 has no replication API, but it can open a walsender connection
(``replication=database``) and run ``START_REPLICATION``, which leaves the connection in
COPY BOTH mode. From there :class:`ReplicationStream` works on libpq directly
(``get_copy_data``/``put_copy_data`` in non-blocking mode), waiting on the socket with
anyio, so the event loop never blocks.

Frames from the server are XLogData (``w``: a pgoutput message) and primary keepalives
(``k``); the client answers with standby status updates (``r``) carrying the LSN it has made
durable. The frame codecs (:func:`parse_frame`, :func:`standby_status`) are pure.

The admin helpers take an asyncpg-style connection (``fetchval``/``fetch``/``execute``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import psycopg
from psycopg import pq

from stages.source.mapping import TableMapping, quote_ident
from stages.source.migrate import publication_sql
from stages.source.pgoutput import PG_EPOCH, format_lsn, parse_lsn

__all__ = [
    "Keepalive",
    "ReplicationError",
    "ReplicationStream",
    "SetupError",
    "SlotBusyError",
    "XLogData",
    "check_wal_level",
    "current_wal_lsn",
    "ensure_publication",
    "ensure_slot",
    "lock_key",
    "parse_frame",
    "pg_micros",
    "start_replication_command",
    "standby_status",
    "table_columns",
    "try_lock",
    "wal_level_problem",
]

log = logging.getLogger("tocsin.source")

_XLOG_HEADER = struct.Struct(">QQq")  # start LSN, server WAL end, send time
_KEEPALIVE = struct.Struct(">QqB")  # server WAL end, send time, reply requested
_STATUS = struct.Struct(">cQQQqB")
_PG_EPOCH_UNIX = int(PG_EPOCH.timestamp())
_OBJECT_IN_USE = "55006"  # "replication slot ... is active for PID ..."
_DUPLICATE_OBJECT = "42710"


class ReplicationError(RuntimeError):
    """The replication connection failed or the server sent something unexpected."""


class SlotBusyError(ReplicationError):
    """Another connection is streaming from the slot (e.g. a source that died a moment ago)."""


class SetupError(RuntimeError):
    """Postgres is not set up so that the source can work; the message says what to change."""


# ---------------------------------------------------------------------------- frames (pure)


@dataclass(frozen=True, slots=True)
class XLogData:
    start: int  # WAL position of the data
    wal_end: int  # the server's current end of WAL (as far as this walsender knows)
    send_time: int  # microseconds since 2000-01-01 UTC
    data: bytes  # one pgoutput message


@dataclass(frozen=True, slots=True)
class Keepalive:
    wal_end: int  # everything the server sent so far ends here
    send_time: int
    reply: bool  # the server wants a status update now (else it may time us out)


def parse_frame(frame: bytes | memoryview) -> XLogData | Keepalive:
    """One CopyData message of a replication stream."""
    buf = memoryview(frame)
    if not buf:
        raise ReplicationError("empty replication frame")
    kind = buf[0]
    if kind == 0x77:  # 'w'
        if len(buf) < 1 + _XLOG_HEADER.size:
            raise ReplicationError(f"XLogData frame of {len(buf)} bytes is shorter than its header")
        start, wal_end, sent = _XLOG_HEADER.unpack_from(buf, 1)
        return XLogData(start, wal_end, sent, bytes(buf[1 + _XLOG_HEADER.size :]))
    if kind == 0x6B:  # 'k'
        if len(buf) != 1 + _KEEPALIVE.size:
            raise ReplicationError(f"keepalive frame has {len(buf)} bytes, expected {1 + _KEEPALIVE.size}")
        wal_end, sent, reply = _KEEPALIVE.unpack_from(buf, 1)
        return Keepalive(wal_end, sent, reply == 1)
    raise ReplicationError(f"unknown replication frame type {chr(kind)!r} (0x{kind:02x})")


def pg_micros(unix_seconds: float) -> int:
    """Unix seconds as the protocol's microseconds since 2000-01-01 UTC."""
    return round((unix_seconds - _PG_EPOCH_UNIX) * 1_000_000)


def standby_status(flushed: int, now_micros: int, *, reply: bool = False) -> bytes:
    """A standby status update reporting ``flushed`` as written, flushed and applied.

    The source has no separate write/apply stages: an LSN is reported only once the
    transaction ending there is durable in JetStream.
    """
    return _STATUS.pack(b"r", flushed, flushed, flushed, now_micros, 1 if reply else 0)


def start_replication_command(slot: str, publications: Sequence[str], start_lsn: int) -> str:
    """``START_REPLICATION`` for pgoutput protocol 1 (no streaming of in-progress transactions)."""
    if not publications:
        raise ValueError("at least one publication is needed")
    names = ",".join(quote_ident(p) for p in publications).replace("'", "''")
    return (
        f"START_REPLICATION SLOT {quote_ident(slot)} LOGICAL {format_lsn(start_lsn)} "
        f"(proto_version '1', publication_names '{names}')"
    )


def wal_level_problem(level: str) -> str | None:
    """What to do when ``wal_level`` cannot feed logical replication (None when it can)."""
    if level == "logical":
        return None
    return (
        f"Postgres runs with wal_level = {level}, but logical replication needs wal_level = logical. "
        "Run ALTER SYSTEM SET wal_level = logical; as a superuser and restart Postgres "
        "(or set wal_level = logical in postgresql.conf, or -c wal_level=logical)."
    )


def lock_key(slot: str) -> int:
    """The advisory-lock key of a slot's reader: FNV-1a 64 of a prefixed name, as a signed bigint."""
    h = 0xCBF29CE484222325
    for b in f"tocsin.source:{slot}".encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


# ---------------------------------------------------------------------------- the stream (I/O)


class ReplicationStream:
    """A walsender connection streaming one slot; created by :meth:`connect`, then :meth:`start`."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._pg: pq.abc.PGconn = conn.pgconn
        self._started = False

    @classmethod
    async def connect(cls, dsn: str, *, application_name: str = "tocsin-source",
                      connect_timeout: float = 10.0) -> ReplicationStream:
        # Text values are decoded by pgoutput.convert_text, which expects these output styles.
        conn = await psycopg.AsyncConnection.connect(
            dsn, replication="database", autocommit=True, application_name=application_name,
            client_encoding="UTF8", connect_timeout=max(1, round(connect_timeout)),
            options="-c DateStyle=ISO -c bytea_output=hex -c extra_float_digits=3",
        )
        return cls(conn)

    async def identify(self) -> tuple[str, int, int]:
        """(system id, timeline, the server's current WAL flush position)."""
        cur = await self._conn.execute("IDENTIFY_SYSTEM")
        row = await cur.fetchone()
        if row is None:
            raise ReplicationError("IDENTIFY_SYSTEM returned nothing")
        return str(row[0]), int(row[1]), parse_lsn(str(row[2]))

    async def check_wal_level(self) -> None:
        cur = await self._conn.execute("SHOW wal_level")
        row = await cur.fetchone()
        problem = wal_level_problem(str(row[0]) if row else "unknown")
        if problem:
            raise SetupError(problem)

    async def start(self, slot: str, publications: Sequence[str], start_lsn: int) -> None:
        """Enter COPY BOTH; raises :class:`SlotBusyError` when another reader holds the slot."""
        try:
            await self._conn.execute(start_replication_command(slot, publications, start_lsn))
        except psycopg.errors.ObjectInUse as exc:
            raise SlotBusyError(str(exc).strip()) from exc
        except psycopg.errors.UndefinedObject as exc:
            raise SetupError(f"{str(exc).strip()}; create it, or set source.create_slot: true") from exc
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:  # e.g. the slot was invalidated
            raise SetupError(f"{str(exc).strip()} (if the slot lost its WAL, see 'WAL retention' in "
                             "docs/source.md)") from exc
        if self._pg.nonblocking != 1:
            self._pg.nonblocking = 1
        self._started = True

    def read_available(self, limit: int) -> list[bytes]:
        """Frames already received, without waiting (at most ``limit``)."""
        out: list[bytes] = []
        pg = self._pg
        while len(out) < limit:
            n, data = pg.get_copy_data(1)
            if n > 0:
                out.append(bytes(data))
            elif n == 0:
                break
            else:  # -1: the server ended the COPY (e.g. it is shutting down)
                raise ReplicationError(f"the server ended replication: {self._final_error()}")
        return out

    async def wait_readable(self) -> None:
        """Wait for the socket, then take in what arrived (raises when the connection is gone)."""
        await anyio.wait_readable(self._pg.socket)
        self._pg.consume_input()

    async def send_status(self, flushed: int, now_micros: int, *, reply: bool = False) -> None:
        pg = self._pg
        data = standby_status(flushed, now_micros, reply=reply)
        while pg.put_copy_data(data) == 0:
            await anyio.wait_writable(pg.socket)
        while pg.flush() == 1:
            await anyio.wait_writable(pg.socket)

    def _final_error(self) -> str:
        res = self._pg.get_result()
        if res is not None and res.error_message:
            return res.error_message.decode(errors="replace").strip()
        return self._pg.error_message.decode(errors="replace").strip() or "no reason given"

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._conn.close()
            except Exception as exc:  # closing a broken connection: nothing left to do
                log.debug("closing the replication connection: %s", exc)


# ---------------------------------------------------------------------------- admin (normal connection)


class _Conn(Protocol):
    async def execute(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def check_wal_level(conn: _Conn) -> None:
    problem = wal_level_problem(str(await conn.fetchval("SHOW wal_level")))
    if problem:
        raise SetupError(problem)


async def try_lock(conn: _Conn, key: int) -> bool:
    """Take the session-level advisory lock ``key`` if free (released when ``conn`` dies)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", key))


async def current_wal_lsn(conn: _Conn) -> int:
    return parse_lsn(str(await conn.fetchval("SELECT pg_current_wal_lsn()::text")))


async def ensure_slot(conn: _Conn, slot: str, *, create: bool) -> bool:
    """Check the slot (pgoutput, this database), creating it when missing and allowed; True if created."""
    row = await _slot_row(conn, slot)
    if row is None:
        if not create:
            raise SetupError(f"replication slot {slot!r} does not exist; "
                             "create it or set source.create_slot: true")
        try:
            await conn.fetchval(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", slot)
            log.info("created replication slot %s", slot)
            return True
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _DUPLICATE_OBJECT:  # another replica won the race
                raise
        row = await _slot_row(conn, slot)
        assert row is not None
    plugin, slot_type, database, current = row
    if slot_type != "logical" or plugin != "pgoutput":
        raise SetupError(f"replication slot {slot!r} is a {slot_type} slot of plugin {plugin!r}; "
                         "the source needs a logical pgoutput slot (choose another source.slot)")
    if database != current:
        raise SetupError(f"replication slot {slot!r} belongs to database {database!r}, not {current!r}")
    return False


async def _slot_row(conn: _Conn, slot: str) -> tuple[str, str, str, str] | None:
    rows = await conn.fetch(
        "SELECT plugin, slot_type, database, current_database() FROM pg_replication_slots "
        "WHERE slot_name = $1", slot)
    if not rows:
        return None
    r = rows[0]
    return str(r[0]), str(r[1]), str(r[2]), str(r[3])


_OP_FLAG = {"insert": "pubinsert", "update": "pubupdate", "delete": "pubdelete"}


async def ensure_publication(conn: _Conn, publication: str, tables: Sequence[TableMapping], *,
                             create: bool) -> None:
    """Create the publication when missing (and allowed); check it covers every table and op."""
    exists = await conn.fetchval("SELECT 1 FROM pg_publication WHERE pubname = $1", publication)
    if not exists:
        if not create:
            raise SetupError(f"publication {publication!r} does not exist; create it or set "
                             "source.create_publication: true")
        await conn.execute(publication_sql(publication, [t.qualified_name for t in tables]))
    flags = await conn.fetch(
        "SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = $1", publication)
    published = {name: bool(flags[0][i]) for i, name in enumerate(("pubinsert", "pubupdate", "pubdelete"))}
    rows = await conn.fetch("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1",
                            publication)
    covered = {(str(r[0]), str(r[1])) for r in rows}
    for t in tables:
        if (t.schema, t.table) not in covered:
            raise SetupError(f"publication {publication!r} does not include table {t.qualified_name}; run "
                             f"ALTER PUBLICATION {quote_ident(publication)} ADD TABLE "
                             f"{quote_ident(t.schema)}.{quote_ident(t.table)}")
        for op in t.ops:
            if not published[_OP_FLAG[op]]:
                raise SetupError(f"publication {publication!r} does not publish {op}s, which table "
                                 f"{t.qualified_name} maps (ops); run ALTER PUBLICATION "
                                 f"{quote_ident(publication)} SET (publish = 'insert, update, delete')")


async def table_columns(conn: _Conn, table: TableMapping) -> tuple[list[tuple[str, int]], str] | None:
    """([(column, type oid)], replica identity) of a table, or None when it does not exist."""
    rel = await conn.fetchval("SELECT to_regclass($1)::oid",
                              f"{quote_ident(table.schema)}.{quote_ident(table.table)}")
    if rel is None:
        return None
    cols = await conn.fetch(
        "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", rel)
    ident = await conn.fetchval("SELECT relreplident::text FROM pg_class WHERE oid = $1", rel)
    return [(str(c[0]), int(c[1])) for c in cols], str(ident)
