"""Common start-up failures end in one line on stderr, ``tocsin: what failed; what to do``, and a
non-zero exit code, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.foundation.embedded import start_postgres

pytestmark = pytest.mark.integration


def tocsin(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, list[str]]:
    env = {**os.environ, "TOCSIN_START_TIMEOUT": "0", "OTEL_TRACES_EXPORTER": "none"}
    for name in ("TOCSIN_NATS_URL", "TOCSIN_POSTGRES_DSN", "TOCSIN_CONFIG_FILE", "TOCSIN_STORAGE_PATH"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "pipeline.application.cli",
                           *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stderr.splitlines()


def one_line(rc: int, lines: list[str], *needles: str) -> str:
    assert rc != 0
    assert len(lines) == 1 and lines[0].startswith("tocsin: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    rc, err = tocsin("up", "--storage.path", "data", "--web.listen-address", f"127.0.0.1:{busy_port}", cwd=tmp_path)
    one_line(rc, err, f"cannot listen on 127.0.0.1:{busy_port}", "address already in use", "--web.listen-address")


def test_unreachable_nats(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    rc, err = tocsin("run", "api", "--storage.path", "data", "--nats-url", url, cwd=tmp_path)
    one_line(rc, err, f"cannot reach NATS at {url}", "--nats-url")


def test_unreachable_postgres(tmp_path: Path) -> None:
    dsn = f"postgresql://tocsin:hunter2@127.0.0.1:{closed_port()}/tocsin"
    rc, err = tocsin("run", "source", "--storage.path", "data", "--postgres-dsn", dsn, cwd=tmp_path)
    line = one_line(rc, err, "cannot reach Postgres at", "--postgres-dsn")
    assert "hunter2" not in line  # the password is redacted


async def test_wal_level_not_logical(tmp_path: Path) -> None:
    settings = {"wal_level": "replica", "fsync": "off", "synchronous_commit": "off"}
    async with start_postgres(tmp_path / "pg", settings=settings) as pg:
        rc, err = tocsin("run", "source", "--storage.path", "data", "--postgres-dsn", pg.dsn, cwd=tmp_path)
    one_line(rc, err, "wal_level = replica", "wal_level = logical")


def test_config_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "am.yml").write_text("route: {receiver: nobody}\nreceivers:\n  - name: hook\n")
    rc, err = tocsin("up", "--storage.path", "data", "--config.file", "am.yml", cwd=tmp_path)
    one_line(rc, err, "am.yml:", "nobody")


def test_fallback_cycle_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "am.yml").write_text(
        "route: {receiver: a}\nreceivers:\n  - name: a\n  - name: b\ntocsin:\n  notifier:\n"
        "    fallbacks: {a: b, b: a}\n")
    rc, err = tocsin("up", "--storage.path", "data", "--config.file", "am.yml", cwd=tmp_path)
    one_line(rc, err, "am.yml:6:", "cycle a -> b -> a")


@pytest.mark.parametrize("command", [
    ["emit", "--org", "acme", "--resource", "Device/dev-1", "DeviceDown"],
    ["db", "migrate"],
    ["dlq", "list"],
], ids=["emit", "db-migrate", "dlq-list"])
@pytest.mark.parametrize("pid", ["dead", "alive"])
def test_stale_endpoints(tmp_path: Path, command: list[str], pid: str) -> None:
    """endpoints.json left by a Tocsin that stopped: its process is gone, or (a reused pid) its servers are."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "endpoints.json").write_text(json.dumps({
        "nats_url": f"nats://127.0.0.1:{closed_port()}",
        "postgres_dsn": f"postgresql://tocsin:pw@127.0.0.1:{closed_port()}/tocsin",
        "storage_path": str(data), "pid": os.getpid() if pid == "alive" else 2**22 + 12345}))
    rc, err = tocsin(*command, "--storage.path", "data", cwd=tmp_path)
    one_line(rc, err, f"no Tocsin is running at {data}", "start it with `tocsin up")
