"""``GET /api/tocsin/ui/groups``: the web UI's page of Alertmanager's ``alertGroups`` (the same
groups for the same query, in the UI's order, with the totals), on a running pipeline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pipeline.application.api.groups import MAX_UI_PAGE, ui_order
from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running

pytestmark = pytest.mark.integration

CONFIG = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 50ms
  routes:
    - {receiver: db, matchers: ['service="db"'], group_by: [alertname, service]}
receivers:
  - name: team
  - name: db
"""


def _ordered(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(groups, key=lambda g: ui_order(g["receiver"]["name"], g["labels"]))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same group, alert for alert (``endsAt`` of an alert without an end moves with the read)."""
    strip = [{k: v for k, v in x.items() if k != "endsAt"} for x in a["alerts"]]
    return (a["labels"], a["receiver"]) == (b["labels"], b["receiver"]) and strip == [
        {k: v for k, v in x.items() if k != "endsAt"} for x in b["alerts"]]


async def test_pages_of_the_groups_alertmanager_lists(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=2)
    end = time.time() + 3600  # a fixed end: every field of the two reads compares
    alerts = [{"labels": {"alertname": f"A{i % 7}", "i": str(i), **({"service": "db"} if i % 3 == 0 else {})},
               "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))} for i in range(40)]
    async with running(settings, ["rules", "router", "filter", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        assert (await api.post("/api/v2/alerts", json=alerts)).status_code == 200
        with anyio.fail_after(15):
            while sum(len(g["alerts"]) for g in (await api.get("/api/v2/alerts/groups")).json()) < 40:
                await anyio.sleep(0.1)
        for query in ({}, {"filter": 'service="db"'}, {"receiver": "team"}, {"filter": 'i=~"1.*"'}):
            every = _ordered((await api.get("/api/v2/alerts/groups", params=query)).json())
            pages: list[dict[str, Any]] = []
            for page in range(4):
                r = await api.get("/api/tocsin/ui/groups", params={**query, "page": page, "perPage": 3})
                assert r.status_code == 200, r.text
                doc = r.json()
                assert (doc["page"], doc["perPage"], doc["totalGroups"], doc["totalAlerts"]) == (
                    page, 3, len(every), sum(len(g["alerts"]) for g in every))
                pages += doc["groups"]
            assert len(pages) == min(12, len(every))
            assert all(_same(a, b) for a, b in zip(pages, every, strict=False)), query
        assert [g["receiver"]["name"] for g in _ordered((await api.get("/api/v2/alerts/groups")).json())][:3] == [
            "db", "db", "db"]


@pytest.mark.parametrize("params", [{"page": "-1"}, {"perPage": "0"}, {"perPage": str(MAX_UI_PAGE + 1)},
                                    {"page": "x"}, {"filter": "{"}],
                         ids=["negative-page", "empty-page", "page-too-large", "not-a-number", "bad-filter"])
async def test_bad_queries_are_refused(nats_server: NatsServer, tmp_path: Path, params: dict[str, str]) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=2)
    async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        r = await api.get("/api/tocsin/ui/groups", params=params)
        assert r.status_code == 400, r.text
