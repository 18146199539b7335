"""The chained deployment on a real server: one stream and one commit for rules, router and filter,
the API's reads through the graph's names, the filter's tick without its grace, and the
deployment recorded like P (a switch on existing streams is refused)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from nats.js.errors import NotFoundError

from pipeline.application.app import Settings
from pipeline.application.graph import CHAINED, DEPLOYMENTS, SEPARATE
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import DeploymentMismatch, connect, ensure_stream
from pipeline.foundation.runtime.subjects import StreamNames
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

STAGES = ["rules", "router", "filter", "notifier", "api"]


def config(url: str) -> str:
    return f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
tocsin:
  default_org: acme
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def settings(nats: NatsServer, tmp_path: Path, receiver: Receiver, deployment: str) -> Settings:
    return Settings(storage_path=tmp_path / "data", nats_url=nats.url, listen="127.0.0.1:0",
                    loaded=load_text(config(receiver.url)), partitions=2, deployment=deployment)


async def _count(js: object, stream: str, subject: str) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)  # type: ignore[attr-defined]
    return sum((info.state.subjects or {}).values())


async def test_chain_keeps_every_stage_in_one_stream_and_the_api_reads_it(
        nats_server: NatsServer, tmp_path: Path, receiver: Receiver) -> None:
    async with running(settings(nats_server, tmp_path, receiver, CHAINED), STAGES) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Chained", "job": "a"}},
                                                    {"labels": {"alertname": "Chained", "job": "b"}}])
        assert r.status_code == 200
        (hook,) = await receiver.wait_for(1)
        assert len(hook.body["alerts"]) == 2
        alerts = (await api.get("/api/v2/alerts")).json()
        assert sorted(a["labels"]["job"] for a in alerts) == ["a", "b"]
        (group,) = (await api.get("/api/v2/alerts/groups")).json()
        assert group["labels"] == {"alertname": "Chained"} and len(group["alerts"]) == 2
        history = (await api.get("/api/tocsin/history", params={"fingerprint": alerts[0]["fingerprint"]})).json()
        assert [h["change"] for h in history] == ["fired"]
        sid = (await api.post("/api/v2/silences", json={
            "matchers": [{"name": "alertname", "value": "Other", "isRegex": False}],
            "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z",
            "createdBy": "me", "comment": "c"})).json()["silenceID"]
        assert [s["id"] for s in (await api.get("/api/v2/silences")).json()] == [sid]

        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            for stream in ("TOCSIN_ALERTS", "TOCSIN_GROUPS"):
                with pytest.raises(NotFoundError):
                    await js.stream_info(stream)
            info = await js.stream_info("TOCSIN_SENDS")
            assert {"tocsin.alerts.>", "tocsin.groups.>", "tocsin.sends.>"} <= set(info.config.subjects or [])
            assert await _count(js, "TOCSIN_SENDS", "tocsin.alerts.out.>") == 2  # the history
            assert await _count(js, "TOCSIN_SENDS", "tocsin.groups.out.>") == 0  # flushes stay in the chain
            assert await _count(js, "TOCSIN_SENDS", "tocsin.sends.out.>") == 1
            assert await _count(js, "TOCSIN_SENDS", "tocsin.groups.state.>") >= 1
            # the notifier, unchanged, bound its consumer on TOCSIN_SENDS
            assert (await js.consumer_info("TOCSIN_SENDS", "notifier")).config.filter_subject == "tocsin.sends.out.>"
            # one consumer per partition and input: events and commands, none between the stages
            names = sorted(c.name for c in await js.consumers_info("TOCSIN_EVENTS"))
            assert names and all(n.startswith("chain_events_p") for n in names)
            # a restart rebuilds every member's state from its own subjects: nothing is sent again
            # (the groups are known, the notification log too)
        finally:
            await nc.close()
    async with running(settings(nats_server, tmp_path, receiver, CHAINED), STAGES) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        (group,) = (await api.get("/api/v2/alerts/groups")).json()
        assert len(group["alerts"]) == 2
        await anyio.sleep(2.5)  # a tick: the filter's re-evaluation finds its log, sends nothing before the repeat
        assert len(receiver.received) == 1


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
async def test_the_repeat_goes_out_on_the_tick_in_a_chain(nats_server: NatsServer, tmp_path: Path,
                                                         receiver: Receiver, deployment: str) -> None:
    """Run apart, the filter re-evaluates a quiet group ``min(group_interval / 4, 1 s)`` (here
    0.5 s) after its tick, waiting for a router flush at that tick, which comes through a
    stream. Chained, the router's flush reaches the filter in the same step: the repeat goes
    out on the tick."""
    async with running(settings(nats_server, tmp_path, receiver, deployment), STAGES) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Repeat"}}])
        first, second = await receiver.wait_for(2, timeout=15)
    # notified at the flush F; repeat_interval 3 s: the first tick (every 2 s) after F + 3 is F + 4
    expected = 4.0 if deployment == CHAINED else 4.5
    assert second.at - first.at == pytest.approx(expected, abs=0.3), (deployment, second.at - first.at)


async def test_a_switch_of_deployment_on_existing_streams_is_refused(
        nats_server: NatsServer, tmp_path: Path, receiver: Receiver) -> None:
    async with running(settings(nats_server, tmp_path, receiver, CHAINED), ["rules", "api"]):
        pass
    with pytest.raises(DeploymentMismatch, match=r"created for the 'chained' deployment.*--deployment chained"):
        async with running(settings(nats_server, tmp_path, receiver, SEPARATE), ["filter"]):
            pass
    async with running(settings(nats_server, tmp_path, receiver, CHAINED), ["filter"]):
        pass  # the recorded one starts


async def test_streams_of_a_build_without_the_setting_are_separate(nats_server: NatsServer, tmp_path: Path,
                                                                    receiver: Receiver) -> None:
    nc = await connect(nats_server.url)
    try:
        await ensure_stream(nc.jetstream(), StreamNames("alerts"))  # as an older build left them
    finally:
        await nc.close()
    with pytest.raises(DeploymentMismatch, match="'separate' deployment"):
        async with running(settings(nats_server, tmp_path, receiver, CHAINED), ["api"]):
            pass
    async with running(settings(nats_server, tmp_path, receiver, SEPARATE), ["rules"]):
        pass

