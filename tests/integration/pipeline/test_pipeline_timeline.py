"""Timeline acceptance tests of the whole pipeline in one process on real servers:
"push at t, expect a webhook between a and b", from the API and from a database row."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Endpoints, Settings
from pipeline.application.graph import DEPLOYMENTS
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer, PostgresServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration


def config(url: str) -> str:
    return f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
tocsin:
  default_org: acme
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture(params=DEPLOYMENTS)
async def pipeline(request: pytest.FixtureRequest, nats_server: NatsServer, postgres_server: PostgresServer,
                   receiver: Receiver, tmp_path: Path) -> AsyncIterator[Endpoints]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, postgres_dsn=postgres_server.dsn,
                        listen="127.0.0.1:0", loaded=load_text(config(receiver.url)), partitions=4,
                        deployment=request.param)
    async with running(settings, ["source", "rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


async def test_push_then_webhook_after_group_wait_then_resolved(pipeline: Endpoints, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=pipeline.api_url) as api:
        t0 = time.time()
        r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "HighLatency", "job": "api"},
                                                    "annotations": {"summary": "p99 > 1s"}}])
        assert r.status_code == 200
        (first,) = await receiver.wait_for(1)
        assert 1.0 <= first.at - t0 <= 1.8, first.at - t0  # group_wait 1s
        body = first.body
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
        assert body["groupLabels"] == {"alertname": "HighLatency"}
        assert [a["labels"] for a in body["alerts"]] == [{"alertname": "HighLatency", "job": "api"}]
        assert body["alerts"][0]["annotations"] == {"summary": "p99 > 1s"}
        assert first.headers.get("idempotency-key")
        with anyio.fail_after(5):  # the delivery attempt is listed for the group
            while not (tries := (await api.get("/api/tocsin/attempts", params={"groupKey": body["groupKey"]})
                                 ).json()):
                await anyio.sleep(0.05)
        assert tries[0]["status"] == "sent" and tries[0]["receiver"] == "hook"
        assert tries[0]["sendId"] == first.headers["idempotency-key"]
        # resolve it: the next flush (group_interval 2s after the first) sends "resolved"
        t1 = time.time()
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "HighLatency", "job": "api"},
                                                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t1))}])
        second = (await receiver.wait_for(2))[1]
        assert second.body["status"] == "resolved"
        assert second.at - first.at == pytest.approx(2.0, abs=0.6)  # on the group_interval tick
        assert second.headers.get("idempotency-key") != first.headers.get("idempotency-key")


async def test_database_row_to_webhook(pipeline: Endpoints, receiver: Receiver,
                                       postgres_server: PostgresServer) -> None:
    from stages.source.emit import emit
    from stages.source.mapping import parse_emit_args

    t0 = time.time()
    await emit(postgres_server.dsn, parse_emit_args(["DeviceDisconnected", "--org", "acme", "--resource",
                                                     "device/gw-7", "--message", "no heartbeat"]))
    (hook,) = await receiver.wait_for(1)
    assert 1.0 <= hook.at - t0 <= 2.0, hook.at - t0
    (alert,) = hook.body["alerts"]
    assert alert["labels"]["alertname"] == "DeviceDisconnected"
    assert alert["labels"]["resource"] == "gw-7" and alert["labels"]["org_id"] == "acme"
    assert alert["annotations"]["summary"] == "no heartbeat"


async def test_same_alert_twice_notifies_once(pipeline: Endpoints, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=pipeline.api_url) as api:
        for _ in range(3):
            await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Dup"}}])
        await receiver.wait_for(1)
        await __import__("anyio").sleep(3.0)  # two more group_interval ticks: nothing new to say
        assert len(receiver.received) == 1
