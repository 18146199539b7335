"""`tocsin up --topology processes` in both deployments: the chained one runs the chain (rules,
router and filter in one process per replica), the separate one a process per stage; every child
is started with the same --deployment, the one recorded in TOCSIN_META, the notifier runs on
uvloop, and an alert pushed to the API reaches the webhook."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from pipeline.application.graph import DEPLOYMENTS, topology_stages
from pipeline.foundation.runtime.jetstream import connect, last_message
from pipeline.foundation.runtime.subjects import StreamNames
from tests.receivers import http_receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
route: {receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: hook, webhook_configs: [{url: "URL/hook"}]}]
"""
EXPECTED = {"chained": ["chain", "notifier", "api"], "separate": ["rules", "router", "filter", "notifier", "api"]}


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _runs_uvloop(pid: int) -> bool:
    """uvloop's extension is loaded (pipeline.application.cli.event_loop_options: the notifier's)."""
    return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text()


async def _recorded(nats_url: str) -> str:
    nc = await connect(nats_url, name="tocsin-test")
    try:
        meta = StreamNames("meta")
        found = await last_message(nc.jetstream(), meta.stream, f"{meta.prefix}.deployment")
        assert found is not None, "no deployment recorded in TOCSIN_META"
        recorded: str = msgspec.json.decode(found[1])["deployment"]
        return recorded
    finally:
        await nc.close()


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
async def test_each_deployment_runs_its_stages_as_processes(tmp_path: Path, deployment: str) -> None:
    async with http_receiver() as receiver:
        (tmp_path / "am.yml").write_text(CONFIG.replace("URL", receiver.url))
        storage = tmp_path / "topo"
        log = open(tmp_path / "topology.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.application.cli", "up", "--topology", "processes",
                                 "--deployment", deployment, "--partitions", "2", "--storage.path", str(storage),
                                 "--config.file", str(tmp_path / "am.yml"), "--web.listen-address", "127.0.0.1:0"],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            with anyio.fail_after(120):
                while not (storage / "endpoints.json").exists():
                    assert proc.poll() is None, (tmp_path / "topology.log").read_text()[-3000:]
                    await anyio.sleep(0.2)
            desc = json.loads((storage / "endpoints.json").read_text())
            stages = [c["stage"] for c in desc["children"]]
            assert stages == EXPECTED[deployment] == [*topology_stages(deployment), "api"]
            for child in desc["children"]:
                argv = _argv(child["pid"])
                assert argv[argv.index("--deployment") + 1] == deployment, child
            async with httpx.AsyncClient(base_url=desc["api_url"], timeout=20) as api:
                with anyio.fail_after(90):  # every stage process ready
                    while True:
                        try:
                            if (await api.get("/-/ready")).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await anyio.sleep(0.2)
                uvloop = {c["stage"]: _runs_uvloop(c["pid"]) for c in desc["children"]}
                assert uvloop == {s: s == "notifier" for s in EXPECTED[deployment]}
                r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "TopologyProbe"}}])
                assert r.status_code == 200, r.text
            with anyio.fail_after(60):
                while not any(x.body["groupLabels"].get("alertname") == "TopologyProbe" for x in receiver.received):
                    await anyio.sleep(0.2)
            assert await _recorded(desc["nats_url"]) == deployment
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        assert proc.returncode == 0, (tmp_path / "topology.log").read_text()[-3000:]
