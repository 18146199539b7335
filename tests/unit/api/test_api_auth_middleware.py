"""AuthMiddleware end to end on a tiny Starlette app (starlette's TestClient)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from api_auth_keys import NOW, claims, jwks, jwt_config, public_jwk, sign
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.application.api.auth.middleware import (
    AuthConfig,
    Authenticator,
    AuthMiddleware,
    auth_exception_handlers,
    identity_of,
    orgs_of,
    request_id_of,
    require,
)
from pipeline.application.config.auth import MtlsConfig, StaticConfig
from pipeline.application.config.jwt_keys import FileKeys, keys_from_jwks
from pipeline.application.config.limits import LimitsConfig
from pipeline.application.config.static_tokens import parse_static_tokens, token_digest

TOKENS = f"""\
- {{token: viewer-token, subject: viewer, orgs: [acme], role: viewer}}
- {{token: responder-token, subject: responder, orgs: [acme, beta], role: responder}}
- {{token: union-token, subject: union, orgs: [acme, beta], role: responder, allow_union: true}}
- {{token_sha256: {token_digest("push-token")}, subject: prometheus, orgs: [acme], push: true}}
- {{token: admin-token, subject: ops, orgs: ["*"], role: admin}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


async def whoami(request: Request) -> Response:
    identity = require(request, "read")
    return JSONResponse(
        {
            "subject": identity.subject,
            "orgs": orgs_of(request),
            "method": identity.method,
            "request_id": request_id_of(request),
        }
    )


async def silences(request: Request) -> Response:
    require(request, "silence")
    return JSONResponse(orgs_of(request))


async def status(request: Request) -> Response:
    require(request, "admin")
    return JSONResponse("config")


async def push(request: Request) -> Response:
    require(request, "push")
    body = await request.body()
    return JSONResponse({"bytes": len(body), "orgs": orgs_of(request)})


async def healthy(request: Request) -> Response:
    return PlainTextResponse("OK")


async def unguarded(request: Request) -> Response:
    return JSONResponse(identity_of(request).subject)


ROUTES = [
    Route("/api/v2/alerts", whoami, methods=["GET"]),
    Route("/api/v2/alerts", push, methods=["POST"]),
    Route("/api/v2/silences", silences, methods=["POST"]),
    Route("/api/v2/status", status),
    Route("/-/healthy", healthy),
    Route("/metrics", healthy),
    Route("/unguarded", unguarded),
]


def make_app(
    config: AuthConfig,
    *,
    limits: LimitsConfig | None = None,
    clock: Clock | None = None,
    authenticator: Authenticator | None = None,
    inside: bool = True,
) -> Starlette | AuthMiddleware:
    if authenticator is None:
        tokens = parse_static_tokens(TOKENS) if "static" in config.methods else None
        keys = (
            FileKeys(keys_from_jwks(jwks(public_jwk("k1")), ["RS256"])) if "jwt" in config.methods else None
        )
        authenticator = Authenticator(config, tokens=tokens, keys=keys)
    options: dict[str, Any] = {
        "config": config,
        "limits": limits,
        "authenticator": authenticator,
        "clock": clock or Clock(),
        "default_org": "default",
    }
    if inside:
        return Starlette(
            routes=ROUTES,
            middleware=[Middleware(AuthMiddleware, **options)],
            exception_handlers=auth_exception_handlers(),
        )
    return AuthMiddleware(Starlette(routes=ROUTES, exception_handlers=auth_exception_handlers()), **options)


STATIC = AuthConfig(mode="static", static=StaticConfig(tokens_file="unused"))
BOTH = AuthConfig(
    mode="static+jwt", static=StaticConfig(tokens_file="unused"), jwt=jwt_config(algorithms=["RS256"])
)


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture(params=[True, False], ids=["inside-app", "wrapping-app"])
def client(request: pytest.FixtureRequest) -> TestClient:
    return TestClient(make_app(BOTH, inside=request.param))


@pytest.mark.parametrize(
    ("headers", "status", "body", "challenge"),
    [
        ({}, 401, "authentication required", 'Bearer realm="tocsin"'),
        (bearer("nope"), 401, "invalid token", 'Bearer realm="tocsin", error="invalid_token"'),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "unsupported authorization", 'Bearer realm="tocsin"'),
        ({"Authorization": "Bearer "}, 401, "unsupported authorization", 'Bearer realm="tocsin"'),
        (
            bearer(sign(claims(exp=int(NOW) - 100))),
            401,
            "invalid token: expired",
            'Bearer realm="tocsin", error="invalid_token"',
        ),
    ],
    ids=["no-credentials", "unknown-token", "basic-auth", "empty-bearer", "expired-jwt"],
)
def test_401_bodies_and_challenge(
    client: TestClient, headers: dict[str, str], status: int, body: str, challenge: str
) -> None:
    response = client.get("/api/v2/alerts", headers=headers)
    assert response.status_code == status
    assert isinstance(response.json(), str) and body in response.json()
    assert response.headers["WWW-Authenticate"] == challenge


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "body"),
    [
        (
            "GET",
            "/api/v2/alerts",
            bearer("viewer-token", **{"X-Scope-OrgID": "beta"}),
            403,
            "viewer may not act for organisation 'beta'",
        ),
        (
            "POST",
            "/api/v2/silences",
            bearer("viewer-token"),
            403,
            "viewer (role viewer) may not manage silences",
        ),
        (
            "GET",
            "/api/v2/status",
            bearer("responder-token", **{"X-Scope-OrgID": "acme"}),
            403,
            "may not use administrative endpoints",
        ),
        ("POST", "/api/v2/alerts", bearer("admin-token"), 403, "ops may not push alerts"),
        (
            "GET",
            "/api/v2/alerts",
            bearer("responder-token", **{"X-Scope-OrgID": "acme|beta"}),
            403,
            "several organisations",
        ),
        ("GET", "/api/v2/alerts", bearer("responder-token"), 400, "X-Scope-OrgID is required"),
        ("GET", "/api/v2/alerts", bearer(sign(claims(role=None))), 403, "grants no role"),
        ("GET", "/api/v2/alerts", bearer(sign(claims(org=None))), 403, "names no organisation"),
    ],
    ids=[
        "forged-org",
        "viewer-silences",
        "responder-status",
        "admin-cannot-push",
        "union-refused",
        "must-name-one",
        "jwt-no-role",
        "jwt-no-org",
    ],
)
def test_refusals(
    client: TestClient, method: str, path: str, headers: dict[str, str], status: int, body: str
) -> None:
    response = client.request(method, path, headers=headers, content=b"[]" if method == "POST" else None)
    assert response.status_code == status
    assert isinstance(response.json(), str) and body in response.json()
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "headers", "expect"),
    [
        ("GET", "/api/v2/alerts", bearer("viewer-token"), {"subject": "viewer", "orgs": ["acme"]}),
        (
            "GET",
            "/api/v2/alerts",
            bearer("responder-token", **{"X-Scope-OrgID": "beta"}),
            {"subject": "responder", "orgs": ["beta"]},
        ),
        ("GET", "/api/v2/alerts", bearer("union-token"), {"subject": "union", "orgs": ["acme", "beta"]}),
        (
            "GET",
            "/api/v2/alerts",
            bearer("union-token", **{"X-Scope-OrgID": "beta|acme"}),
            {"subject": "union", "orgs": ["beta", "acme"]},
        ),
        ("GET", "/api/v2/alerts", bearer("admin-token"), {"subject": "ops", "orgs": ["default"]}),
        (
            "GET",
            "/api/v2/alerts",
            bearer("admin-token", **{"X-Scope-OrgID": "zeta"}),
            {"subject": "ops", "orgs": ["zeta"]},
        ),
        ("GET", "/api/v2/alerts", bearer(sign(claims(org=["acme", "beta"]))), None),  # several, no union: 400
        (
            "GET",
            "/api/v2/alerts",
            bearer(sign(claims()), **{"X-Scope-OrgID": "acme"}),
            {"subject": "alice", "orgs": ["acme"], "method": "jwt"},
        ),
    ],
    ids=[
        "viewer-own-org",
        "responder-names-org",
        "union-allowed",
        "union-named",
        "admin-default-org",
        "admin-any-org",
        "jwt-several-orgs",
        "jwt",
    ],
)
def test_allowed(
    client: TestClient, method: str, path: str, headers: dict[str, str], expect: dict[str, Any] | None
) -> None:
    response = client.request(method, path, headers=headers)
    if expect is None:
        assert response.status_code == 400
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in expect} == expect


