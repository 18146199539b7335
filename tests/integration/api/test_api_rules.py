"""Event rules as data over HTTP (issue #25, part 1), on real servers: templates and rules CRUD with
versions (If-Match), validation errors naming the field, roles and organisations, audit
records, the effective view, and a rule created by API that fires for one group of machines
and not another within a second, with the built-in and file rules still firing.

A ``rules`` + ``api`` process (the chain judges the events; its ``GET /api/v2/alerts`` shows
what fired) runs beside an application of :func:`rules_routes` with the same authentication,
on the same NATS (until the lead wires the routes into the process).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from contracts import Event, encode
from contracts.partition import partition_of
from pipeline.application import cli
from pipeline.application.api.auth.middleware import Authenticator, AuthMiddleware, auth_exception_handlers
from pipeline.application.api.context import ApiContext
from pipeline.application.api.rules import rules_routes
from pipeline.application.app import Settings
from pipeline.application.graph import stream_names
from pipeline.application.http import HttpServer
from pipeline.application.process_settings import DEFAULT_DEPLOYMENT
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.subjects import AUDIT, EVENTS
from tests.pipeline_process import running

pytestmark = pytest.mark.integration

P = 4
TOKENS = """
- {token: acme-admin, subject: ada, orgs: [acme], role: admin}
- {token: acme-viewer, subject: viv, orgs: [acme], role: viewer}
- {token: beta-admin, subject: bob, orgs: [beta], role: admin}
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
  rules:
    field_labels: {group_id: group_id}
    templates:
      - {name: disk-full, fire: [DiskFull], resolve: [DiskOk], params: {severity: warning}}
    rules:
      - {name: disk-full-everywhere, template: disk-full}
