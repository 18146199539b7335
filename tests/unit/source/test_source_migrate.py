"""The reference schema and publication SQL."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stages.source.mapping import TableMapping, validate_mapping
from stages.source.migrate import apply_schema, publication_sql, schema_sql


def statements(sql: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def test_schema_is_idempotent() -> None:
    stmts = statements(schema_sql())
    assert len(stmts) == 2
    for stmt in stmts:
        assert re.match(r"CREATE (TABLE|INDEX) IF NOT EXISTS ", stmt), stmt


def test_schema_columns() -> None:
    table = statements(schema_sql())[0]
    body = table[table.index("(") + 1 : table.rindex(")")]
    columns = {
        line.split()[0]: " ".join(line.split()[1:]).rstrip(",") for line in body.splitlines() if line.strip()
    }
    assert columns == {
        "id": "bigserial PRIMARY KEY",
        "org_id": "text NOT NULL",
        "resource_kind": "text NOT NULL",
        "resource_name": "text NOT NULL",
        "reason": "text NOT NULL",
        "message": "text NOT NULL DEFAULT ''",
        "severity": "text NOT NULL DEFAULT ''",
        "fields": "jsonb NOT NULL DEFAULT '{}'",
        "created_at": "timestamptz NOT NULL DEFAULT now()",
    }
    # The default mapping reads exactly this table.
    assert validate_mapping(TableMapping(), list(columns)) == []


def test_schema_index_on_org_and_time() -> None:
    index = statements(schema_sql())[1]
    assert re.search(r"ON events \(org_id, created_at\)$", index), index


def test_publication_sql() -> None:
    sql = publication_sql("tocsin_events", ["events", "app.audit"])
    assert "pubname = 'tocsin_events'" in sql
    assert 'CREATE PUBLICATION tocsin_events FOR TABLE "events", "app"."audit";' in sql
    assert sql.startswith("DO $tocsin$") and sql.endswith("$tocsin$;")


@pytest.mark.parametrize(
    ("name", "tables"),
    [("Tocsin", ["events"]), ("a'b", ["events"]), ("x$$", ["events"]), ("", ["events"]), ("ok", [])],
    ids=["uppercase", "quote", "dollar", "empty", "no-tables"],
)
def test_publication_sql_rejects(name: str, tables: list[str]) -> None:
    with pytest.raises(ValueError):
        publication_sql(name, tables)


async def test_apply_schema_runs_the_schema() -> None:
    seen: list[str] = []

    class Conn:
        async def execute(self, query: str, *args: Any) -> str:
            seen.append(query)
            return "CREATE TABLE"

    await apply_schema(Conn())
    assert seen == [schema_sql()]
