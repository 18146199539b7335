"""Conformance of the API with Tocsin's OpenAPI document of Alertmanager's API v2 and of its event
rules as data (tag rules, under /api/tocsin), by schemathesis.

A real nats-server and the rules, router, filter and api stages run in a background thread
(schemathesis' pytest tests are synchronous, so the event loop serving the API cannot be the
test's own). The organisation is seeded with alerts that are active, silenced, inhibited and
muted by a time interval, so reads answer with every shape the document describes, and with
a template and a rule (the one the document's examples name, kept by a rule using it). Then
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


SEED_RULES: list[tuple[str, dict[str, Any]]] = [
    ("templates", {"name": "cpu-high", "fire": ["DeviceCPUUsage"], "resolve": ["DeviceCPUNormal"],
                   "params": {"value_field": "cpu_percent", "threshold": 90, "severity": "warning"}}),
    # (its threshold keeps the template's value_field: a replacement without one is refused)
    ("rules", {"name": "cpu-seed", "template": "cpu-high", "scope": {"matchers": ['environment="staging"']},
               "params": {"threshold": 85}}),
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
        for kind, definition in SEED_RULES:  # a template the generated rules name, kept by a rule using it
            r = await api.post(f"/api/tocsin/{kind}", json=definition)
            assert r.status_code == 201, r.text
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


# Tocsin's own endpoints (tag tocsin, served under /api/tocsin) are checked in test_api_escalation.py,
# but for event rules as data (tag rules: resources with every shape of request), fuzzed here too
schema = schemathesis.openapi.from_path(str(OPENAPI)).exclude(tag="tocsin")
rules_schema = schemathesis.openapi.from_path(str(OPENAPI)).include(tag="rules")


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, seeded: Seeded) -> None:
    case.call_and_validate(base_url=f"{seeded.url}/api/v2", headers=AUTH, checks=CHECKS, timeout=30)


@rules_schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
def test_rules_api_conforms_to_its_openapi_document(case: schemathesis.Case, seeded: Seeded) -> None:
    case.call_and_validate(base_url=f"{seeded.url}/api/tocsin", headers=AUTH, checks=CHECKS, timeout=30)


def test_rules_lifecycle_conforms(seeded: Seeded) -> None:
    """Generated names and bodies rarely meet a stored definition: one template and rule go
    through every answer of the rules API (created, conflicts, stale versions, effective, deleted)."""

    def call(path: str, method: str, status: int, **kw: Any) -> Any:
        case = rules_schema[path][method].Case(**kw)
        r = case.call_and_validate(base_url=f"{seeded.url}/api/tocsin", headers=AUTH, checks=CHECKS, timeout=30)
        assert r.status_code == status, (method, path, kw, r.text)
        return r

    template = {"name": "lifecycle-cpu", "fire": ["LifecycleCPU"], "resolve": ["LifecycleCPUOk"],
                "params": {"value_field": "cpu_percent", "threshold": 90, "for": "1m"},
                "labels": {"team": "{{ .Fields.team }}"}}
    rule = {"name": "lifecycle-prod", "template": "lifecycle-cpu", "scope": {"matchers": ['environment="production"']},
            "params": {"threshold": 80, "for": "5m"}}
    one_template = {"path_parameters": {"name": "lifecycle-cpu"}}
    one_rule = {"path_parameters": {"name": "lifecycle-prod"}}
    created = call("/templates", "POST", 201, body=template)
    assert created.json()["applied"] is True and created.json()["definition"]["params"]["for"] == 60
    call("/templates", "POST", 409, body=template)
    version = call("/templates/{name}", "GET", 200, **one_template).headers["etag"][0]
    assert version == created.headers["etag"][0]
    call("/rules", "POST", 201, body=rule)
    assert call("/rules", "POST", 422, body={"name": "x", "template": "nowhere"}).json()["field"] == "template"
    call("/templates/{name}", "PUT", 412, body=template, headers={"If-Match": '"1"'}, **one_template)
    call("/templates/{name}", "PUT", 412, body=template, headers={"If-None-Match": "*"}, **one_template)
    call("/templates/{name}", "PUT", 400, body=template, headers={"If-Match": "soon"}, **one_template)
    replaced = call("/templates/{name}", "PUT", 200, body=template, headers={"If-Match": version}, **one_template)
    assert replaced.headers["etag"][0] != version
    eff = call("/rules/effective", "GET", 200, query={"labels": ["environment=production,zone=a"]}).json()
    assert [r["rule"] for r in eff["rules"] if r["template"] == "lifecycle-cpu"] == ["lifecycle-prod"]
    assert call("/rules/effective", "GET", 400, query={"labels": ["environment"]})
    assert "lifecycle-prod" in [r["name"] for r in call("/rules", "GET", 200, query={"source": "api"}).json()]
    assert call("/templates", "GET", 200).json()
    call("/templates/{name}", "DELETE", 409, **one_template)  # a rule uses it
    call("/templates/{name}", "DELETE", 409, path_parameters={"name": "DeviceDisconnected"})  # built in
    assert "etag" not in call("/templates/{name}", "GET", 200, path_parameters={"name": "DeviceDisconnected"}).headers
    call("/rules/{name}", "DELETE", 412, headers={"If-Match": '"1"'}, **one_rule)
    call("/rules/{name}", "DELETE", 200, **one_rule)
    call("/rules/{name}", "GET", 404, **one_rule)
    call("/rules/{name}", "DELETE", 404, **one_rule)
    call("/templates/{name}", "DELETE", 200, **one_template)


@pytest.mark.parametrize("method,path,body", [
    ("PUT", "/api/tocsin/templates/abc%0A", {"fire": ["Newline"]}),
    ("POST", "/api/tocsin/templates", {"name": "abc\n", "fire": ["Newline"]}),
    ("POST", "/api/tocsin/rules", {"name": "abc\n", "template": "cpu-high"}),
    ("PUT", "/api/tocsin/rules/abc%0A", {"template": "cpu-high"}),
    ("GET", "/api/tocsin/rules/effective?org=acme%0A", None),
    ("POST", "/api/tocsin/templates", {"name": "nl", "fire": ["Newline"], "labels": {"team\n": "x"}}),
], ids=["put-template", "post-template", "post-rule", "put-rule", "effective-org", "label-name"])
def test_rules_hostile_input_is_refused(seeded: Seeded, method: str, path: str, body: Any) -> None:
    """Names and organisations that Python's ``$`` lets through with a trailing newline (which
    would end up in a Location header) are refused, never stored."""
    with httpx.Client(base_url=seeded.url, headers=AUTH, timeout=30) as client:
        r = client.request(method, path, json=body)
        assert r.status_code in (400, 403, 404, 422), r.text


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
