"""Shared fixtures: real nats-server and Postgres on free ports, in temporary directories."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.foundation.embedded import NatsServer, PostgresServer, start_nats, start_postgres


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with start_nats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def postgres_server(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    async with start_postgres(tmp_path / "pg", settings=settings) as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_report_header() -> str:
    return f"tocsin tests: CI={os.environ.get('CI', '')}"
