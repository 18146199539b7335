"""What ``tocsin emit`` and ``tocsin db migrate`` do: insert one event row; set the database up.

Both open one asyncpg connection for the call. ``migrate`` creates the reference table and
the publication, not the replication slot: a slot retains WAL from the moment it exists, so
only a running source creates it.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from stages.source.config import SourceConfig
from stages.source.mapping import EmitRequest, TableMapping, insert_event_sql
from stages.source.migrate import apply_schema
from stages.source.replication import ensure_publication

__all__ = ["emit", "migrate"]


async def emit(dsn: str, request: EmitRequest, mapping: TableMapping | None = None, *,
               occurred_at: datetime | None = None) -> str:
    """Insert ``request`` into the mapped table (default: the reference ``events``); return the row id."""
    sql, params = insert_event_sql(request, mapping, occurred_at=occurred_at)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        value = await conn.fetchval(sql, *params)
    finally:
        await conn.close()
    return str(value)


async def migrate(dsn: str, config: SourceConfig | None = None) -> None:
    """Create the reference events table and index, and the source's publication, when missing."""
    cfg = config or SourceConfig()
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await apply_schema(conn)
        await ensure_publication(conn, cfg.publication, cfg.tables, create=cfg.create_publication)
    finally:
        await conn.close()
