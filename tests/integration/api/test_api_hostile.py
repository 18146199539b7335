"""Hostile requests and failures at the API's edge, on real servers (issue #27, items 4 and 6-9):
liveness follows the NATS connection, a bad tokens file stops the start, deep bodies and wild
query parameters are 400s, denials are audited and failed authentication is rate-limited per
client address, and /api/v2/status re-marshals the configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest
import yaml

from pipeline.application.app import Settings
from pipeline.application.config.auth import AuthConfig, StaticConfig
from pipeline.application.settings import load, load_text
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.embedded import NatsServer, start_nats
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

PLAIN = """
route:
  receiver: team
receivers:
  - name: team
tocsin:
  default_org: acme
"""

TOKENS = """
- {token: acme-viewer, subject: viv, orgs: [acme], role: viewer}
- {token: acme-admin, subject: ada, orgs: [acme], role: admin}
"""

AUTH = """
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
  limits:
    rate: 2
"""


def bearer(token: str, client: str | None = None, org: str | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {token}"}
    if client:  # uvicorn believes X-Forwarded-For from 127.0.0.1: a client address of our choosing
        h["X-Forwarded-For"] = client
    if org:
        h["X-Scope-OrgID"] = org
    return h


@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(PLAIN), partitions=2)
    async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as c:
        yield c


@pytest.fixture
async def authed(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "tokens.yml").write_text(TOKENS)
    (tmp_path / "am.yml").write_text(AUTH)
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load(tmp_path / "am.yml"), config_file=tmp_path / "am.yml", partitions=2)
    async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as c:
        yield c


# --------------------------------------------------------------------------- 4: failure is visible


async def test_healthy_fails_after_the_nats_grace_and_recovers_when_nats_returns(tmp_path: Path) -> None:
    grace = 1.5
    config = PLAIN + "  nats_disconnect_grace: 1500ms\n"
    async with start_nats(tmp_path / "nats") as ns:
        settings = Settings(storage_path=tmp_path / "data", nats_url=ns.url, listen="127.0.0.1:0",
                            loaded=load_text(config), partitions=2)
        async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as c:
            assert (await c.get("/-/healthy")).status_code == 200
            ns.kill()
            lost = time.monotonic()
            # nats-py reconnects meanwhile: alive (not restarted) but not ready
            r = await c.get("/-/healthy")
            assert r.status_code == 200, r.text
            with anyio.fail_after(5):
                while (await c.get("/-/ready")).status_code != 503:
                    await anyio.sleep(0.05)
                while (r := await c.get("/-/healthy")).status_code == 200:
                    await anyio.sleep(0.05)
            assert r.status_code == 503 and "NATS" in r.text
            assert time.monotonic() - lost >= grace
            # nats-server back on the same port and store: the process recovers without a restart
            async with start_nats(tmp_path / "nats", port=ns.port):
                with anyio.fail_after(15):
                    while (await c.get("/-/healthy")).status_code != 200:
                        await anyio.sleep(0.1)
                    while (await c.get("/-/ready")).status_code != 200:
                        await anyio.sleep(0.1)
                r = await c.post("/api/v2/alerts", json=[{"labels": {"alertname": "Back"}}])
                assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- 6: bad tokens file


@pytest.mark.parametrize(("tokens", "where", "problem"), [
    (None, "am.yml:{line}: tocsin.auth.static.tokens_file", "No such file or directory"),
    ("- {token: t, subject: s, orgs: [acme], role: god}\n", "tokens.yml:1: [0].role", 'unknown role "god"'),
], ids=["missing-file", "role-god"])
def test_a_broken_tokens_file_stops_the_start_with_file_and_line(
        tmp_path: Path, tokens: str | None, where: str, problem: str) -> None:
    (tmp_path / "am.yml").write_text(AUTH)
    if tokens is not None:
        (tmp_path / "tokens.yml").write_text(tokens)
    line = AUTH.splitlines().index("      tokens_file: tokens.yml") + 1
    # a subprocess with a timeout: a process that starts anyway fails the test instead of hanging it
    done = subprocess.run([sys.executable, "-m", "pipeline.application.cli",
                           "up", "--config.file", str(tmp_path / "am.yml"),
                           "--storage.path", str(tmp_path / "d"), "--web.listen-address", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    (first, *_) = done.stderr.splitlines()
    assert first.startswith(f"tocsin: {tmp_path}/{where.format(line=line)}: "), done.stderr
    assert problem in first
    assert not (tmp_path / "d" / "endpoints.json").exists()  # never became ready


async def test_a_process_given_a_bad_tokens_file_in_code_never_becomes_ready(nats_server: NatsServer,
                                                                            tmp_path: Path) -> None:
    # A Loaded built in code has not read its files: the process reads them before it serves.
    loaded = load_text(PLAIN)
    auth = AuthConfig(mode="static", static=StaticConfig(tokens_file="gone.yml"))
    loaded = dataclasses.replace(loaded, tocsin=msgspec.structs.replace(loaded.tocsin, auth=auth))
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=loaded, config_file=tmp_path / "am.yml", partitions=2)
    with pytest.raises(ConfigError, match=r"gone\.yml"):
        async with running(settings, ["api"]):
            pass
    assert not (tmp_path / "data" / "endpoints.json").exists()


# --------------------------------------------------------------------------- 7: unhandled 500s


@pytest.mark.parametrize("path", ["/api/v2/alerts", "/api/v2/silences", "/api/tocsin/acks"])
async def test_deeply_nested_bodies_are_400_in_alertmanagers_shape(api: httpx.AsyncClient, path: str) -> None:
    for body in (b"[" * 100_000, b"[" * 65 + b"]" * 65, b'{"a":' * 70 + b"1" + b"}" * 70):
        r = await api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body[:10], r.text)
        assert r.json()["code"] == 400 and "deep" in r.json()["message"]
    assert (await api.get("/-/healthy")).status_code == 200
    # brackets inside strings are not nesting
    labels = {"alertname": "Deep", "text": "[" * 1000 + '\\"{'}
    r = await api.post("/api/v2/alerts", json=[{"labels": labels}])
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("params", "names"), [
    ({"groupKey": "g", "limit": "-1"}, "limit"),
    ({"groupKey": "g", "limit": "0"}, "limit"),
    ({"groupKey": "g", "limit": "1e3"}, "limit"),
    ({"groupKey": "g", "limit": "99999999999999999999"}, "limit"),
    ({"groupKey": "g", "since": "1e300"}, "since"),
    ({"groupKey": "g", "since": "nan"}, "since"),
    ({"groupKey": "g", "since": "inf"}, "since"),
    ({"groupKey": "g", "since": "-5"}, "since"),
    ({"fingerprint": "x" * 5000}, "fingerprint"),
    ({"groupKey": "g\x00h"}, "groupKey"),
    ({"groupKey": "g" * 5000}, "groupKey"),
    ({}, "groupKey"),
], ids=lambda v: "-".join(f"{k}={str(x)[:12]!r}" for k, x in v.items()) if isinstance(v, dict) else v)
async def test_attempts_parameters_out_of_range_are_400_naming_them(api: httpx.AsyncClient, params: dict[str, str],
                                                                     names: str) -> None:
    r = await api.get("/api/tocsin/attempts", params=params)
    assert r.status_code == 400, r.text
    assert names in r.json()


@pytest.mark.parametrize(("params", "names"), [
    ({"fingerprint": "a" * 5000}, "fingerprint"),
    ({"fingerprint": "ABCDEF0123456789"}, "fingerprint"),
    ({"resource": "device/" + "n" * 5000}, "resource name"),
    ({"resource": "dev\x01ice/x"}, "resource kind"),
], ids=["long-fingerprint", "upper-fingerprint", "long-resource", "control-char"])
async def test_history_parameters_are_checked(api: httpx.AsyncClient, params: dict[str, str], names: str) -> None:
    r = await api.get("/api/tocsin/history", params=params)
    assert r.status_code == 400, r.text
    assert names in r.json()


# --------------------------------------------------------------------------- 8: denials audited, failures limited


async def audit_trail(c: httpx.AsyncClient) -> list[dict]:
    """The denials in acme's trail (the admin's own reads are held to limits.rate: 2)."""
    while (r := await c.get("/api/tocsin/audit", headers=bearer("acme-admin", "10.9.9.9"))).status_code == 429:
        await anyio.sleep(0.5)
    assert r.status_code == 200, r.text
    return [rec for rec in r.json() if rec["action"] == "request.denied"]


async def test_denied_requests_are_audited(authed: httpx.AsyncClient) -> None:
    c = authed
    assert (await c.get("/api/v2/alerts", headers={"X-Forwarded-For": "10.0.0.1"})).status_code == 401
    assert (await c.get("/api/v2/alerts", headers=bearer("wrong", "10.0.0.1"))).status_code == 401
    # a viewer may not silence (refused in the handler), nor read another organisation (at the edge)
    now = time.time()
    r = await c.post("/api/v2/silences", headers=bearer("acme-viewer", "10.0.0.2"), json={
        "matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": iso(now), "endsAt": iso(now + 60),
        "createdBy": "v", "comment": "c"})
    assert r.status_code == 403, r.text
    assert (await c.get("/api/v2/alerts", headers=bearer("acme-viewer", "10.0.0.2", org="beta"))).status_code == 403
    with anyio.fail_after(5):
        while len(records := await audit_trail(c)) < 4:
            await anyio.sleep(0.1)
    by = {(rec["details"]["status"], rec["subject"], rec["details"]["http_method"], rec["details"]["path"]): rec
          for rec in records}
    assert set(by) - {("429", "ada", "GET", "/api/tocsin/audit")} == {
        ("401", "", "GET", "/api/v2/alerts"), ("403", "viv", "POST", "/api/v2/silences"),
        ("403", "viv", "GET", "/api/v2/alerts")}
    unauth = [rec for rec in records if rec["details"]["status"] == "401"]
    assert len(unauth) == 2 and {rec["method"] for rec in unauth} == {"none"}
    assert {rec["details"]["reason"] for rec in unauth} == {"authentication required", "invalid token"}
    assert all(rec["details"]["client"] == "10.0.0.1" for rec in unauth)
    silence = by[("403", "viv", "POST", "/api/v2/silences")]
    assert silence["outcome"] == "denied" and silence["org"] == "acme" and silence["details"]["client"] == "10.0.0.2"
    assert "silence" in silence["details"]["reason"]
    assert "wrong" not in str(records)  # the token tried is never recorded


async def test_failed_authentication_is_rate_limited_per_address_and_audited_within_a_budget(
        authed: httpx.AsyncClient) -> None:
    c = authed
    started = time.monotonic()
    responses = await asyncio.gather(*(c.get("/api/v2/alerts", headers=bearer(f"guess-{i}", "10.0.0.7"))
                                       for i in range(50)))
    took = time.monotonic() - started
    codes = [r.status_code for r in responses]
    # the default budget: a burst of 20, then 10 per second (some refill while the 50 arrive,
    # more on a loaded machine: at most 10 for each second they took)
    assert set(codes) == {401, 429} and 20 <= codes.count(401) <= 21 + 10 * took, (took, codes)
    limited = await c.get("/api/v2/alerts", headers=bearer("yet-another-guess", "10.0.0.7"))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "failed authentications" in limited.json()
    # a valid token is not locked out by a flood from its (maybe shared) address, nor from another
    assert (await c.get("/api/v2/alerts", headers=bearer("acme-viewer", "10.0.0.7"))).status_code == 200
    assert (await c.get("/api/v2/alerts", headers=bearer("wrong", "10.0.0.8"))).status_code == 401
    # the flood wrote a handful of audit records, not 51; the next one counts the rest
    with anyio.fail_after(5):
        while not (flood := [r for r in await audit_trail(c) if r["details"]["client"] == "10.0.0.7"]):
            await anyio.sleep(0.1)
    assert len(flood) <= 6
    await anyio.sleep(1.1)
    assert (await c.get("/api/v2/alerts", headers=bearer("again", "10.0.0.7"))).status_code in (401, 429)
    with anyio.fail_after(5):
        while not (later := [r for r in await audit_trail(c)
                             if r["details"]["client"] == "10.0.0.7" and "suppressed" in r["details"]]):
            await anyio.sleep(0.1)
    assert int(later[-1]["details"]["suppressed"]) + len(flood) >= 51
    metrics = (await c.get("/metrics")).text
    assert 'tocsin_api_denied_requests_total{status="429"}' in metrics


# --------------------------------------------------------------------------- 9: status re-marshals


STATUS_CONFIG = """
global:
  resolve_timeout: 6s   # a comment
  slack_api_url: https://hooks.slack.com/services/T0/B0/slack-secret
route:
  receiver: team
  group_wait: 10s
receivers:
  - name: team
    webhook_configs:
      # - url: http://old.example/hooks/commented-out-secret
      - url: http://new.example/hooks/current-secret
    opsgenie_configs:
      - api_key: opsgenie-secret
tocsin:
  default_org: acme
"""


async def test_status_re_marshals_the_configuration(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(STATUS_CONFIG), partitions=2)
    async with running(settings, ["api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=10) as c:
        original = (await c.get("/api/v2/status")).json()["config"]["original"]
    assert "#" not in original and "comment" not in original and "old.example" not in original
    assert "secret" not in original.replace("<secret>", "")
    doc = yaml.safe_load(original)
    assert doc["global"]["resolve_timeout"] == "6s" and doc["global"]["slack_api_url"] == "<secret>"
    assert doc["route"] == {"receiver": "team", "continue": False, "group_wait": "10s"}
    assert doc["receivers"][0]["webhook_configs"][0]["url"] == "<secret>"
    assert doc["receivers"][0]["opsgenie_configs"][0]["api_key"] == "<secret>"
    assert "tocsin" not in doc
