"""GET /api/v2/alerts shows what Alertmanager shows: a time-muted alert is suppressed with the
intervals in mutedBy; an alert without an end (an event alert) shows an expected end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Endpoints, Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer, PostgresServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration


def config(url: str) -> str:
    return f"""
global: {{resolve_timeout: 5m}}
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  routes:
    - {{receiver: hook, matchers: ['team="night"'], mute_time_intervals: [always]}}
receivers: [{{name: hook, webhook_configs: [{{url: "{url}/hook"}}]}}]
time_intervals:
  - name: always
    time_intervals: [{{times: [{{start_time: "00:00", end_time: "24:00"}}]}}]
tocsin: {{default_org: acme}}
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture
async def pipeline(nats_server: NatsServer, postgres_server: PostgresServer, receiver: Receiver,
                   tmp_path: Path) -> AsyncIterator[Endpoints]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, postgres_dsn=postgres_server.dsn,
                        listen="127.0.0.1:0", loaded=load_text(config(receiver.url)), partitions=2)
    async with running(settings, ["source", "rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


async def _alert(api: httpx.AsyncClient, name: str) -> dict:
    with anyio.fail_after(10):
        while True:
            got = [a for a in (await api.get("/api/v2/alerts")).json() if a["labels"].get("alertname") == name]
            if got:
                return got[0]
            await anyio.sleep(0.05)


async def test_time_muted_alert_is_suppressed_with_muted_by(pipeline: Endpoints, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=10) as api:
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Quiet", "team": "night"}},
                                               {"labels": {"alertname": "Loud"}}])
        await receiver.wait_for(1)  # Loud's flush; Quiet's group flushed at the same tick, muted
        with anyio.fail_after(10):
            while (quiet := await _alert(api, "Quiet"))["status"]["state"] != "suppressed":
                await anyio.sleep(0.05)
        assert quiet["status"] == {"state": "suppressed", "silencedBy": [], "inhibitedBy": [], "mutedBy": ["always"]}
        loud = await _alert(api, "Loud")
        assert loud["status"]["state"] == "active" and loud["status"]["mutedBy"] == []
        assert [x.body["groupLabels"]["alertname"] for x in receiver.received] == ["Loud"]
        # active=false and muted alerts: filtered like a silenced one
        names = {a["labels"]["alertname"] for a in (await api.get("/api/v2/alerts", params={"active": "false"})).json()}
        assert names == {"Quiet"}


async def test_event_alert_shows_an_expected_end(pipeline: Endpoints, postgres_server: PostgresServer) -> None:
    from stages.source.emit import emit
    from stages.source.mapping import parse_emit_args

    await emit(postgres_server.dsn, parse_emit_args(["DeviceDisconnected", "--org", "acme", "--resource",
                                                     "device/gw-9"]))
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=10) as api:
        alert = await _alert(api, "DeviceDisconnected")
    ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()
    assert ends == pytest.approx(time.time() + 300, abs=30)  # resolve_timeout ahead, never Go's zero time
