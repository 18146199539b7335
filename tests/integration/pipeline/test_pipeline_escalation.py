"""Escalation timelines through the whole pipeline (rules, router, filter, notifier, API) to
real webhook receivers, one per level: a policy with steps at 2 s and 4 s."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver
from tests.times import iso

pytestmark = pytest.mark.integration

TOLERANCE = 0.5  # seconds around each level's time (the machine is shared; typical error ~10 ms)


def config(url: str) -> str:
    return f"""
route:
  receiver: level0
  group_by: [service]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: level0
    webhook_configs: [{{url: {url}/level0, send_resolved: true}}]
  - name: level1
    webhook_configs: [{{url: {url}/level1}}]
  - name: level2
    webhook_configs: [{{url: {url}/level2}}]
tocsin:
  escalation:
    policies:
      - name: security
        matchers: ['severity="security"']
        ack: forbidden
        steps:
          - {{after: 2s, receivers: [level1]}}
          - {{after: 4s, receivers: [level2]}}
      - name: critical
        matchers: ['severity="critical"']
        steps:
          - {{after: 2s, receivers: [level1]}}
          - {{after: 4s, receivers: [level2]}}
"""


@pytest.fixture
async def env(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Receiver]]:
    async with http_receiver() as receiver:
        settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                            loaded=load_text(config(receiver.url)), partitions=2)
        async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep, \
                httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
            yield api, receiver


def at(rx: Receiver, path: str, service: str, status: str = "firing") -> list[float]:
    return [r.at for r in rx.received if r.path == f"/{path}" and r.body["groupLabels"].get("service") == service
            and r.body["status"] == status]


def bodies(rx: Receiver, path: str, service: str) -> list[dict[str, Any]]:
    return [r.body for r in rx.received if r.path == f"/{path}" and r.body["groupLabels"].get("service") == service]


async def push(api: httpx.AsyncClient, name: str, service: str, severity: str, resolved: bool = False) -> None:
    alert: dict[str, Any] = {"labels": {"alertname": name, "service": service, "severity": severity}}
    if resolved:
        alert["endsAt"] = iso(time.time() - 0.001)
    assert (await api.post("/api/v2/alerts", json=[alert])).status_code == 200


async def until(cond: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.02)


def group_key(rx: Receiver, service: str) -> str:
    key = bodies(rx, "level0", service)[0]["groupKey"]
    assert isinstance(key, str)
    return key


async def test_unacknowledged_every_level_on_time(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "ApiDown", "api", "critical")
    await until(lambda: at(rx, "level2", "api"), timeout=15)
    (t0,), (t1,), (t2,) = at(rx, "level0", "api"), at(rx, "level1", "api"), at(rx, "level2", "api")
    assert abs(t1 - t0 - 2.0) < TOLERANCE and abs(t2 - t0 - 4.0) < TOLERANCE, (t1 - t0, t2 - t0)
    (b1,), (b2,) = bodies(rx, "level1", "api"), bodies(rx, "level2", "api")
    assert b1["escalation"] == {"level": 1, "policy": "critical"} and b2["escalation"]["level"] == 2
    assert "escalation" not in bodies(rx, "level0", "api")[0]
    assert [a["labels"]["alertname"] for a in b1["alerts"]] == ["ApiDown"]
    await anyio.sleep(1.0)
    assert len(rx.received) == 3  # each level once
    fp = b1["alerts"][0]["fingerprint"]
    events = [(e["event"], e.get("level")) for e in
              (await api.get("/api/tocsin/timeline", params={"fingerprint": fp})).json()]
    assert events == [("fired", None), ("notified", 0), ("escalated", 1), ("escalated", 2)], events


async def test_ack_between_steps_stops_escalation_and_resolution_is_notified(
        env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "DbDown", "db", "critical")
    await until(lambda: at(rx, "level1", "db"))
    gk = group_key(rx, "db")
    r = await api.post("/api/tocsin/acks", json={"groupKey": gk, "by": "ana", "comment": "on it"})
    assert r.status_code == 202
    esc = (await api.get("/api/tocsin/escalations")).json()
    assert [(e["policy"], e["level"]) for e in esc] == [("critical", 1)]
    await anyio.sleep(4.0)  # past level 2's time
    assert at(rx, "level2", "db") == []
    assert (await api.get("/api/tocsin/escalations")).json()[0]["paused"] is True
    await push(api, "DbDown", "db", "critical", resolved=True)
    await until(lambda: at(rx, "level0", "db", "resolved"))
    await until(lambda: at(rx, "level1", "db", "resolved"))  # the receiver level 1 paged hears it too
    assert at(rx, "level2", "db") == []  # level 2 was never paged: nothing to resolve there
    fp = bodies(rx, "level0", "db")[0]["alerts"][0]["fingerprint"]
    timeline = (await api.get("/api/tocsin/timeline", params={"groupKey": gk})).json()
    assert [e["event"] for e in timeline] == ["fired", "notified", "escalated", "acknowledged", "resolved",
                                              "notified", "notified"]
    assert timeline[3]["by"] == "ana"
    assert fp in {e.get("fingerprint") for e in timeline}


async def test_forbidden_ack_is_refused_and_escalation_continues(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "Intrusion", "vault", "security")
    await until(lambda: at(rx, "level0", "vault"))
    gk = group_key(rx, "vault")
    await until(lambda: bool(at(rx, "level1", "vault")))
    r = await api.post("/api/tocsin/acks", json={"groupKey": gk, "by": "ana"})
    assert r.status_code == 409 and "forbidden" in r.json()
    fp = bodies(rx, "level0", "vault")[0]["alerts"][0]["fingerprint"]
    assert (await api.post("/api/tocsin/acks", json={"fingerprint": fp})).status_code == 409
    assert (await api.post("/api/tocsin/acks", json={"matchers": ['service="vault"']})).status_code == 409
    await until(lambda: at(rx, "level2", "vault"))
    (t0,), (t2,) = at(rx, "level0", "vault"), at(rx, "level2", "vault")
    assert abs(t2 - t0 - 4.0) < TOLERANCE


async def test_new_alert_joining_an_acknowledged_group_restarts_at_level_0(
        env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "QueueSlow", "queue", "critical")
    await until(lambda: at(rx, "level0", "queue"))
    fp = bodies(rx, "level0", "queue")[0]["alerts"][0]["fingerprint"]
    r = await api.post("/api/tocsin/acks", json={"fingerprint": fp, "by": "bob"})  # by fingerprint
    assert r.status_code == 202
    await anyio.sleep(2.5)
    assert at(rx, "level1", "queue") == []  # acknowledged before level 1
    await push(api, "QueueFull", "queue", "critical")
    await until(lambda: len(at(rx, "level0", "queue")) == 2)
    t0 = at(rx, "level0", "queue")[1]
    assert sorted(a["labels"]["alertname"] for a in bodies(rx, "level0", "queue")[1]["alerts"]) == [
        "QueueFull", "QueueSlow"]
    await until(lambda: at(rx, "level1", "queue"))
    assert abs(at(rx, "level1", "queue")[0] - t0 - 2.0) < TOLERANCE