def test_push_with_push_permission(client: TestClient) -> None:
    response = client.post("/api/v2/alerts", headers=bearer("push-token"), content=b"[1,2]")
    assert response.status_code == 200
    assert response.json() == {"bytes": 5, "orgs": ["acme"]}


@pytest.mark.parametrize("path", ["/-/healthy", "/metrics"], ids=["healthy", "metrics"])
def test_public_paths_need_no_credentials(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_public_paths_are_configurable() -> None:
    config = AuthConfig(mode="static", static=StaticConfig(tokens_file="x"), public_paths=["/api/*"])
    client = TestClient(make_app(config))
    assert client.get("/metrics").status_code == 401
    # /api/* is public, so no identity is established and a handler that needs one fails closed
    assert client.get("/api/v2/alerts").status_code == 401


def test_a_handler_without_require_still_fails_closed_on_public_paths() -> None:
    config = AuthConfig(mode="static", static=StaticConfig(tokens_file="x"), public_paths=["/unguarded"])
    assert TestClient(make_app(config)).get("/unguarded").status_code == 401


def test_mode_none_is_an_anonymous_admin_of_any_org() -> None:
    client = TestClient(make_app(AuthConfig()))
    body = client.get("/api/v2/alerts").json()
    assert (body["subject"], body["orgs"], body["method"]) == ("anonymous", ["default"], "none")
    assert client.get("/api/v2/alerts", headers={"X-Scope-OrgID": "gamma"}).json()["orgs"] == ["gamma"]
    assert client.post("/api/v2/alerts", content=b"[]").status_code == 200
    assert client.get("/api/v2/status").status_code == 200


def test_request_id_is_kept_when_sane_and_echoed() -> None:
    client = TestClient(make_app(AuthConfig()))
    response = client.get("/api/v2/alerts", headers={"X-Request-Id": "abc-123"})
    assert response.json()["request_id"] == "abc-123" and response.headers["X-Request-Id"] == "abc-123"
    response = client.get("/api/v2/alerts", headers={"X-Request-Id": "bad id <x>"})
    generated = response.json()["request_id"]
    assert (
        generated != "bad id <x>" and len(generated) == 32 and response.headers["X-Request-Id"] == generated
    )


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_413_when_the_body_is_too_large(chunked: bool) -> None:
    client = TestClient(make_app(STATIC, limits=LimitsConfig(max_body_bytes=10)))
    body = b"x" * 11

    def chunks() -> Any:
        yield body[:6]
        yield body[6:]

    response = client.post(
        "/api/v2/alerts", headers=bearer("push-token"), content=chunks() if chunked else body
    )
    assert response.status_code == 413
    assert isinstance(response.json(), str) and "limit of 10 bytes" in response.json()
    ok = client.post("/api/v2/alerts", headers=bearer("push-token"), content=b"x" * 10)
    assert ok.status_code == 200 and ok.json()["bytes"] == 10


def test_413_is_not_answered_before_authentication() -> None:
    client = TestClient(make_app(STATIC, limits=LimitsConfig(max_body_bytes=10)))
    assert client.post("/api/v2/alerts", content=b"x" * 100).status_code == 401


def test_429_with_retry_after_per_identity() -> None:
    clock = Clock()
    client = TestClient(make_app(STATIC, limits=LimitsConfig(rate=0.5, burst=2), clock=clock))
    viewer = bearer("viewer-token")
    assert [client.get("/api/v2/alerts", headers=viewer).status_code for _ in range(2)] == [200, 200]
    limited = client.get("/api/v2/alerts", headers=viewer)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert isinstance(limited.json(), str) and "rate limit exceeded for viewer" in limited.json()
    assert client.get("/api/v2/alerts", headers=bearer("admin-token")).status_code == 200  # its own bucket
    clock.now += 2
    assert client.get("/api/v2/alerts", headers=viewer).status_code == 200


def test_forged_org_attempts_count_against_the_rate_limit() -> None:
    clock = Clock()
    client = TestClient(make_app(STATIC, limits=LimitsConfig(rate=1, burst=1), clock=clock))
    forged = bearer("viewer-token", **{"X-Scope-OrgID": "beta"})
    assert client.get("/api/v2/alerts", headers=forged).status_code == 403
    assert client.get("/api/v2/alerts", headers=forged).status_code == 429


# --------------------------------------------------------------------------- mTLS and key refresh


def test_mtls_identity_from_the_trusted_header() -> None:
    config = AuthConfig(
        mode="static+mtls",
        static=StaticConfig(tokens_file="x"),
        mtls=MtlsConfig(header="X-Client-Subject", role="responder"),
    )
    client = TestClient(make_app(config))
    response = client.get("/api/v2/alerts", headers={"X-Client-Subject": "CN=probe,O=acme"})
    assert response.status_code == 200 and response.json()["subject"] == "probe"
    assert client.get("/api/v2/alerts", headers={"X-Client-Subject": "O=acme"}).status_code == 401
    # a bearer token wins over the certificate
    assert (
        client.get(
            "/api/v2/alerts", headers=bearer("viewer-token", **{"X-Client-Subject": "CN=probe,O=acme"})
        ).json()["subject"]
        == "viewer"
    )


def test_the_subject_header_is_ignored_unless_mtls_is_on() -> None:
    config = AuthConfig(mode="static", static=StaticConfig(tokens_file="x"))
    response = TestClient(make_app(config)).get(
        "/api/v2/alerts", headers={"X-Client-Subject": "CN=probe,O=acme"}
    )
    assert response.status_code == 401


class RotatingKeys:
    """A key source whose provider rotated to k2: only a refresh reveals it."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def keys(self, now: float, *, refresh: bool = False) -> Any:
        if refresh:
            self.refreshes += 1
            return keys_from_jwks(jwks(public_jwk("k1"), public_jwk("k2")), ["RS256"])
        return keys_from_jwks(jwks(public_jwk("k1")), ["RS256"])


def test_an_unknown_kid_triggers_one_key_refresh() -> None:
    config = AuthConfig(mode="jwt", jwt=jwt_config(algorithms=["RS256"]))
    keys = RotatingKeys()
    client = TestClient(make_app(config, authenticator=Authenticator(config, keys=keys)))
    response = client.get("/api/v2/alerts", headers=bearer(sign(claims(), key="k2", kid="k2")))
    assert response.status_code == 200 and keys.refreshes == 1
    assert client.get("/api/v2/alerts", headers=bearer(sign(claims(), key="k3", kid="k3"))).status_code == 401
    assert keys.refreshes == 2


def test_from_config_reads_the_files(tmp_path: Path) -> None:
    (tmp_path / "tokens.yml").write_text(TOKENS)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(public_jwk("k1"))))
    config = AuthConfig(
        mode="static+jwt",
        static=StaticConfig(tokens_file="tokens.yml"),
        jwt=jwt_config(jwks_file="jwks.json", algorithms=["RS256"]),
    )
    app = Starlette(
        routes=ROUTES,
        exception_handlers=auth_exception_handlers(),
        middleware=[Middleware(AuthMiddleware, config=config, base_dir=str(tmp_path), clock=Clock())],
    )
    client = TestClient(app)
    assert client.get("/api/v2/alerts", headers=bearer("viewer-token")).status_code == 200
    assert (
        client.get(
            "/api/v2/alerts", headers=bearer(sign(claims(), kid="k1"), **{"X-Scope-OrgID": "acme"})
        ).status_code
        == 200
    )


def test_mode_none_public_paths_still_carry_the_anonymous_identity() -> None:
    config = AuthConfig(public_paths=["/unguarded"])
    assert TestClient(make_app(config)).get("/unguarded").json() == "anonymous"
