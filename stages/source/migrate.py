"""The reference schema and the publication the source stage reads, as SQL.

``schema_sql`` and ``publication_sql`` are pure (idempotent SQL text); ``apply_schema``
runs the schema on any connection with an asyncpg-style ``execute``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

from stages.source.mapping import quote_ident

__all__ = ["apply_schema", "publication_sql", "schema_sql"]

# Publication names go inside a dollar-quoted DO block and a string literal: keep them plain.
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class _Executor(Protocol):
    async def execute(self, query: str, *args: Any) -> Any: ...


def schema_sql() -> str:
    """The reference ``events`` table and its index (``CREATE ... IF NOT EXISTS``)."""
    return resources.files("stages.source").joinpath("schema.sql").read_text(encoding="utf-8")


def _table_ident(table: str) -> str:
    schema, dot, name = table.rpartition(".")
    return f"{quote_ident(schema)}.{quote_ident(name)}" if dot else quote_ident(name)


def publication_sql(publication: str, tables: Sequence[str]) -> str:
    """SQL creating publication ``publication`` for ``tables`` ("name" or "schema.name") unless it exists.

    Postgres has no ``CREATE PUBLICATION IF NOT EXISTS``, hence the DO block. An existing
    publication is left as it is.
    """
    if _PLAIN_NAME.fullmatch(publication) is None:
        raise ValueError(f"publication name {publication!r} must match {_PLAIN_NAME.pattern}")
    if not tables:
        raise ValueError("a publication needs at least one table")
    targets = ", ".join(_table_ident(t) for t in tables)
    return (
        "DO $tocsin$ BEGIN\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{publication}') THEN\n"
        f"    CREATE PUBLICATION {publication} FOR TABLE {targets};\n"
        "  END IF;\n"
        "END $tocsin$;"
    )


async def apply_schema(conn: _Executor) -> None:
    """Create the reference table and index if missing."""
    await conn.execute(schema_sql())
