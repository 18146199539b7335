"""The ``unprocessed`` alert state on real servers: a pushed alert the rules stage has not applied
is listed as unprocessed (not missing), ``unprocessed=false`` leaves it out, and once the rules
stage runs the same alert is listed active."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import anyio
import httpx
import pytest

from contracts.labels import fingerprint
from pipeline.application.api.unprocessed import READ_WAIT
from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running

pytestmark = pytest.mark.integration

CONFIG = """
global:
  resolve_timeout: 10m
route:
  receiver: team
receivers:
  - name: team
"""


async def test_an_alert_the_rules_stage_has_not_applied_is_unprocessed(nats_server: NatsServer,
                                                                      tmp_path: Path) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=2)
    labels = {"alertname": "Waiting", "instance": "a"}
    async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=30) as api:
        before = time.time()
        assert (await api.post("/api/v2/alerts", json=[{"labels": labels}])).status_code == 200
        started = time.monotonic()
        (alert,) = (await api.get("/api/v2/alerts")).json()
        assert time.monotonic() - started >= READ_WAIT * 0.9  # it waited for the rules stage first
        assert alert["status"] == {"state": "unprocessed", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
        assert alert["fingerprint"] == fingerprint(labels) and alert["receivers"] == [{"name": "team"}]
        # the times the rules stage will give it: starts when pushed, ends after resolve_timeout
        starts, ends = (datetime.fromisoformat(alert[k].replace("Z", "+00:00")).timestamp()
                        for k in ("startsAt", "endsAt"))
        assert before - 1 <= starts <= time.time() and ends - starts == pytest.approx(600, abs=0.002)
        assert (await api.get("/api/v2/alerts", params={"unprocessed": "false"})).json() == []
        assert len((await api.get("/api/v2/alerts", params={"active": "false"})).json()) == 1
        assert (await api.get("/api/v2/alerts", params={"filter": 'alertname="Other"'})).json() == []
    async with running(settings, ["rules", "api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=30) as api:
        with anyio.fail_after(30):
            while (got := (await api.get("/api/v2/alerts")).json())[0]["status"]["state"] != "active":
                await anyio.sleep(0.05)
        assert [a["fingerprint"] for a in got] == [fingerprint(labels)]
        assert got[0]["startsAt"] == alert["startsAt"] and got[0]["endsAt"] == alert["endsAt"]
        assert len((await api.get("/api/v2/alerts", params={"unprocessed": "false"})).json()) == 1
