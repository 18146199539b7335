"""``GET /api/tocsin/whoami``: the caller's identity and the organisations it may name, through
the authentication middleware as the process serves it (real NATS behind the API context)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware

from pipeline.application.api.app import api_routes
from pipeline.application.api.auth.middleware import (
    ORG_OPTIONAL_PATHS,
    Authenticator,
    AuthMiddleware,
    auth_exception_handlers,
)
from pipeline.application.api.context import ApiContext
from pipeline.application.api.whoami import WHOAMI_PATH
from pipeline.application.config.auth import AuthConfig
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect

pytestmark = pytest.mark.integration

TOKENS = """
- {token: ops-token, subject: ops, orgs: ['*'], role: admin, push: true}
- {token: team-token, subject: team, orgs: [beta, acme], role: responder}
- {token: union-token, subject: union, orgs: [acme, beta], role: viewer, allow_union: true}
- {token: solo-token, subject: solo, orgs: [gamma], role: viewer}
"""
CONFIG = """
route: {receiver: oncall}
receivers: [{name: oncall}]
tocsin: %s
"""


async def _client(nats_url: str, tmp_path: Path, tocsin: str) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "tokens.yml").write_text(TOKENS)
    loaded = load_text(CONFIG % tocsin, base_dir=tmp_path)
    nc = await connect(nats_url, name="test-whoami")
    try:
        auth = loaded.tocsin.auth or AuthConfig()
        app = Starlette(routes=api_routes(ApiContext(nc, nc.jetstream(), 2, loaded)),
                        exception_handlers=auth_exception_handlers(),
                        middleware=[Middleware(AuthMiddleware, config=auth,  # type: ignore[arg-type]
                                               default_org=loaded.tocsin.default_org,
                                               authenticator=Authenticator(auth, tokens=loaded.tokens))])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tocsin") as client:
            yield client
    finally:
        await nc.close()


@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(nats_server.url, tmp_path,
                                "{default_org: acme, auth: {mode: static, static: {tokens_file: tokens.yml}}}"):
        yield client


def test_the_middleware_lets_whoami_through_without_an_organisation() -> None:
    assert WHOAMI_PATH in ORG_OPTIONAL_PATHS


@pytest.mark.parametrize(("token", "org", "status", "expected"), [
    ("ops-token", None, 200, {"subject": "ops", "role": "admin", "method": "static", "allOrganisations": True,
                              "organisations": ["acme"], "allowUnion": False, "current": ["acme"],
                              "permissions": ["read", "silence", "ack", "push", "admin"]}),
    ("team-token", None, 200, {"subject": "team", "role": "responder", "allOrganisations": False,
                               "organisations": ["acme", "beta"], "current": [],
                               "permissions": ["read", "silence", "ack"]}),
    ("team-token", "beta", 200, {"organisations": ["acme", "beta"], "current": ["beta"]}),
    ("union-token", None, 200, {"organisations": ["acme", "beta"], "allowUnion": True, "current": ["acme", "beta"],
                                "permissions": ["read"]}),
    ("solo-token", None, 200, {"organisations": ["gamma"], "current": ["gamma"], "allOrganisations": False}),
    ("team-token", "gamma", 403, {}),
    ("wrong-token", None, 401, {}),
    (None, None, 401, {}),
], ids=["every-org", "several-orgs-no-header", "several-orgs-one-named", "union", "one-org", "foreign-org",
        "bad-token", "no-token"])
async def test_whoami(api: httpx.AsyncClient, token: str | None, org: str | None, status: int,
                      expected: dict[str, Any]) -> None:
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **({"X-Scope-OrgID": org} if org else {})}
    r = await api.get(WHOAMI_PATH, headers=headers)
    assert r.status_code == status, r.text
    if status == 200:
        body = r.json()
        assert {k: body[k] for k in expected} == expected


async def test_other_reads_still_need_the_organisation_named(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v2/alerts/groups", headers={"Authorization": "Bearer team-token"})
    assert r.status_code == 400 and "X-Scope-OrgID is required" in r.text


async def test_whoami_without_authentication(nats_server: NatsServer, tmp_path: Path) -> None:
    async for api in _client(nats_server.url, tmp_path, "{default_org: acme}"):
        body = (await api.get(WHOAMI_PATH)).json()
        assert (body["subject"], body["method"], body["allOrganisations"], body["organisations"]) == (
            "anonymous", "none", True, ["acme"])
