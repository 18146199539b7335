"""A real Prometheus (Debian's `prometheus`) with a rule that always fires, and Tocsin as its
Alertmanager: the alert arrives through API v2 and is listed with Prometheus' labels.

`.ci/run` installs the package and sets TOCSIN_REQUIRE_PROMETHEUS=1, so in CI a missing
Prometheus fails; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer, free_port
from tests.pipeline_process import running

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None and os.environ.get("TOCSIN_REQUIRE_PROMETHEUS") == "1":
    raise RuntimeError("prometheus is required (TOCSIN_REQUIRE_PROMETHEUS=1) but not installed: apt-get install "
                       "prometheus")
if PROMETHEUS is None:
    pytest.skip("prometheus not installed (Debian package prometheus); .ci/run installs it", allow_module_level=True)

CONFIG = """
route:
  receiver: team
  group_by: [alertname]
receivers:
  - name: team
"""


@pytest.fixture
async def tocsin(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "router", "filter", "api"]) as ep:
        yield ep.api_url


async def test_prometheus_sends_its_alerts_to_tocsin(tocsin: str, tmp_path: Path) -> None:
    host_port = tocsin.removeprefix("http://")
    (tmp_path / "rules.yml").write_text("""
groups:
  - name: always
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: page}
        annotations: {summary: "it always fires"}
""")
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{evaluation_interval: 1s, scrape_interval: 60s}}
rule_files: [{tmp_path / "rules.yml"}]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs: [{{targets: ["{host_port}"]}}]
""")
    port = free_port()
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--rules.alert.resend-delay=1s"],
                            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=tocsin) as api:
            with anyio.fail_after(60):
                while not (alerts := (await api.get("/api/v2/alerts")).json()):
                    assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                    await anyio.sleep(0.2)
        (alert,) = alerts
        assert alert["labels"]["alertname"] == "AlwaysFiring" and alert["labels"]["severity"] == "page"
        assert alert["annotations"] == {"summary": "it always fires"}
        assert alert["generatorURL"].startswith("http") and alert["status"]["state"] == "active"
        async with httpx.AsyncClient() as http:  # Prometheus sees Tocsin as a working Alertmanager
            ams = (await http.get(f"http://127.0.0.1:{port}/api/v1/alertmanagers")).json()
        assert any(host_port in a["url"] for a in ams["data"]["activeAlertmanagers"])
    finally:
        proc.terminate()
        proc.wait(timeout=20)
