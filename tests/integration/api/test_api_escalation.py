"""The acknowledgement and escalation endpoints with static bearer tokens, on real servers:
acks by fingerprint, matchers and group, unacks, 409 for a policy that forbids acks, roles
and organisations (a viewer cannot ack, another organisation sees and acks nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

TOKENS = """
- {token: acme-viewer, subject: viv, orgs: [acme], role: viewer}
- {token: acme-responder, subject: rob, orgs: [acme], role: responder, push: true}
- {token: beta-responder, subject: bea, orgs: [beta], role: responder, push: true}
"""


def config(url: str) -> str:
    return f"""
route:
  receiver: team
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs: [{{url: {url}/team}}]
  - name: oncall
    webhook_configs: [{{url: {url}/oncall}}]
tocsin:
  default_org: acme
  auth:
    mode: static
    static:
      tokens_file: tokens.yml
  escalation:
    policies:
      - name: security
        matchers: ['severity="security"']
        ack: forbidden
        steps: [{{after: 1h, receivers: [oncall]}}]
      - name: critical
        matchers: ['severity="critical"']
        steps: [{{after: 1h, receivers: [oncall]}}]
"""


def auth(token: str, org: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {token}"}
    if org:
        h["X-Scope-OrgID"] = org
    return h


ROB = auth("acme-responder")


@pytest.fixture
async def env(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Receiver]]:
    async with http_receiver() as rx:
        (tmp_path / "tokens.yml").write_text(TOKENS)
        (tmp_path / "am.yml").write_text(config(rx.url))
        settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                            loaded=load(tmp_path / "am.yml"), config_file=tmp_path / "am.yml", partitions=2)
        async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep, \
                httpx.AsyncClient(base_url=ep.api_url, timeout=15) as client:
            yield client, rx


async def fire(api: httpx.AsyncClient, rx: Receiver, name: str, severity: str) -> dict[str, Any]:
    r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": name, "severity": severity}}], headers=ROB)
    assert r.status_code == 200
    with anyio.fail_after(10):
        while not [b for b in rx.received if b.body["groupLabels"]["alertname"] == name]:
            await anyio.sleep(0.02)
    body = next(b.body for b in rx.received if b.body["groupLabels"]["alertname"] == name)
    return {"groupKey": body["groupKey"], "fingerprint": body["alerts"][0]["fingerprint"]}


async def acks(api: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    with anyio.fail_after(5):
        while len(found := (await api.get("/api/tocsin/acks", headers=ROB)).json()) != n:
            await anyio.sleep(0.05)
    return found  # type: ignore[no-any-return]


async def test_ack_unack_by_each_key_roles_and_organisations(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    crit = await fire(api, rx, "ApiDown", "critical")
    await fire(api, rx, "DbDown", "critical")
    # roles and organisations: a viewer cannot ack, another organisation cannot ack ours
    assert (await api.post("/api/tocsin/acks", json={"fingerprint": crit["fingerprint"]},
                           headers=auth("acme-viewer"))).status_code == 403
    assert (await api.post("/api/tocsin/unacks", json={"fingerprint": crit["fingerprint"]},
                           headers=auth("acme-viewer"))).status_code == 403
    assert (await api.post("/api/tocsin/acks", json={"fingerprint": crit["fingerprint"]},
                           headers=auth("beta-responder", "acme"))).status_code == 403
    assert (await api.get("/api/tocsin/escalations", headers=auth("beta-responder", "acme"))).status_code == 403
    assert (await api.get("/api/tocsin/timeline", params={"fingerprint": crit["fingerprint"]},
                          headers=auth("beta-responder", "acme"))).status_code == 403
    # beta's own view of the same fingerprint is empty
    assert (await api.get("/api/tocsin/timeline", params={"fingerprint": crit["fingerprint"]},
                          headers=auth("beta-responder"))).json() == []
    assert (await api.get("/api/tocsin/escalations", headers=auth("beta-responder"))).json() == []
    # the viewer reads
    esc = (await api.get("/api/tocsin/escalations", headers=auth("acme-viewer"))).json()
    assert sorted((e["policy"], e["level"], e["paused"]) for e in esc) == [("critical", 0, False)] * 2
    # by matchers: each matching firing alert, by fingerprint; the identity is who
    r = await api.post("/api/tocsin/acks", json={"matchers": ['severity="critical"'], "comment": "looking"},
                       headers=ROB)
    assert r.status_code == 202
    found = await acks(api, 2)
    assert {(a["kind"], a["by"], a["comment"]) for a in found} == {("alert", "rob", "looking")}
    assert (await api.post("/api/tocsin/unacks", json={"matchers": ['alertname="DbDown"']}, headers=ROB)
            ).status_code == 202
    assert [a["target"] for a in await acks(api, 1)] == [crit["fingerprint"]]
    assert (await api.post("/api/tocsin/unacks", json={"fingerprint": crit["fingerprint"]}, headers=ROB)
            ).status_code == 202
    await acks(api, 0)
    # by group
    assert (await api.post("/api/tocsin/acks", json={"groupKey": crit["groupKey"], "by": "ana"}, headers=ROB)
            ).status_code == 202
    assert [(a["kind"], a["by"]) for a in await acks(api, 1)] == [("group", "ana")]
    timeline = (await api.get("/api/tocsin/timeline", params={"groupKey": crit["groupKey"]}, headers=ROB)).json()
    # (the unack by matchers named DbDown only)
    assert [e["event"] for e in timeline] == ["fired", "notified", "acknowledged", "unacknowledged", "acknowledged"]
    assert [e.get("by") for e in timeline[2:]] == ["rob", "rob", "ana"]


@pytest.mark.parametrize("body", [
    {}, {"fingerprint": "0" * 16, "groupKey": "{}:{}"}, {"matchers": "severity=critical"},
    {"matchers": ["severity=~("]}, {"matchers": ["a=b"] * 101}, {"fingerprint": "not hex!"},
], ids=["nothing", "two-keys", "matchers-not-a-list", "bad-matcher", "too-many-matchers", "bad-fingerprint"])
async def test_invalid_acks_are_refused(env: tuple[httpx.AsyncClient, Receiver], body: dict[str, Any]) -> None:
    api, _ = env
    r = await api.post("/api/tocsin/acks", json=body, headers=ROB)
    assert r.status_code == 400, r.text


async def test_forbidden_policy_answers_409_by_every_key(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    api, rx = env
    sec = await fire(api, rx, "Intrusion", "security")
    with anyio.fail_after(5):  # the filter's state holds the escalation once the group notified
        while not (await api.get("/api/tocsin/escalations", headers=ROB)).json():
            await anyio.sleep(0.05)
    for body in ({"groupKey": sec["groupKey"]}, {"fingerprint": sec["fingerprint"]},
                 {"matchers": ['alertname="Intrusion"']}):
        r = await api.post("/api/tocsin/acks", json=body, headers=ROB)
        assert r.status_code == 409, (body, r.text)
        assert "security" in r.json() and "forbidden" in r.json()
    assert (await api.post("/api/tocsin/unacks", json={"groupKey": sec["groupKey"]}, headers=ROB)).status_code == 202
    assert (await api.get("/api/tocsin/timeline", headers=ROB)).status_code == 400


async def test_tocsin_endpoints_conform_to_the_openapi_document(env: tuple[httpx.AsyncClient, Receiver]) -> None:
    import schemathesis

    from tests.integration.api.test_api_schemathesis import OPENAPI

    api, rx = env
    crit = await fire(api, rx, "ApiDown", "critical")
    await fire(api, rx, "Intrusion", "security")
    schema = schemathesis.openapi.from_path(str(OPENAPI)).include(tag="tocsin")
    base = str(api.base_url).rstrip("/") + "/api/tocsin"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("/acks", "POST", {"body": {"fingerprint": crit["fingerprint"], "comment": "x"}}),
        ("/acks", "POST", {"body": {"matchers": ['alertname="Intrusion"']}}),  # 409
        ("/acks", "POST", {"body": {}}),  # 400
        ("/acks", "GET", {}),
        ("/unacks", "POST", {"body": {"groupKey": crit["groupKey"]}}),
        ("/escalations", "GET", {}),
        ("/escalation-policies", "GET", {}),
        ("/timeline", "GET", {"query": {"fingerprint": crit["fingerprint"]}}),
        ("/timeline", "GET", {"query": {}}),  # 400
    ]
    statuses = []
    for path, method, kw in calls:
        case = schema[path][method].Case(**kw)

        def call(c: Any = case) -> Any:
            return c.call_and_validate(base_url=base, headers=ROB, timeout=15)

        resp = await anyio.to_thread.run_sync(call)
        statuses.append(resp.status_code)
    assert statuses == [202, 409, 400, 200, 202, 200, 200, 200, 400]
