"""The chart's `helm test` Pod script, as rendered, run against a real Tocsin (rules + api on a real
nats-server) loaded with the chart's own default configuration."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.integration.deploy.chart import container, env_of, render
from tests.pipeline_process import running

pytest.importorskip("helm_python", reason="chart tests need helm-python-sdk (the test extra)")


def hook() -> tuple[str, str]:
    """The test Pod's script and the default configuration, from one render of the chart."""
    r = render()
    [pod] = r.of_kind("Pod")
    c = container(pod)
    assert c["command"] == ["python", "-c"]
    assert "TOCSIN_API_URL" in env_of(c)
    return c["args"][0], r.get("ConfigMap", "tocsin-config")["data"]["alertmanager.yml"]


async def run_script(script: str, api_url: str, timeout: float) -> tuple[int, str, str]:
    env = {**os.environ, "TOCSIN_API_URL": api_url, "TOCSIN_TEST_TIMEOUT": str(timeout), "HOSTNAME": "hook-test"}
    result = await anyio.run_process([sys.executable, "-c", script], env=env, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[str]:
    _, config = hook()
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(config, "alertmanager.yml"), partitions=4)
    async with running(settings, ["rules", "api"]) as ep:
        yield ep.api_url


@pytest.mark.integration
async def test_hook_pushes_reads_back_and_resolves(api: str) -> None:
    script, _ = hook()
    code, out, err = await run_script(script, api, timeout=60)
    assert code == 0, err
    assert out.rstrip().endswith("OK")
    test_id = next(line.split("test_id=", 1)[1] for line in out.splitlines() if "test_id=" in line)
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        with anyio.fail_after(15):  # the script resolved its alert: it leaves the active list
            while True:
                got = (await client.get("/api/v2/alerts", params={"filter": f'test_id="{test_id}"'})).json()
                if got == []:
                    break
                await anyio.sleep(0.1)


async def test_hook_fails_when_the_api_does_not_answer() -> None:
    script, _ = hook()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await run_script(script, f"http://127.0.0.1:{port}", timeout=2)
    assert code == 1
    assert "FAIL: POST" in err
    assert "OK" not in out