"""
ADMIN = {"Authorization": "Bearer acme-admin"}
VIEWER = {"Authorization": "Bearer acme-viewer"}
BETA = {"Authorization": "Bearer beta-admin"}
CPU = {"name": "cpu-high", "fire": ["DeviceCPUUsage"], "resolve": ["DeviceCPUNormal"],
       "params": {"value_field": "cpu_percent", "threshold": 90, "severity": "warning"},
       "annotations": {"summary": "CPU {{ .Fields.cpu_percent }}% on {{ .ResourceName }}"}}
GRP1 = {"name": "cpu-grp-1", "template": "cpu-high", "scope": {"matchers": ['group_id="grp-1"']},
        "params": {"threshold": 80}}


@dataclass
class Env:
    rules: httpx.AsyncClient  # the rules routes
    process: httpx.AsyncClient  # the rules + api process
    ctx: ApiContext
    app: Starlette


@pytest.fixture
async def env(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Env]:
    (tmp_path / "tokens.yml").write_text(TOKENS)
    (tmp_path / "am.yml").write_text(CONFIG)
    loaded = load(tmp_path / "am.yml")
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=loaded, config_file=tmp_path / "am.yml", partitions=P)
    async with running(settings, ["rules", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as process:
        nc = await connect(nats_server.url, name="test-rules-api")
        ctx = ApiContext(nc, nc.jetstream(), P, loaded)
        ctx.streams = stream_names(DEFAULT_DEPLOYMENT)  # type: ignore[attr-defined]
        auth = loaded.tocsin.auth
        assert auth is not None
        app = Starlette(routes=rules_routes(ctx, apply_timeout=5.0), exception_handlers=auth_exception_handlers(),
                        middleware=[Middleware(AuthMiddleware, config=auth, default_org="acme",  # type: ignore[arg-type]
                                               authenticator=Authenticator(auth, tokens=loaded.tokens))])
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rules",
                                         timeout=15) as rules:
                yield Env(rules, process, ctx, app)
        finally:
            await nc.close()


async def emit(ctx: ApiContext, *events: Event) -> None:
    for e in events:
        await ctx.js.publish(EVENTS.out(partition_of(e.org, P), "event"), encode(e))


def event(reason: str, device: str, group: str = "", **fields: Any) -> Event:
    return Event(id=f"{reason}-{device}-{time.monotonic_ns()}", org="acme", reason=reason, resource_kind="device",
                 resource_name=device, occurred_at=time.time(), fields={"group_id": group, **fields} if group
                 else dict(fields))


async def alerts(process: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await process.get("/api/v2/alerts", headers=ADMIN)
    assert r.status_code == 200, r.text
    return list(r.json())


async def audit_actions(ctx: ApiContext) -> list[tuple[str, str]]:
    out = []
    async for m in read_messages(ctx.js, AUDIT.stream, AUDIT.all):
        rec = msgspec.json.decode(m.data)
        out.append((rec.get("action", ""), rec.get("target", "")))
    return out


# --------------------------------------------------------------------------- tests


async def test_crud_versions_validation_roles_and_audit(env: Env) -> None:
    api = env.rules
    # the built-in and file templates are there before anything is written, with their source
    listed = {t["name"]: t for t in (await api.get("/api/tocsin/templates", headers=VIEWER)).json()}
    assert listed["DeviceDisconnected"]["source"] == "builtin" and listed["disk-full"]["source"] == "file"
    assert (await api.get("/api/tocsin/templates/disk-full", headers=VIEWER)).json()["version"] is None

    # a viewer reads but cannot write; another organisation's admin cannot write for acme
    assert (await api.post("/api/tocsin/templates", json=CPU, headers=VIEWER)).status_code == 403
    assert (await api.post("/api/tocsin/templates", json=CPU,
                           headers={**BETA, "X-Scope-OrgID": "acme"})).status_code == 403

    r = await api.post("/api/tocsin/templates", json=CPU, headers=ADMIN)
    assert r.status_code == 201, r.text
    v1 = r.json()["version"]
    assert r.headers["ETag"] == f'"{v1}"' and r.json()["source"] == "api" and r.json()["applied"] is True
    assert (await api.post("/api/tocsin/templates", json=CPU, headers=ADMIN)).status_code == 409
    got = await api.get("/api/tocsin/templates/cpu-high", headers=VIEWER)
    assert got.status_code == 200 and got.headers["ETag"] == f'"{v1}"'
    assert got.json()["definition"]["params"]["threshold"] == 90

    # optimistic concurrency: replacing names the version it replaces
    changed = {**CPU, "params": {**CPU["params"], "threshold": 85}}
    stale = await api.put("/api/tocsin/templates/cpu-high", json=changed,
                          headers={**ADMIN, "If-Match": f'"{v1 + 100}"'})
    assert stale.status_code == 412, stale.text
    r = await api.put("/api/tocsin/templates/cpu-high", json=changed, headers={**ADMIN, "If-Match": f'"{v1}"'})
    assert r.status_code == 200, r.text
    v2 = r.json()["version"]
    assert v2 > v1
    again = await api.put("/api/tocsin/templates/cpu-high", json=CPU, headers={**ADMIN, "If-Match": f'"{v1}"'})
    assert again.status_code == 412  # the second of two writers that read v1 loses

    # validation: 422 naming the field
    cases = [
        ("/api/tocsin/rules", {"name": "r1", "template": "nowhere"}, "template"),
        ("/api/tocsin/rules", {**GRP1, "params": {"threshold": "eighty"}}, "params.threshold"),
        ("/api/tocsin/rules", {**GRP1, "scope": {"matchers": ["group_id=~\"(\""]}}, "scope.matchers[0]"),
        ("/api/tocsin/rules", {**GRP1, "scope": {"org": "beta"}}, "scope.org"),
        ("/api/tocsin/templates", {**CPU, "name": "t2", "labels": {"x": "{{ .Fields.a | upper }}"}}, "labels.x"),
        ("/api/tocsin/templates", {**CPU, "name": "t3"}, "fire"),  # DeviceCPUUsage is fired by cpu-high
        ("/api/tocsin/templates", {"name": "t4", "fire": ["X"], "params": {"for": "soon"}}, "params.for"),
    ]
    for path, body, field in cases:
        r = await api.post(path, json=body, headers=ADMIN)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert (await api.post("/api/tocsin/rules", content=b"{not json", headers=ADMIN)).status_code == 400

    # rules: created, seen by acme only
    r = await api.post("/api/tocsin/rules", json=GRP1, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["definition"]["scope"] == {"org": "acme", "matchers": ['group_id="grp-1"']}
    assert (await api.get("/api/tocsin/rules/cpu-grp-1", headers={**BETA})).status_code == 404
    assert "cpu-grp-1" not in [x["name"] for x in (await api.get("/api/tocsin/rules", headers=BETA)).json()]

    # effective: most specific first, with where each comes from
    eff = (await api.get("/api/tocsin/rules/effective", params={"labels": "group_id=grp-1"},
                         headers=VIEWER)).json()
    mine = [(x["rule"], x["source"], x["template_source"]) for x in eff["rules"] if x["template"] == "cpu-high"]
    assert mine == [("cpu-grp-1", "api", "api")]
    assert next(x for x in eff["rules"] if x["template"] == "cpu-high")["effective_params"]["threshold"] == 80
    assert ("disk-full-everywhere", "file") in [(x["rule"], x["source"]) for x in eff["rules"]]
    assert ("DeviceDisconnected", "builtin") in [(x["rule"], x["source"]) for x in eff["rules"]]
    other = (await api.get("/api/tocsin/rules/effective", params={"labels": "group_id=grp-2"},
                           headers=VIEWER)).json()
    assert not [x for x in other["rules"] if x["template"] == "cpu-high"]
    assert (await api.get("/api/tocsin/rules/effective", params={"org": "beta"}, headers=VIEWER)).status_code == 403

    # deletes: not while a rule uses the template, not of the built-in or file ones, not at an old version
    assert (await api.delete("/api/tocsin/templates/cpu-high", headers=ADMIN)).status_code == 409
    assert (await api.delete("/api/tocsin/templates/DeviceDisconnected", headers=ADMIN)).status_code == 409
    assert (await api.delete("/api/tocsin/rules/nothing", headers=ADMIN)).status_code == 404
    rule_version = (await api.get("/api/tocsin/rules/cpu-grp-1", headers=ADMIN)).json()["version"]
    assert (await api.delete("/api/tocsin/rules/cpu-grp-1",
                             headers={**ADMIN, "If-Match": f'"{rule_version - 1}"'})).status_code == 412
    assert (await api.delete("/api/tocsin/rules/cpu-grp-1", headers=VIEWER)).status_code == 403
    r = await api.delete("/api/tocsin/rules/cpu-grp-1", headers={**ADMIN, "If-Match": f'"{rule_version}"'})
    assert r.status_code == 200 and r.json()["applied"] is True
    assert (await api.get("/api/tocsin/rules/cpu-grp-1", headers=ADMIN)).status_code == 404
    assert (await api.delete("/api/tocsin/templates/cpu-high", headers=ADMIN)).status_code == 200
    # re-created after its deletion: a new version
    r = await api.post("/api/tocsin/templates", json=CPU, headers=ADMIN)
    assert r.status_code == 201 and r.json()["version"] > v2

    actions = await audit_actions(env.ctx)
    for action in ("rules.template.create", "rules.template.update", "rules.rule.create", "rules.rule.delete",
                   "rules.template.delete"):
        assert action in [a for a, _ in actions], actions


async def test_a_rule_created_by_api_fires_for_one_group_and_not_another(env: Env) -> None:
    api, ctx = env.rules, env.ctx
    assert (await api.post("/api/tocsin/templates", json=CPU, headers=ADMIN)).status_code == 201
    # before any rule: the template alone fires nothing
    await emit(ctx, event("DeviceCPUUsage", "before", "grp-1", cpu_percent=99))
    created = await api.post("/api/tocsin/rules", json=GRP1, headers=ADMIN)
    assert created.status_code == 201 and created.json()["applied"] is True
    t0 = time.monotonic()
    await emit(ctx, event("DeviceCPUUsage", "n1", "grp-1", cpu_percent=85),
               event("DeviceCPUUsage", "n2", "grp-2", cpu_percent=85),
               event("DeviceCPUUsage", "n3", "grp-1", cpu_percent=75),
               event("DeviceDisconnected", "n4", "grp-2"),  # a built-in rule
               event("DiskFull", "n5", "grp-2"))  # a file rule
    with anyio.fail_after(1.0):  # within a second of the change, without a restart
        while len(found := await alerts(env.process)) < 3:
            await anyio.sleep(0.02)
    assert time.monotonic() - t0 < 1.0
    await anyio.sleep(0.3)  # nothing else comes
    fired = sorted((a["labels"]["alertname"], a["labels"]["resource"]) for a in await alerts(env.process))
    assert fired == [("DeviceCPUUsage", "n1"), ("DeviceDisconnected", "n4"), ("DiskFull", "n5")], found
    n1 = next(a for a in found if a["labels"]["resource"] == "n1")
    assert n1["annotations"]["summary"] == "CPU 85% on n1" and n1["labels"]["group_id"] == "grp-1"

    # raising the threshold applies to the events after the change
    spec = {**GRP1, "params": {"threshold": 95}}
    version = (await api.get("/api/tocsin/rules/cpu-grp-1", headers=ADMIN)).json()["version"]
    r = await api.put("/api/tocsin/rules/cpu-grp-1", json=spec, headers={**ADMIN, "If-Match": f'"{version}"'})
    assert r.status_code == 200 and r.json()["applied"] is True
    await emit(ctx, event("DeviceCPUUsage", "n6", "grp-1", cpu_percent=90),
               event("DeviceCPUUsage", "n1", "grp-1", cpu_percent=90))  # n1: now under, so it resolves
    with anyio.fail_after(2.0):
        while any(a["labels"]["resource"] == "n1" for a in await alerts(env.process)):
            await anyio.sleep(0.02)
    assert not any(a["labels"]["resource"] == "n6" for a in await alerts(env.process))


async def test_cli_apply_list_effective_show_delete(env: Env, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``tocsin rules`` against the routes served over HTTP: the accelerator-cluster example."""
    (tmp_path / "cpu.yml").write_text("""
templates:
  - name: cpu-high
    fire: [DeviceCPUUsage]
    resolve: [DeviceCPUNormal]
    params: {value_field: cpu_percent, threshold: 90, severity: warning}
rules:
  - {name: cpu-production, template: cpu-high, scope: {matchers: ['environment="production"']},
     params: {threshold: 80, for: 5m}}
  - {name: cpu-development, template: cpu-high, scope: {matchers: ['environment="development"']},
     params: {threshold: 95, for: 10m}}
""")
    (tmp_path / "token").write_text("acme-admin\n")
    server = HttpServer(env.app, "127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)

        async def tocsin_rules(*argv: str) -> tuple[int, str, str]:
            code = await anyio.to_thread.run_sync(cli.main, [
                "rules", "--url", server.url, "--token-file", str(tmp_path / "token"), *argv])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, err = await tocsin_rules("apply", str(tmp_path / "cpu.yml"))
        assert code == 0, err
        assert "template cpu-high: created" in out and "rule cpu-development: created" in out
        code, out, _ = await tocsin_rules("apply", str(tmp_path / "cpu.yml"))
        assert code == 0 and "rule cpu-production: replaced" not in out and "template cpu-high: unchanged" in out
        code, out, _ = await tocsin_rules("list", "--kind", "rules", "--source", "api")
        assert code == 0 and [line.split()[1] for line in out.splitlines()] == ["cpu-development", "cpu-production"]
        code, out, _ = await tocsin_rules("effective", "environment=production")
        mine = [line for line in out.splitlines() if line.startswith("cpu-high")]
        assert code == 0 and len(mine) == 1 and "cpu-production" in mine[0] and "threshold=80" in mine[0]
        code, out, _ = await tocsin_rules("show", "rule", "cpu-development")
        assert code == 0 and msgspec.json.decode(out)["definition"]["params"]["for"] == 600
        code, out, _ = await tocsin_rules("delete", "template", "cpu-high")
        assert code == 1  # rules still use it
        code, out, _ = await tocsin_rules("delete", "rule", "cpu-development")
        assert code == 0 and "deleted" in out
        (tmp_path / "bad.yml").write_text("rules: [{name: x, template: nowhere}]\n")
        code, _, err = await tocsin_rules("apply", str(tmp_path / "bad.yml"))
        assert code == 1 and "unknown template 'nowhere'" in err
        server.stop()
        tg.cancel_scope.cancel()
