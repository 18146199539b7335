"""Reloading the configuration (POST /-/reload, SIGHUP) on a running pipeline: the new routes
apply to what comes next, nothing is resent, a bad file keeps the old configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Endpoints, Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration


def config(url: str, receiver: str, extra: str = "") -> str:
    return f"""
route: {{receiver: {receiver}, group_by: [alertname], group_wait: 200ms, group_interval: 1s, repeat_interval: 1h}}
receivers:
  - {{name: a, webhook_configs: [{{url: "{url}/a"}}]}}
  - {{name: b, webhook_configs: [{{url: "{url}/b"}}]}}
tocsin:
  default_org: acme
{extra}"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture
async def pipeline(nats_server: NatsServer, receiver: Receiver, tmp_path: Path) -> AsyncIterator[Endpoints]:
    path = tmp_path / "am.yml"
    path.write_text(config(receiver.url, "a"))
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        config_file=path, loaded=load(path), partitions=2)
    async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


def _metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


async def test_reload_applies_new_routes_without_resending(pipeline: Endpoints, receiver: Receiver,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "am.yml"
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=10) as api:
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Before"}}])
        (first,) = await receiver.wait_for(1)
        assert first.path == "/a"

        path.write_text(config(receiver.url, "b"))
        r = await api.post("/-/reload")
        assert r.status_code == 200, r.text
        metrics = (await api.get("/metrics")).text
        assert _metric(metrics, "alertmanager_config_last_reload_successful") == 1
        assert _metric(metrics, "tocsin_config_last_reload_success_timestamp_seconds") > 0
        assert "receiver: b" in (await api.get("/api/v2/status")).json()["config"]["original"]

        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "After"}}])
        second = (await receiver.wait_for(2))[1]
        assert second.path == "/b" and second.body["groupLabels"] == {"alertname": "After"}

        # A file that does not load: 500 with the reason, the old configuration stays.
        path.write_text("route: {receiver: nowhere}\nreceivers: [{name: a}]\n")
        r = await api.put("/-/reload")
        assert r.status_code == 500 and r.text.startswith("failed to reload config:") and "nowhere" in r.text
        assert _metric((await api.get("/metrics")).text, "alertmanager_config_last_reload_successful") == 0
        # A setting read only at start: refused, naming it.
        path.write_text(config(receiver.url, "a").replace("default_org: acme", "default_org: other"))
        r = await api.post("/-/reload")
        assert r.status_code == 500 and "tocsin.default_org changed" in r.text

        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "StillB"}}])
        await receiver.wait_for(3)
        await anyio.sleep(2.5)  # two group_interval ticks: the reloads resent nothing
        # As Alertmanager, which rebuilds its dispatcher from the active alerts at a reload: the
        # new routes take every active alert, so Before, sent to a, is b's too and goes to b
        # once; nothing is sent twice to one receiver.
        assert sorted((x.path, x.body["groupLabels"]["alertname"]) for x in receiver.received) == [
            ("/a", "Before"), ("/b", "After"), ("/b", "Before"), ("/b", "StillB")]


async def test_sighup_reloads_a_process(nats_server: NatsServer, tmp_path: Path) -> None:
    path = tmp_path / "am.yml"
    path.write_text(config("http://127.0.0.1:9", "a"))
    storage = tmp_path / "api"
    log = tmp_path / "api.log"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.application.cli",
                             "run", "api", "--storage.path", str(storage),
                             "--config.file", str(path), "--partitions", "2"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "TOCSIN_NATS_URL": nats_server.url})
    try:
        with anyio.fail_after(30):
            while not (storage / "endpoints.json").exists():
                assert proc.poll() is None, log.read_text()
                await anyio.sleep(0.1)
        url = json.loads((storage / "endpoints.json").read_text())["api_url"]
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            with anyio.fail_after(15):
                while (await api.get("/-/ready")).status_code != 200:
                    await anyio.sleep(0.1)
            path.write_text(config("http://127.0.0.1:9", "b"))
            proc.send_signal(signal.SIGHUP)
            with anyio.fail_after(10):
                while "receiver: b" not in (await api.get("/api/v2/status")).json()["config"]["original"]:
                    await anyio.sleep(0.1)
            assert proc.poll() is None  # SIGHUP reloads, it does not stop the process
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "configuration reloaded" in log.read_text()
