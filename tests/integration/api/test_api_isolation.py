"""Organisation isolation and roles with static bearer tokens, on real servers: every read and
write is confined to the caller's organisations by the server, whatever the caller sends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

TOKENS = """
- {token: acme-viewer, subject: viv, orgs: [acme], role: viewer}
- {token: acme-responder, subject: rob, orgs: [acme], role: responder, push: true}
- {token: acme-admin, subject: ada, orgs: [acme], role: admin}
- {token: beta-responder, subject: bea, orgs: [beta], role: responder, push: true}
- {token: two-orgs, subject: tom, orgs: [acme, beta], role: viewer}
- {token: union, subject: uma, orgs: [acme, beta], role: viewer, allow_union: true}
"""

CONFIG = """
route:
  receiver: team
receivers:
  - name: team
tocsin:
  default_org: acme
  auth:
    mode: static
    static:
      tokens_file: tokens.yml
"""



def auth(token: str, org: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {token}"}
    if org:
        h["X-Scope-OrgID"] = org
    return h


@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "tokens.yml").write_text(TOKENS)
    (tmp_path / "am.yml").write_text(CONFIG)
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load(tmp_path / "am.yml"), config_file=tmp_path / "am.yml", partitions=4)
    async with running(settings, ["rules", "filter", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as client:
        # each org gets one alert and one silence
        for token, name in (("acme-responder", "AcmeAlert"), ("beta-responder", "BetaAlert")):
            r = await client.post("/api/v2/alerts", json=[{"labels": {"alertname": name}}], headers=auth(token))
            assert r.status_code == 200, r.text
            now = time.time()
            r = await client.post("/api/v2/silences", headers=auth(token), json={
                "matchers": [{"name": "alertname", "value": name, "isRegex": False}], "startsAt": iso(now),
                "endsAt": iso(now + 3600), "createdBy": token, "comment": "c"})
            assert r.status_code == 200, r.text
        with anyio.fail_after(10):
            while len((await client.get("/api/v2/alerts", headers=auth("union", "acme|beta"),
                                        params={"silenced": "true"})).json()) < 2:
                await anyio.sleep(0.05)
        yield client


async def names(api: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[str]:
    r = await api.get("/api/v2/alerts", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return sorted(a["labels"]["alertname"] for a in r.json())


async def test_unauthenticated_requests_get_401_but_health_is_public(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v2/alerts")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert isinstance(r.json(), str)
    assert (await api.get("/api/v2/alerts", headers=auth("not-a-token"))).status_code == 401
    assert (await api.get("/-/healthy")).status_code == 200
    assert (await api.get("/metrics")).status_code == 200


async def test_omitted_filter_sees_only_own_organisation(api: httpx.AsyncClient) -> None:
    assert await names(api, auth("acme-viewer"), silenced="true") == ["AcmeAlert"]
    assert await names(api, auth("beta-responder"), silenced="true") == ["BetaAlert"]


async def test_negative_matcher_does_not_cross_organisations(api: httpx.AsyncClient) -> None:
    assert await names(api, auth("acme-viewer"), filter='alertname!="AcmeAlert"', silenced="true") == []


async def test_forged_scope_header_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v2/alerts", headers=auth("acme-viewer", "beta"))
    assert r.status_code == 403 and isinstance(r.json(), str)


async def test_several_organisations_need_a_name_or_the_union_right(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v2/alerts", headers=auth("two-orgs"))).status_code == 400
    assert await names(api, auth("two-orgs", "beta"), silenced="true") == ["BetaAlert"]
    assert (await api.get("/api/v2/alerts", headers=auth("two-orgs", "acme|beta"))).status_code == 403
    assert await names(api, auth("union", "acme|beta"), silenced="true") == ["AcmeAlert", "BetaAlert"]


async def test_silences_are_scoped(api: httpx.AsyncClient) -> None:
    acme = (await api.get("/api/v2/silences", headers=auth("acme-viewer"))).json()
    beta = (await api.get("/api/v2/silences", headers=auth("beta-responder"))).json()
    assert [s["createdBy"] for s in acme] == ["acme-responder"] and [s["createdBy"] for s in beta] == ["beta-responder"]
    beta_id = beta[0]["id"]
    # another organisation's silence id: not found, and cannot be expired
    assert (await api.get(f"/api/v2/silence/{beta_id}", headers=auth("acme-admin"))).status_code == 404
    assert (await api.delete(f"/api/v2/silence/{beta_id}", headers=auth("acme-responder"))).status_code == 404
    beta_after = (await api.get(f"/api/v2/silence/{beta_id}", headers=auth("beta-responder"))).json()
    assert beta_after["status"]["state"] == "active"


async def test_roles(api: httpx.AsyncClient) -> None:
    now = time.time()
    body = {"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": iso(now),
            "endsAt": iso(now + 60), "createdBy": "x", "comment": "y"}
    assert (await api.post("/api/v2/silences", json=body, headers=auth("acme-viewer"))).status_code == 403
    assert (await api.post("/api/v2/alerts", json=[{"labels": {"a": "b"}}], headers=auth("acme-viewer"))
            ).status_code == 403  # push is its own permission
    assert (await api.post("/api/tocsin/acks", json={"fingerprint": "0" * 16}, headers=auth("acme-viewer"))
            ).status_code == 403
    assert (await api.get("/api/v2/status", headers=auth("acme-viewer"))).json()["config"]["original"] == ""
    assert "receiver: team" in (await api.get("/api/v2/status", headers=auth("acme-admin"))).json()["config"][
        "original"]
    assert (await api.get("/api/tocsin/audit", headers=auth("acme-responder"))).status_code == 403


async def test_pushing_for_another_organisation_by_label_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Sneaky", "org_id": "beta"}}],
                       headers=auth("acme-responder"))
    assert r.status_code == 403
    await anyio.sleep(0.5)
    assert "Sneaky" not in await names(api, auth("beta-responder"), silenced="true")


async def test_audit_lists_writes_of_the_organisation(api: httpx.AsyncClient) -> None:
    records = (await api.get("/api/tocsin/audit", headers=auth("acme-admin"))).json()
    actions = sorted((r["action"], r["subject"]) for r in records)
    assert ("alerts.push", "rob") in actions and ("silence.create", "rob") in actions
    assert all(r["org"] == "acme" for r in records)
