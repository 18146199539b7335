"""Authentication and authorisation of the HTTP API.

``AuthMiddleware`` (pure ASGI) authenticates every request but the public paths, applies
the per-identity rate limit and the body size limit, resolves ``X-Scope-OrgID`` to the
organisations the request acts for, and leaves on ``request.state``:

- ``identity``: the ``Identity`` (``identity_of(request)``),
- ``orgs``: the organisations, a non-empty list (``orgs_of(request)``),
- ``request_id``: the caller's ``X-Request-Id`` when sane, else a fresh one (echoed back).

Handlers check permissions with ``require(request, "silence")``, which raises ``Forbidden``;
``auth_exception_handlers()`` turns these errors into Alertmanager-style responses, and
the middleware does too when installed inside the application
(``Starlette(middleware=[Middleware(AuthMiddleware, config=...)])``).

Mode ``none`` (the default) keeps Alertmanager's behaviour: every request is an anonymous
admin that may push and may name any organisation.

Failed authentications are limited per client address (``limits.auth_failure_rate`` and
``auth_failure_burst``, on by default): once an address has spent its budget, its failures
are answered 429 (with ``Retry-After``) instead of 401. Credentials that check out still
pass: an address is often shared (NAT, a proxy), and one client's flood must not lock out
the others. Every 401, 403 and 429, from here or from a handler, goes to the
``DenialAuditor`` (see ``pipeline.application.api.audit``). A request body nesting deeper than
``MAX_JSON_DEPTH`` is refused with 400 before any handler parses it.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.ids import UNION_SEP, check_org
from pipeline.application.api.audit import Denial, DenialAuditor
from pipeline.application.api.auth.errors import (
    ApiError,
    BadOrgHeader,
    BadRequest,
    BodyRefused,
    Forbidden,
    Unauthenticated,
    UnknownKey,
)
from pipeline.application.api.auth.identity import resolve_orgs
from pipeline.application.api.auth.jwt import load_key_source, verify_jwt
from pipeline.application.api.auth.mtls import identity_from_client_cert
from pipeline.application.api.json_depth import MAX_JSON_DEPTH, too_deep
from pipeline.application.api.limits import Bucket, RateLimited, RateLimiter, TooLarge, read_body, take
from pipeline.application.config.auth import AuthConfig, JwtConfig, MtlsConfig, auth_config_problems
from pipeline.application.config.identity import (
    ALL,
    ANONYMOUS,
    PERMISSIONS,
    ROLES,
    AllOrgs,
    Identity,
    Permission,
    Role,
)
from pipeline.application.config.jwt_keys import KeySource
from pipeline.application.config.limits import LimitsConfig
from pipeline.application.config.static_tokens import TokenTable, load_static_tokens
from pipeline.foundation.amconfig import ConfigError

__all__ = [
    "ALL",
    "ANONYMOUS",
    "PERMISSIONS",
    "ROLES",
    "AllOrgs",
    "ApiError",
    "AuthConfig",
    "AuthMiddleware",
    "Authenticator",
    "FailureLimiter",
    "Forbidden",
    "Identity",
    "ORG_OPTIONAL_PATHS",
    "Permission",
    "Role",
    "Unauthenticated",
    "auth_exception_handlers",
    "identity_from_client_cert",
    "identity_of",
    "is_public",
    "orgs_of",
    "request_id_of",
    "require",
    "resolve_orgs",
]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DENIED_STATUSES = frozenset({401, 403, 429})
# answered without X-Scope-OrgID for an identity of several organisations (no orgs on the request)
ORG_OPTIONAL_PATHS = frozenset({"/api/tocsin/whoami"})
_MAX_ADDRESSES = 10_000  # beyond this, addresses whose budget is full again are forgotten


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class Authenticator:
    """Credentials -> ``Identity`` for the methods ``config.mode`` accepts."""

    def __init__(
        self, config: AuthConfig, *, tokens: TokenTable | None = None, keys: KeySource | None = None
    ) -> None:
        problems = auth_config_problems(config)
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.methods = config.methods
        if "static" in self.methods and tokens is None:
            raise ValueError("mode static needs the token table")
        if "jwt" in self.methods and keys is None:
            raise ValueError("mode jwt needs a key source")
        self.tokens = tokens
        self.keys = keys
        self.jwt: JwtConfig | None = config.jwt
        self.mtls: MtlsConfig = config.mtls or MtlsConfig()

    @classmethod
    def from_config(
        cls, config: AuthConfig, *, base_dir: str = ".", http_client: httpx.AsyncClient | None = None
    ) -> Authenticator:
        """Read the files ``config`` names (relative to ``base_dir``); ``ConfigError`` if unusable."""
        problems = auth_config_problems(config)
        if problems:
            raise ConfigError(problems)
        tokens = None
        if config.static is not None and "static" in config.methods:
            tokens = load_static_tokens(os.path.join(base_dir, config.static.tokens_file))
        keys = None
        if config.jwt is not None and "jwt" in config.methods:
            keys = load_key_source(config.jwt, base_dir=base_dir, client=http_client)
        return cls(config, tokens=tokens, keys=keys)

    async def aclose(self) -> None:
        """Close the key source's HTTP client (a JWKS fetched from a URL)."""
        close = getattr(self.keys, "aclose", None)
        if close is not None:
            await close()

    @property
    def header(self) -> str:
        """The trusted client certificate subject header (lower case), if any."""
        return self.mtls.header.lower() if "mtls" in self.methods else ""

    async def authenticate(
        self, authorization: str | None, client_cert_dn: str | None, now: float
    ) -> Identity:
        if not self.methods:
            return ANONYMOUS
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("unsupported authorization: send a bearer token", token_given=False)
            return await self._bearer(token, now)
        if "mtls" in self.methods and client_cert_dn:
            return identity_from_client_cert(client_cert_dn, self.mtls)
        raise Unauthenticated("authentication required", token_given=False)

    async def _bearer(self, token: str, now: float) -> Identity:
        if self.tokens is not None:
            found = self.tokens.lookup(token)
            if found is not None:
                return found
        if self.keys is not None and self.jwt is not None and _looks_like_jwt(token):
            try:
                return verify_jwt(token, await self.keys.keys(now), self.jwt, now)
            except UnknownKey:  # the provider may have rotated its keys: reload once
                return verify_jwt(token, await self.keys.keys(now, refresh=True), self.jwt, now)
        if self.tokens is None and self.keys is None:
            raise Unauthenticated("bearer tokens are not accepted")
        raise Unauthenticated("invalid token")


