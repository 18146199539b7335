"""The Helm topology on one machine (`tocsin up --topology processes`): a 3-node NATS cluster with
R3 streams and two replicas of every stage as separate processes. One NATS node and one replica
of each stage are SIGKILLed during a run: every alert is still notified, none twice."""

from __future__ import annotations

import collections
import json
import os
import signal
from pathlib import Path

import anyio
import httpx
import pytest

from tests.receivers import http_receiver
from tests.topology_process import topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 150


def config(url: str) -> str:
    return f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
"""


async def test_kill_a_nats_node_and_a_replica_of_each_stage(tmp_path: Path) -> None:
    async with http_receiver() as receiver:
        (tmp_path / "am.yml").write_text(config(receiver.url))
        async with topology(tmp_path, "--replicas", "2", "--partitions", "8", "--config.file",
                            str(tmp_path / "am.yml"), ready_within=60) as topo:
            storage = topo.storage
            async with httpx.AsyncClient(base_url=topo.desc["api_url"], timeout=20) as api:
                await anyio.sleep(3)  # replicas find each other and settle their partitions
                killed = False
                for i in range(N):
                    while True:
                        try:
                            r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": f"A{i:03d}"}}])
                            if r.status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await anyio.sleep(0.2)  # the API process's NATS node died: it reconnects
                    if i == N // 3 and not killed:
                        killed = True
                        desc = json.loads((storage / "endpoints.json").read_text())
                        os.kill(desc["nats_pids"][1], signal.SIGKILL)
                        for child in desc["children"]:  # a replica of every stage (rules..filter, or the chain)
                            if child["stage"] != "api" and child["replica"].endswith("-0"):
                                os.kill(child["pid"], signal.SIGKILL)
                    await anyio.sleep(0.05)
            with anyio.fail_after(120):
                while len({r.body["groupLabels"]["alertname"] for r in receiver.received}) < N:
                    await anyio.sleep(0.5)
            await anyio.sleep(3)  # late duplicates would arrive by now
        keys: dict[str, set[str]] = collections.defaultdict(set)
        for r in receiver.received:
            keys[r.body["groupLabels"]["alertname"]].add(r.headers["idempotency-key"])
        assert sorted(keys) == [f"A{i:03d}" for i in range(N)]
        twice = {k: v for k, v in keys.items() if len(v) > 1}
        assert not twice, f"notified twice under different ids: {twice}"
        assert topo.proc.returncode == 0
        desc = json.loads((storage / "endpoints.json").read_text())
        for pid in [*desc["nats_pids"], *(c["pid"] for c in desc["children"])]:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid
