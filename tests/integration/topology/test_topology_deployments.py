"""`tocsin up --topology processes` in both deployments: the chained one runs the chain (rules,
router and filter in one process per replica), the separate one a process per stage; every child
is started with the same --deployment, the one recorded in TOCSIN_META, the notifier runs on
uvloop, and an alert pushed to the API reaches the webhook."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from pipeline.application.graph import DEPLOYMENTS, topology_stages
from pipeline.foundation.runtime.jetstream import connect, last_message
from pipeline.foundation.runtime.subjects import StreamNames
from tests.receivers import http_receiver
from tests.topology_process import topology

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
        async with topology(tmp_path, "--deployment", deployment, "--partitions", "2",
                            "--config.file", str(tmp_path / "am.yml")) as topo:
            desc = topo.desc
            stages = [c["stage"] for c in desc["children"]]
            assert stages == EXPECTED[deployment] == [*topology_stages(deployment), "api"]
            for child in desc["children"]:
                argv = _argv(child["pid"])
                assert argv[argv.index("--deployment") + 1] == deployment, child
            async with httpx.AsyncClient(base_url=desc["api_url"], timeout=20) as api:
                uvloop = {c["stage"]: _runs_uvloop(c["pid"]) for c in desc["children"]}
                assert uvloop == {s: s == "notifier" for s in EXPECTED[deployment]}
                r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "TopologyProbe"}}])
                assert r.status_code == 200, r.text
            with anyio.fail_after(60):
                while not any(x.body["groupLabels"].get("alertname") == "TopologyProbe" for x in receiver.received):
                    await anyio.sleep(0.2)
            assert await _recorded(desc["nats_url"]) == deployment
        assert topo.proc.returncode == 0, topo.tail()