def is_public(path: str, public_paths: list[str]) -> bool:
    """``path`` is one of ``public_paths`` (or under one ending in ``*``)."""
    for p in public_paths:
        if p.endswith("*") and path.startswith(p[:-1]):
            return True
        if path == p:
            return True
    return False


class FailureLimiter:
    """A token bucket per client address, spent by failed authentications only."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, Bucket] = {}

    def wait(self, client: str, now: float) -> float:
        """0 when ``client`` may try to authenticate, else seconds until it may (nothing spent)."""
        _, wait = take(self._buckets.get(client), now, self.rate, self.burst)
        return wait

    def failed(self, client: str, now: float) -> None:
        self._buckets[client], _ = take(self._buckets.get(client), now, self.rate, self.burst)
        if len(self._buckets) > _MAX_ADDRESSES:
            full_after = self.burst / self.rate
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < full_after}


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _request_id(value: str | None) -> str:
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class AuthMiddleware:
    """Authenticate, rate-limit, size-limit and scope every HTTP request (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        config: AuthConfig,
        *,
        default_org: str = "default",
        limits: LimitsConfig | None = None,
        authenticator: Authenticator | None = None,
        base_dir: str = ".",
        clock: Callable[[], float] = time.time,
        auditor: DenialAuditor | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.default_org = default_org
        self.limits = limits or LimitsConfig()
        self.authenticator = authenticator or Authenticator.from_config(config, base_dir=base_dir)
        self.clock = clock  # the edge reads the clock; everything below gets the time passed in
        self.limiter = (
            RateLimiter(self.limits.rate, self.limits.bucket_size) if self.limits.rate > 0 else None
        )
        rate = self.limits.auth_failure_rate
        self.failures = (
            FailureLimiter(rate, float(self.limits.auth_failure_burst or max(1, math.ceil(rate))))
            if rate > 0 and self.authenticator.methods else None
        )
        self.auditor = auditor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.authenticator.methods:
            await send({"type": "websocket.close", "code": 1008})  # no websocket endpoint is authenticated
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        request_id = _request_id(headers.get("x-request-id"))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        send = _with_request_id(send, request_id)
        if is_public(scope["path"], self.config.public_paths):
            if not self.authenticator.methods:  # mode none: the same anonymous admin everywhere
                state["identity"], state["orgs"] = ANONYMOUS, [self.default_org]
            await self.app(scope, receive, send)
            return
        client = _client_address(scope)
        now = self.clock()
        identity: Identity | None = None
        try:
            try:
                identity = await self.authenticator.authenticate(
                    headers.get("authorization"), self._client_cert(scope, headers), now
                )
            except Unauthenticated:
                if self.failures is not None:
                    wait = self.failures.wait(client, now)
                    if wait > 0:
                        raise RateLimited(f"{client}: too many failed authentications", wait) from None
                    self.failures.failed(client, now)
                raise
            if self.limiter is not None:
                wait = self.limiter.check(identity.subject, now)
                if wait > 0:
                    raise RateLimited(identity.subject, wait)
            try:
                orgs = resolve_orgs(identity, headers.get("x-scope-orgid"), default_org=self.default_org)
            except BadOrgHeader:  # who-am-I without a header: what a caller asks to learn which to name
                if scope["path"] not in ORG_OPTIONAL_PATHS or headers.get("x-scope-orgid"):
                    raise
                orgs = []
            receive = await self._read_body(headers, receive)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            if exc.status in DENIED_STATUSES:
                await self._denied(scope, headers, exc.status, exc.message, identity, now)
            return
        state["identity"] = identity
        state["orgs"] = orgs
        status = await self._call_app(scope, receive, send)
        if status in DENIED_STATUSES:
            reason = state.get("denial") or f"HTTP {status}"
            await self._denied(scope, headers, status, str(reason), identity, now)

    async def _denied(self, scope: Scope, headers: dict[str, str], status: int, reason: str,
                      identity: Identity | None, now: float) -> None:
        if self.auditor is None:
            return
        state = scope.get("state") or {}
        await self.auditor.record(Denial(
            status=status, reason=reason, path=scope["path"], http_method=scope.get("method", ""),
            client=_client_address(scope), org=self._denial_org(identity, state, headers),
            request_id=str(state.get("request_id", "")), identity=identity), now)

    def _denial_org(self, identity: Identity | None, state: dict[str, Any], headers: dict[str, str]) -> str:
        """Whose trail records a denial: the organisation an authenticated caller acted for, else
        its own (its admin answers for it), else the one it named. An unauthenticated caller
        names nothing trustworthy (it could fill any tenant's trail): the default
        organisation's, the operator's, records it."""
        if identity is None:
            return self.default_org
        orgs = state.get("orgs")
        if orgs:
            return str(orgs[0])
        if not isinstance(identity.orgs, AllOrgs):
            return min(identity.orgs)
        for org in (headers.get("x-scope-orgid") or "").split(UNION_SEP):
            if org.strip() and check_org(org.strip()) is None:
                return org.strip()
        return self.default_org

    def _client_cert(self, scope: Scope, headers: dict[str, str]) -> str | None:
        tls = (scope.get("extensions") or {}).get("tls") or {}
        name = tls.get("client_cert_name")
        if isinstance(name, str) and name:
            return name
        header = self.authenticator.header
        return headers.get(header) if header else None

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> Receive:
        """Read the body (refusing it past the size limit, 413, or nested too deep, 400) and
        hand the application a ``receive`` that replays it."""
        limit = self.limits.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise BadRequest("invalid Content-Length")
            if 0 < limit < int(length):
                raise TooLarge(f"request body of {int(length)} bytes exceeds the limit of {limit} bytes")
            if int(length) == 0:
                return receive
        elif "transfer-encoding" not in headers:
            return receive  # no body
        messages = await read_body(receive, limit if limit > 0 else sys.maxsize)
        if too_deep(b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")):
            raise BodyRefused(f"request body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        return replay

    async def _call_app(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Run the application; the response status it sent."""
        status = 0

        async def tracking_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:  # raised by require() in a handler with no exception handler installed
            if status:
                raise
            scope.setdefault("state", {})["denial"] = exc.message
            await exc.response()(scope, receive, send)
            return exc.status
        return status


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        if name not in out:  # the first of a repeated header wins
            out[name] = v.decode("latin-1")
    return out


def _with_request_id(send: Send, request_id: str) -> Send:
    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode("latin-1")),
            ]
        await send(message)

    return wrapped


# --------------------------------------------------------------------------- handler helpers


def identity_of(request: Request) -> Identity:
    """The request's identity; ``Unauthenticated`` when none was established (fail closed)."""
    identity = getattr(request.state, "identity", None)
    if not isinstance(identity, Identity):
        raise Unauthenticated("authentication required", token_given=False)
    return identity


def orgs_of(request: Request) -> list[str]:
    """The organisations the request acts for (at least one)."""
    orgs = getattr(request.state, "orgs", None)
    if not orgs:
        raise Unauthenticated("authentication required", token_given=False)
    return list(orgs)


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else _request_id(request.headers.get("x-request-id"))


def require(request: Request, permission: Permission) -> Identity:
    """The request's identity if it holds ``permission`` (read, silence, ack, push, admin),
    else ``Forbidden``."""
    identity = identity_of(request)
    if not identity.allows(permission):
        raise Forbidden(identity.denial(permission))
    return identity


async def _handle(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.state.denial = exc.message  # the reason, for the middleware's audit of a denial
    return exc.response()


def auth_exception_handlers() -> dict[Any, Callable[..., Any]]:
    """``Starlette(exception_handlers=...)`` entries answering ``ApiError`` in Alertmanager's shape."""
    return {ApiError: _handle}
