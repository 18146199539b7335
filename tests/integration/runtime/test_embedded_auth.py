"""The embedded servers trust no local process (issue #27, item 5): NATS and Postgres want the
credentials generated for their data directory, kept 0600 there and reused at every start;
the credentials never reach argv, logs or the terminal."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import anyio
import asyncpg
import httpx
import nats
import nats.errors
import psycopg
import pytest

from pipeline.foundation.embedded import (
    NatsServer,
    PostgresServer,
    free_port,
    postgres_bin_dir,
    redact_url,
    start_nats,
    start_postgres,
)
from pipeline.foundation.runtime.jetstream import connect
from pipeline.foundation.runtime.natsauth import connect_options
from stages.source.config import SourceConfig
from stages.source.emit import migrate
from stages.source.service import SourceService
from tests.integration.source.source_helpers import count_events, insert_rows, read_events, running_service, wait_until
from tests.topology_process import topology

pytestmark = pytest.mark.integration


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


async def _refused_nats(url: str) -> str:
    with pytest.raises(nats.errors.Error) as info:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
        await nc.close()
    return str(info.value)


async def test_nats_refuses_clients_without_the_credentials(nats_server: NatsServer) -> None:
    bare = f"nats://127.0.0.1:{nats_server.port}"
    assert "Authorization Violation" in await _refused_nats(bare)
    assert "Authorization Violation" in await _refused_nats(f"nats://tocsin:wrong@127.0.0.1:{nats_server.port}")
    nc = await connect(nats_server.url)
    try:
        info = await nc.jetstream().account_info()  # a JetStream request: the same account as before
        assert info.streams == 0
    finally:
        await nc.close()


async def test_postgres_refuses_connections_without_the_password(postgres_server: PostgresServer) -> None:
    port = postgres_server.port
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="tocsin")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", password="wrong", database="tocsin")
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()
    # The source's walsender connection: the same password, refused without it.
    with pytest.raises(psycopg.OperationalError, match="password"):
        await psycopg.AsyncConnection.connect(f"postgresql://postgres@127.0.0.1:{port}/tocsin",
                                              replication="database", autocommit=True)
    repl = await psycopg.AsyncConnection.connect(postgres_server.dsn, replication="database", autocommit=True)
    try:
        cur = await repl.execute("IDENTIFY_SYSTEM")
        assert (await cur.fetchone()) is not None
    finally:
        await repl.close()


async def test_secrets_are_private_reused_and_never_in_argv_or_logs(tmp_path: Path) -> None:
    async with start_nats(tmp_path / "nats") as ns, start_postgres(tmp_path / "pg") as pg:
        first = (ns.url, pg.dsn)
        nats_secret = ns.credentials.password if ns.credentials else ""
        assert nats_secret and pg.password and nats_secret in ns.url and pg.password in pg.dsn
        for pid in (ns.proc.pid, pg.proc.pid):
            assert nats_secret not in _cmdline(pid) and pg.password not in _cmdline(pid)
        assert nats_secret not in repr(ns) and pg.password not in repr(pg)
        assert "***" in redact_url(ns.url) and nats_secret not in redact_url(ns.url)
        assert pg.password not in redact_url(pg.dsn)
        nc = await connect(ns.url)
        await nc.close()
    files = [tmp_path / "nats" / "nats-credentials.json", tmp_path / "nats" / "nats-server.conf",
             tmp_path / "pg.password"]
    for f in files:
        assert _mode(f) == 0o600, f
    for log in (tmp_path / "nats" / "nats-server.log", tmp_path / "pg.log"):
        text = log.read_text()
        assert nats_secret not in text and pg.password not in text, log
    (tmp_path / "pg.password").chmod(0o644)  # loosened by hand: tightened again at the next start
    async with start_nats(tmp_path / "nats", port=ns.port) as ns2, \
            start_postgres(tmp_path / "pg", port=pg.port) as pg2:
        assert (ns2.url, pg2.dsn) == first
        conn = await asyncpg.connect(pg2.dsn)
        await conn.close()
    assert _mode(tmp_path / "pg.password") == 0o600


async def test_a_trust_data_directory_gets_a_password_at_its_next_start(tmp_path: Path) -> None:
    """Data directories made before passwords (initdb --auth=trust) are not left open."""
    async with start_postgres(tmp_path / "pg") as pg:
        old_port = pg.port
    # Back to how older builds left it: trust, no password file.
    hba = tmp_path / "pg" / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
    (tmp_path / "pg.password").unlink()
    async with start_postgres(tmp_path / "pg", port=old_port) as pg:
        assert _mode(tmp_path / "pg.password") == 0o600
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host="127.0.0.1", port=pg.port, user="postgres", database="tocsin")
        conn = await asyncpg.connect(pg.dsn)
        await conn.close()
    assert "trust" not in "".join(line for line in hba.read_text().splitlines() if not line.startswith("#"))


async def test_cluster_routes_need_the_route_credentials(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    async with start_nats(tmp_path / "a", name="a", cluster_name="t", cluster_port=ports[0],
                          routes=[f"nats://127.0.0.1:{ports[1]}"], secrets_dir=tmp_path) as a, \
            start_nats(tmp_path / "b", name="b", cluster_name="t", cluster_port=ports[1],
                       routes=[f"nats://127.0.0.1:{ports[0]}"], secrets_dir=tmp_path) as b:
        assert a.url.rpartition("@")[0] == b.url.rpartition("@")[0]  # one set of credentials
        # A message published on b reaches a subscriber on a: the route authenticated.
        na, nb = await connect(a.url), await connect(b.url)
        try:
            sub = await na.subscribe("probe")
            with anyio.fail_after(10):
                while True:
                    await nb.publish("probe", b"x")
                    try:
                        await sub.next_msg(timeout=0.2)
                        break
                    except nats.errors.TimeoutError:
                        continue
        finally:
            await na.close()
            await nb.close()
        # A process that speaks the route protocol without the route user is refused.
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
        try:
            info = await asyncio.wait_for(reader.readline(), 5)
            assert json.loads(info.split(b" ", 1)[1])["auth_required"] is True
            writer.write(b'CONNECT {"verbose":false,"pedantic":false,"name":"intruder"}\r\nPING\r\n')
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(1024), 5)
            assert b"Authorization Violation" in answer
        finally:
            writer.close()


async def test_the_documented_least_privileged_source_role_streams(nats_server: NatsServer,
                                                                  postgres_server: PostgresServer) -> None:
    """docs/deploy.md's role for an external Postgres: LOGIN REPLICATION, SELECT on the table,
    nothing else; the table and publication made beforehand by their owner (`tocsin db migrate`)."""
    await migrate(postgres_server.dsn)
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute("CREATE ROLE tocsin_source LOGIN REPLICATION PASSWORD 'source-pw'; "
                            "GRANT SELECT ON public.events TO tocsin_source;")
        role_dsn = f"postgresql://tocsin_source:source-pw@127.0.0.1:{postgres_server.port}/tocsin"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # it cannot write the table
            probe = await asyncpg.connect(role_dsn)
            try:
                await insert_rows(probe, 1)
            finally:
                await probe.close()
        nc = await connect(nats_server.url)
        try:
            config = SourceConfig(migrate=False, create_publication=False)
            async with running_service(nc, role_dsn, config) as svc:
                await wait_until(lambda: _active(svc), 10, "the source to stream as tocsin_source")
                ids = await insert_rows(admin, 5)
                await wait_until(lambda: _events(nc, 5), 10, "5 events")
            assert [int(r.message.id) for r in await read_events(nc)] == ids  # type: ignore[union-attr]
        finally:
            await nc.close()
    finally:
        await admin.close()


async def _active(svc: SourceService) -> bool:
    return svc.active


async def _events(nc: nats.aio.client.Client, n: int) -> bool:
    return await count_events(nc) >= n


def test_connect_options_hoist_credentials_and_make_tls() -> None:
    servers, opts = connect_options("nats://u:p%40ss@h1:4222,nats://u:p%40ss@h2:4222", {})
    assert servers == ["nats://h1:4222", "nats://h2:4222"] and opts == {"user": "u", "password": "p@ss"}
    servers, opts = connect_options("nats://s3cret@h1:4222", {})
    assert servers == ["nats://h1:4222"] and opts == {"token": "s3cret"}
    servers, opts = connect_options("nats://a:1@h1:4222,nats://b:2@h2:4222", {})  # differ: left in each URL
    assert servers == ["nats://a:1@h1:4222", "nats://b:2@h2:4222"] and opts == {}
    _, opts = connect_options("tls://h1:4222", {})
    assert opts["tls"].verify_mode.name == "CERT_REQUIRED"
    with pytest.raises(FileNotFoundError):
        connect_options("nats://h1:4222", {"TOCSIN_NATS_CA_FILE": "/nonexistent/ca.pem"})


@pytest.mark.slow
async def test_processes_topology_passes_credentials_by_environment(tmp_path: Path) -> None:
    """`tocsin up --topology processes`: every stage process reaches the authenticated
    cluster and Postgres, with no secret in any argv, in endpoints.json readable by others,
    or on the terminal."""
    assert postgres_bin_dir().exists()
    async with topology(tmp_path, "--with-source", "--partitions", "4") as topo:
        storage, desc = topo.storage, topo.desc
        assert _mode(storage / "endpoints.json") == 0o600
        creds = json.loads((storage / "nats-credentials.json").read_text())
        assert _mode(storage / "nats-credentials.json") == 0o600
        pg_password = (storage / "postgres.password").read_text().strip()
        secrets = [creds["password"], creds["route_password"], pg_password]
        async with httpx.AsyncClient(base_url=desc["api_url"], timeout=20) as api:
            push = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "AuthProbe"}}])
            assert push.status_code == 200
            with anyio.fail_after(30):  # through the rules stage's process and back
                while not any(a["labels"]["alertname"] == "AuthProbe"
                              for a in (await api.get("/api/v2/alerts")).json()):
                    await anyio.sleep(0.3)
        pids = [*desc["nats_pids"], *(c["pid"] for c in desc["children"]), topo.proc.pid]
        for pid in pids:
            argv = _cmdline(pid)
            assert not any(s in argv for s in secrets), f"a secret in the argv of {argv[:200]}"
        stages = {c["stage"] for c in desc["children"]}
        assert stages >= {"source", "api"} and ("chain" in stages or "rules" in stages), stages
    out = topo.log
    terminal = out.read_text()
    assert "ready (processes)" in terminal
    for log in [out, *storage.glob("*.log"), *storage.glob("nats-*/nats-server.log")]:
        text = log.read_text(errors="replace")
        assert not any(s in text for s in secrets), f"a secret in {log}"


def test_redact_url_hides_passwords_and_tokens() -> None:
    assert redact_url("nats://u:pw@h1:4222,nats://tok@h2:4222,nats://h3:4222") == \
        "nats://u:***@h1:4222,nats://***@h2:4222,nats://h3:4222"
    assert redact_url("postgresql://postgres:pw@127.0.0.1:5432/tocsin") == "postgresql://postgres:***@127.0.0.1:5432/tocsin"
