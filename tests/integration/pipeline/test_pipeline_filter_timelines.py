"""Timelines of the filter's behaviours through the whole pipeline to a real webhook receiver:
inhibition, silences, acknowledgement, repeat_interval, send_resolved."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

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



def config(url: str) -> str:
    return f"""
route:
  receiver: hook
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 3s
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
inhibit_rules:
  - source_matchers: [alertname="NodeDown"]
    target_matchers: [alertname="ServiceDown"]
    equal: [instance]
"""


@pytest.fixture
async def env(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Receiver]]:
    async with http_receiver() as receiver:
        settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                            loaded=load_text(config(receiver.url)), partitions=4)
        async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep, \
                httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
            yield api, receiver


def of(receiver: Receiver, alertname: str) -> list[tuple[float, str]]:
    return [(r.at, r.body["status"]) for r in receiver.received if r.body["groupLabels"]["alertname"] == alertname]


async def push(api: httpx.AsyncClient, name: str, instance: str = "a", resolved: bool = False) -> None:
    alert: dict = {"labels": {"alertname": name, "instance": instance}}
    if resolved:
        alert["endsAt"] = iso(time.time() - 0.001)
    assert (await api.post("/api/v2/alerts", json=[alert])).status_code == 200


async def test_repeat_interval_then_resolved(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    t0 = time.time()
    await push(api, "Flappy")
    await rx.wait_for(2, timeout=15)  # the first, then a repeat after repeat_interval (3s)
    (a, s1), (b, s2) = of(rx, "Flappy")[:2]
    assert (s1, s2) == ("firing", "firing")
    assert a - t0 < 1.0 and 2.8 <= b - a <= 4.5, (a - t0, b - a)
    await push(api, "Flappy", resolved=True)
    with anyio.fail_after(5):
        while of(rx, "Flappy")[-1][1] != "resolved":
            await anyio.sleep(0.05)


async def test_inhibition_source_fires_later_and_resolves_later(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "ServiceDown", "h1")
    await rx.wait_for(1)  # not inhibited yet: notified
    await push(api, "NodeDown", "h1")
    with anyio.fail_after(5):
        while not of(rx, "NodeDown"):
            await anyio.sleep(0.05)
    # the target is now inhibited: its repeat (due ~3 s after its first notification) does not come
    await anyio.sleep(4.0)
    assert [s for _, s in of(rx, "ServiceDown")] == ["firing"]
    status = (await api.get("/api/v2/alerts", params={"filter": 'alertname="ServiceDown"', "inhibited": "true"})
              ).json()[0]["status"]
    assert status["state"] == "suppressed" and len(status["inhibitedBy"]) == 1
    # the source resolves: the target is notified again at its next flush
    t = time.time()
    await push(api, "NodeDown", "h1", resolved=True)
    with anyio.fail_after(6):
        while len(of(rx, "ServiceDown")) < 2:
            await anyio.sleep(0.05)
    assert of(rx, "ServiceDown")[1][0] - t < 4.5


async def test_silence_mutes_and_expiry_restores(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    now = time.time()
    r = await api.post("/api/v2/silences", json={
        "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": False}], "startsAt": iso(now),
        "endsAt": iso(now + 3600), "createdBy": "t", "comment": "c"})
    sid = r.json()["silenceID"]
    await push(api, "Quiet")
    await push(api, "Loud")
    with anyio.fail_after(5):
        while not of(rx, "Loud"):
            await anyio.sleep(0.05)
    await anyio.sleep(1.5)
    assert of(rx, "Quiet") == []  # silenced: never notified
    t = time.time()
    assert (await api.delete(f"/api/v2/silence/{sid}")).status_code == 200
    with anyio.fail_after(5):
        while not of(rx, "Quiet"):
            await anyio.sleep(0.05)
    assert of(rx, "Quiet")[0][0] - t < 2.5  # at the next flush (group_interval 1 s)


async def test_acknowledged_group_is_not_repeated_but_resolution_is_sent(
        env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    await push(api, "Acked")
    await rx.wait_for(1)
    (alert,) = (await api.get("/api/v2/alerts", params={"filter": 'alertname="Acked"'})).json()
    r = await api.post("/api/tocsin/acks", json={"fingerprint": alert["fingerprint"], "by": "ana", "comment": "mine"})
    assert r.status_code == 202
    await anyio.sleep(5.0)  # past repeat_interval (3 s): no repeat while acknowledged
    assert [s for _, s in of(rx, "Acked")] == ["firing"]
    await push(api, "Acked", resolved=True)
    with anyio.fail_after(5):
        while of(rx, "Acked")[-1][1] != "resolved":
            await anyio.sleep(0.05)
