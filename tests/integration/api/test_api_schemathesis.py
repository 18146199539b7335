"""Conformance of the API with Tocsin's OpenAPI document of Alertmanager's API v2, by schemathesis.

A real nats-server and the rules, router, filter and api stages run in a background thread
(schemathesis' pytest tests are synchronous, so the event loop serving the API cannot be the
test's own). The organisation is seeded with alerts that are active, silenced, inhibited and
muted by a time interval, so reads answer with every shape the document describes. Then
every operation gets generated requests (valid ones and, for the request body and the
parameters, invalid ones) as an admin, and every answer must be documented: no 5xx, a
documented status code, content type, headers and body.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import pipeline.application.api
from pipeline.application.app import Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import start_nats
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

OPENAPI = Path(pipeline.application.api.__file__).parent / "openapi.yaml"
TOKEN = "admin-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

TOKENS = f"""
- {{token: {TOKEN}, subject: ada, orgs: [acme], role: admin, push: true}}
"""

CONFIG = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  routes:
    - receiver: db
      matchers: ['service="db"']
      continue: true
    - receiver: batch
      matchers: ['tier="batch"']
      mute_time_intervals: [always]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
receivers:
  - name: team
  - name: db
  - name: batch
time_intervals:
  - name: always
    time_intervals:
      - weekdays: ['sunday:saturday']
tocsin:
  default_org: acme
  auth:
    mode: static
    static:
      tokens_file: tokens.yml
"""



SEED_ALERTS: list[dict[str, Any]] = [
    {"labels": {"alertname": "DiskFull", "service": "db", "severity": "warning", "cluster": "c1"},
     "annotations": {"summary": "disk"}, "generatorURL": "http://prometheus/graph?g0.expr=up"},
    {"labels": {"alertname": "ClusterDown", "severity": "critical", "cluster": "c1"}},
    {"labels": {"alertname": "Noisy", "instance": "a"}},
    {"labels": {"alertname": "Nightly", "tier": "batch"}},
]


@dataclass
class Seeded:
    url: str
    silences: dict[str, str]  # id -> state


async def _seed(url: str) -> Seeded:
    """Alerts in every state, and silences in every state, visible in the groups."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as api:
        r = await api.post("/api/v2/alerts", json=SEED_ALERTS)
        assert r.status_code == 200, r.text
        now = time.time()
        silences = {}
        for state, start, end in (("active", now - 60, now + 3600), ("pending", now + 3600, now + 7200),
                                  ("expired", now - 60, now + 3600)):
            r = await api.post("/api/v2/silences", json={
                "matchers": [{"name": "alertname", "value": "Noisy", "isRegex": False, "isEqual": True}],
                "startsAt": iso(start), "endsAt": iso(end), "createdBy": "ops", "comment": "seed"})
            assert r.status_code == 200, r.text
            silences[r.json()["silenceID"]] = state
        assert (await api.delete(f"/api/v2/silence/{r.json()['silenceID']}")).status_code == 200
        deadline = time.monotonic() + 60
        while True:  # every alert grouped, and the muted group flushed (its record knows the interval)
            groups = (await api.get("/api/v2/alerts/groups")).json()
            alerts = [a for g in groups for a in g["alerts"]]
            if len(alerts) >= len(SEED_ALERTS) and any(a["status"]["mutedBy"] for a in alerts):
                return Seeded(url, silences)
            assert time.monotonic() < deadline, groups
            await asyncio.sleep(0.1)


class _Background:
    """The pipeline in a thread of its own, with its own event loop."""

    def __init__(self, root: Path) -> None:
        (root / "tokens.yml").write_text(TOKENS)
        (root / "am.yml").write_text(CONFIG)
        self.root = root
        self.seeded: Seeded | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tocsin-api", daemon=True)

    def __enter__(self) -> Seeded:
        self._thread.start()
        if not self._ready.wait(120) or self.seeded is None:
            raise RuntimeError(f"the pipeline did not start: {self.error!r}")
        return self.seeded

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test through __enter__
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with start_nats(self.root / "nats") as nats:
            settings = Settings(storage_path=self.root / "data", nats_url=nats.url, listen="127.0.0.1:0",
                                loaded=load(self.root / "am.yml"), config_file=self.root / "am.yml", partitions=2)
            async with running(settings, ["rules", "router", "filter", "api"]) as ep:
                self.seeded = await _seed(ep.api_url)
                self._ready.set()
                await self._stop.wait()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with _Background(tmp_path_factory.mktemp("schemathesis")) as seeded:
        yield seeded


# Tocsin's own endpoints (tag tocsin, served under /api/tocsin) are checked in test_api_escalation.py
schema = schemathesis.openapi.from_path(str(OPENAPI)).exclude(tag="tocsin")


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, seeded: Seeded) -> None:
    case.call_and_validate(base_url=f"{seeded.url}/api/v2", headers=AUTH, checks=CHECKS, timeout=30)


def test_known_silences_conform(seeded: Seeded) -> None:
    """Generated ids are unknown ones; the seeded silences answer with each state's shape."""
    by_id = schema["/silence/{silenceID}"]

    def call(method: str, sid: str) -> Any:
        case = by_id[method].Case(path_parameters={"silenceID": sid})
        return case.call_and_validate(base_url=f"{seeded.url}/api/v2", headers=AUTH, checks=CHECKS, timeout=30)

    for sid, state in seeded.silences.items():
        assert call("GET", sid).json()["status"]["state"] == state
    pending = next(sid for sid, state in seeded.silences.items() if state == "pending")
    assert call("DELETE", pending).status_code == 200
    assert call("GET", pending).json()["status"]["state"] == "expired"


def test_the_document_is_served(seeded: Seeded) -> None:
    with httpx.Client(base_url=seeded.url, headers=AUTH) as client:
        text = client.get("/api/v2/openapi.yaml")
        assert text.status_code == 200 and text.headers["content-type"].startswith("application/yaml")
        assert text.text == OPENAPI.read_text()
        doc = client.get("/api/v2/openapi.json").json()
        assert doc["servers"] == [{"url": "/api/v2"}] and "/alerts/groups" in doc["paths"]
        assert client.get("/api/v2/openapi.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
