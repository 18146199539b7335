"""POST /api/v2/alerts through the rules stage and back out of GET /api/v2/alerts and the history,
on real nats-server, in one `tocsin` process (api + rules)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from contracts.labels import fingerprint
from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

CONFIG = """
global:
  resolve_timeout: 6s
route:
  receiver: team
  routes:
    - receiver: db
      matchers: ['service="db"']
receivers:
  - name: team
  - name: db
tocsin:
  default_org: acme
"""



@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as c:
        yield c


async def wait_alerts(api: httpx.AsyncClient, n: int, params: dict | None = None, headers: dict | None = None,
                      timeout: float = 10) -> list[dict]:
    with anyio.fail_after(timeout):
        while True:
            got = (await api.get("/api/v2/alerts", params=params, headers=headers)).json()
            if len(got) == n:
                return got
            await anyio.sleep(0.05)


async def test_pushed_alert_is_listed_with_receivers_and_history(api: httpx.AsyncClient) -> None:
    start = time.time() - 60
    labels = {"alertname": "DiskFull", "service": "db", "instance": "a"}
    r = await api.post("/api/v2/alerts", json=[{"labels": labels, "annotations": {"summary": "disk"},
                                                "startsAt": iso(start), "generatorURL": "http://prom/x"}])
    assert r.status_code == 200, r.text
    (alert,) = await wait_alerts(api, 1)
    assert alert["labels"] == labels and alert["fingerprint"] == fingerprint(labels)
    assert alert["receivers"] == [{"name": "db"}]
    assert alert["annotations"] == {"summary": "disk"} and alert["generatorURL"] == "http://prom/x"
    assert alert["startsAt"].startswith(iso(start)[:19]) and alert["status"]["state"] == "active"
    assert (await api.get("/api/v2/alerts", params={"filter": 'service="web"'})).json() == []
    assert len((await api.get("/api/v2/alerts", params={"filter": "service=~d.*"})).json()) == 1
    assert (await api.get("/api/v2/alerts", params={"receiver": "team"})).json() == []
    # another organisation sees nothing
    assert (await api.get("/api/v2/alerts", headers={"X-Scope-OrgID": "other"})).json() == []
    # resolve_timeout (6 s): no re-push, so it resolves by itself
    await wait_alerts(api, 0, timeout=20)
    hist = (await api.get("/api/tocsin/history", params={"fingerprint": fingerprint(labels)})).json()
    assert [h["change"] for h in hist] == ["fired", "resolved"]
    assert hist[1]["cause"]["kind"] == "timer"


async def test_invalid_alerts_get_alertmanagers_400_and_valid_ones_still_count(api: httpx.AsyncClient) -> None:
    now = time.time()
    r = await api.post("/api/v2/alerts", json=[
        {"labels": {"alertname": "Good"}, "endsAt": iso(now + 600)},
        {"labels": {}},
        {"labels": {"alertname": "Backwards"}, "startsAt": iso(now), "endsAt": iso(now - 10)},
    ])
    assert r.status_code == 400
    assert r.json() == "at least one label pair required; start time must be before end time"
    (alert,) = await wait_alerts(api, 1)
    assert alert["labels"] == {"alertname": "Good"}
    r = await api.post("/api/v2/alerts", content=b'{"not": "a list"}')
    assert r.status_code == 400 and r.json()["code"] == 400 and "array" in r.json()["message"]


async def test_org_label_and_header_choose_the_organisation(api: httpx.AsyncClient) -> None:
    await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "A", "org_id": "beta"}}],
                   headers={"X-Scope-OrgID": "gamma"})
    await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "B"}}], headers={"X-Scope-OrgID": "gamma"})
    beta = await wait_alerts(api, 1, headers={"X-Scope-OrgID": "beta"})
    gamma = await wait_alerts(api, 1, headers={"X-Scope-OrgID": "gamma"})
    assert beta[0]["labels"]["alertname"] == "A" and gamma[0]["labels"]["alertname"] == "B"
    # Open mode (no authentication, as Alertmanager): without the header a read spans every
    # organisation, as Prometheus, amtool and Grafana never send one; with it, that one only.
    everyone = await wait_alerts(api, 2)
    assert sorted(a["labels"]["alertname"] for a in everyone) == ["A", "B"]
    assert (await api.get("/api/v2/alerts", headers={"X-Scope-OrgID": "acme"})).json() == []
    assert (await api.get("/api/v2/alerts", params={"filter": 'alertname="B"'})).json()[0]["labels"] == {
        "alertname": "B"}


async def test_status_and_receivers(api: httpx.AsyncClient) -> None:
    status = (await api.get("/api/v2/status")).json()
    assert "resolve_timeout: 6s" in status["config"]["original"] and status["cluster"]["status"] == "ready"
    assert (await api.get("/api/v2/receivers")).json() == [{"name": "team"}, {"name": "db"}]


async def test_history_of_a_resource(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as api:
        def labels(name: str, res: str) -> dict[str, str]:
            return {"alertname": name, "resource_kind": "device", "resource": res}

        await api.post("/api/v2/alerts", json=[{"labels": labels("Cpu", "gw-1")}, {"labels": labels("Disk", "gw-1")},
                                               {"labels": labels("Cpu", "gw-2")}])
        await wait_alerts(api, 3)
        hist = (await api.get("/api/tocsin/history", params={"resource": "device/gw-1"})).json()
        assert sorted(h["alert"]["labels"]["alertname"] for h in hist) == ["Cpu", "Disk"]
        assert {h["change"] for h in hist} == {"fired"}
        assert (await api.get("/api/tocsin/history", params={"resource": "nonsense"})).status_code == 400
        assert (await api.get("/api/tocsin/history")).status_code == 400
