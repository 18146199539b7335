"""Silences through the API and the filter stage on a real nats-server: create, read, update,
expire, and their effect on alert status; acknowledgements listed."""

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
from tests.times import iso

pytestmark = pytest.mark.integration

CONFIG = """
route:
  receiver: team
receivers:
  - name: team
"""



@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "filter", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as client:
        yield client


def silence(matchers: list[dict], start: float, end: float, **extra: str) -> dict:
    return {"matchers": matchers, "startsAt": iso(start), "endsAt": iso(end), "createdBy": "ops",
            "comment": "maintenance", **extra}


EQ = {"name": "alertname", "value": "Noisy", "isRegex": False, "isEqual": True}


async def test_silence_lifecycle(api: httpx.AsyncClient) -> None:
    now = time.time()
    r = await api.post("/api/v2/silences", json=silence([EQ], now - 1, now + 3600))
    assert r.status_code == 200, r.text
    sid = r.json()["silenceID"]
    listed = (await api.get("/api/v2/silences")).json()
    assert [s["id"] for s in listed] == [sid]
    one = (await api.get(f"/api/v2/silence/{sid}")).json()
    assert one["status"]["state"] == "active" and one["matchers"] == [EQ] and one["createdBy"] == "ops"
    # filter by the silence's matchers
    assert (await api.get("/api/v2/silences", params={"filter": 'alertname="Other"'})).json() == []
    assert len((await api.get("/api/v2/silences", params={"filter": 'alertname="Noisy"'})).json()) == 1
    # the alert it matches shows as suppressed, silenced by it
    await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Noisy"}}, {"labels": {"alertname": "Calm"}}])
    with anyio.fail_after(10):
        while len(got := (await api.get("/api/v2/alerts")).json()) < 2:
            await anyio.sleep(0.05)
    by_name = {a["labels"]["alertname"]: a["status"] for a in got}
    assert by_name["Noisy"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
    assert by_name["Calm"]["state"] == "active"
    assert [a["labels"]["alertname"] for a in (await api.get("/api/v2/alerts", params={"silenced": "false"})).json()
            ] == ["Calm"]
    # an in-place update (comment) keeps the id; changing matchers of an active silence makes a new one
    update = {**silence([EQ], now, now + 7200, id=sid, comment="longer"), "startsAt": one["startsAt"]}
    r = await api.post("/api/v2/silences", json=update)  # as amtool does: the stored start, resent
    assert r.json()["silenceID"] == sid
    other = {"name": "alertname", "value": "Noisy|Loud", "isRegex": True, "isEqual": True}
    r = await api.post("/api/v2/silences", json=silence([other], now - 1, now + 7200, id=sid))
    new_id = r.json()["silenceID"]
    assert new_id != sid
    states = {s["id"]: s["status"]["state"] for s in (await api.get("/api/v2/silences")).json()}
    assert states == {sid: "expired", new_id: "active"}
    # expire
    assert (await api.delete(f"/api/v2/silence/{new_id}")).status_code == 200
    assert (await api.get(f"/api/v2/silence/{new_id}")).json()["status"]["state"] == "expired"


@pytest.mark.parametrize("body,status,message", [
    (lambda now: silence([EQ], now + 10, now + 5), 400, "start time must be before end time"),
    (lambda now: silence([EQ], now - 100, now - 50), 400, "end time can't be in the past"),
    (lambda now: silence([{"name": "a", "value": "", "isRegex": False, "isEqual": True}], now, now + 60), 400,
     "at least one matcher must not match the empty string"),
    (lambda now: silence([EQ], now, now + 60, id="no-such-id"), 404, "not found"),
], ids=["backwards", "past", "matches-empty", "unknown-id"])
async def test_bad_silences_are_refused(api: httpx.AsyncClient, body, status: int, message: str) -> None:
    r = await api.post("/api/v2/silences", json=body(time.time()))
    assert r.status_code == status, r.text
    assert message in r.json()


async def test_unknown_silence_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v2/silence/nope")).status_code == 404
    assert (await api.delete("/api/v2/silence/nope")).status_code == 404


async def test_acknowledgement_is_listed(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/tocsin/acks", json={"fingerprint": "0123456789abcdef", "by": "ana", "comment": "on it"})
    assert r.status_code == 202
    with anyio.fail_after(10):
        while not (acks := (await api.get("/api/tocsin/acks")).json()):
            await anyio.sleep(0.05)
    assert acks[0]["target"] == "0123456789abcdef" and acks[0]["by"] == "ana" and acks[0]["active"] is True


GROUPED = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 0s
  routes:
    - receiver: db
      matchers: ['service="db"']
receivers:
  - name: team
  - name: db
"""


async def test_alert_groups(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(GROUPED), partitions=4)
    async with running(settings, ["rules", "router", "filter", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        await api.post("/api/v2/alerts", json=[
            {"labels": {"alertname": "Disk", "service": "db", "i": "1"}},
            {"labels": {"alertname": "Disk", "service": "db", "i": "2"}},
            {"labels": {"alertname": "Cpu", "i": "3"}},
        ])
        with anyio.fail_after(10):
            while len(groups := (await api.get("/api/v2/alerts/groups")).json()) < 2:
                await anyio.sleep(0.05)
        by_receiver = {g["receiver"]["name"]: g for g in groups}
        assert by_receiver["db"]["labels"] == {"alertname": "Disk"}
        assert sorted(a["labels"]["i"] for a in by_receiver["db"]["alerts"]) == ["1", "2"]
        assert by_receiver["team"]["labels"] == {"alertname": "Cpu"}
        only_db = (await api.get("/api/v2/alerts/groups", params={"receiver": "db"})).json()
        assert [g["receiver"]["name"] for g in only_db] == ["db"]
        filtered = (await api.get("/api/v2/alerts/groups", params={"filter": 'i="2"'})).json()
        assert [[a["labels"]["i"] for a in g["alerts"]] for g in filtered] == [["2"]]
