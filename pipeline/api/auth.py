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
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.amconfig import ConfigError
from pipeline.api.auth_config import AuthConfig, JwtConfig, MtlsConfig, auth_config_problems
from pipeline.api.auth_errors import ApiError, BadRequest, Forbidden, Unauthenticated, UnknownKey
from pipeline.api.auth_identity import (
    ALL,
    ANONYMOUS,
    PERMISSIONS,
    ROLES,
    AllOrgs,
    Identity,
    Permission,
    Role,
    resolve_orgs,
)
from pipeline.api.auth_jwt import KeySource, load_key_source, verify_jwt
from pipeline.api.auth_mtls import identity_from_client_cert
from pipeline.api.auth_static import TokenTable, load_static_tokens
from pipeline.api.limits import LimitsConfig, RateLimited, RateLimiter, TooLarge, read_body

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
    "Forbidden",
    "Identity",
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
        try:
            now = self.clock()
            identity = await self.authenticator.authenticate(
                headers.get("authorization"), self._client_cert(scope, headers), now
            )
            if self.limiter is not None:
                wait = self.limiter.check(identity.subject, now)
                if wait > 0:
                    raise RateLimited(identity.subject, wait)
            orgs = resolve_orgs(identity, headers.get("x-scope-orgid"), default_org=self.default_org)
            receive = await self._limit_body(headers, receive)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        state["identity"] = identity
        state["orgs"] = orgs
        await self._call_app(scope, receive, send)

    def _client_cert(self, scope: Scope, headers: dict[str, str]) -> str | None:
        tls = (scope.get("extensions") or {}).get("tls") or {}
        name = tls.get("client_cert_name")
        if isinstance(name, str) and name:
            return name
        header = self.authenticator.header
        return headers.get(header) if header else None

    async def _limit_body(self, headers: dict[str, str], receive: Receive) -> Receive:
        limit = self.limits.max_body_bytes
        if limit <= 0:
            return receive
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise BadRequest("invalid Content-Length")
            if int(length) > limit:
                raise TooLarge(f"request body of {int(length)} bytes exceeds the limit of {limit} bytes")
            if int(length) == 0:
                return receive
        elif "transfer-encoding" not in headers:
            return receive  # no body
        messages = await read_body(receive, limit)

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        return replay

    async def _call_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ApiError as exc:  # raised by require() in a handler with no exception handler installed
            if started:
                raise
            await exc.response()(scope, receive, send)


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


async def _handle(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


def auth_exception_handlers() -> dict[Any, Callable[..., Any]]:
    """``Starlette(exception_handlers=...)`` entries answering ``ApiError`` in Alertmanager's shape."""
    return {ApiError: _handle}
