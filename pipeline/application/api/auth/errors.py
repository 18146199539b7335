"""Errors of the authentication layer, answered in Alertmanager's shape (a JSON string body).

Each error knows its status and headers, so the middleware, an exception handler or a
handler that prefers returning responses all answer the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

__all__ = [
    "ApiError",
    "BadOrgHeader",
    "BadRequest",
    "BodyRefused",
    "Forbidden",
    "Unauthenticated",
    "Unavailable",
    "UnknownKey",
]

REALM = "tocsin"


class ApiError(Exception):
    """An HTTP error answered with ``message`` as a JSON string body."""

    status = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.message, status_code=self.status, headers=self.headers)


class Unauthenticated(ApiError):
    """401: no credentials, or credentials that do not check out (RFC 6750 challenge attached).

    ``token_given``: a token was presented (the challenge then says ``invalid_token``).
    """

    status = 401

    def __init__(self, message: str, *, token_given: bool = True) -> None:
        challenge = f'Bearer realm="{REALM}"'
        if token_given:
            challenge += ', error="invalid_token"'
        super().__init__(message, {"WWW-Authenticate": challenge})


class UnknownKey(Unauthenticated):
    """A JWT signed with a key id the key set does not hold: worth one key set refresh."""


class Forbidden(ApiError):
    """403: authenticated, but not allowed to do this (or to act for that organisation)."""

    status = 403


class BadRequest(ApiError):
    """400: a malformed request (a header this layer reads)."""

    status = 400


class BodyRefused(BadRequest):
    """400 in go-swagger's parse-error shape (``{"code": 400, "message": ...}``), as
    Alertmanager answers a body it cannot parse."""

    def response(self) -> JSONResponse:
        return JSONResponse({"code": self.status, "message": self.message}, status_code=self.status,
                            headers=self.headers)


class BadOrgHeader(BadRequest):
    """400: ``X-Scope-OrgID`` is malformed, or missing where the caller must name one."""


class Unavailable(ApiError):
    """503: credentials cannot be checked right now (no signing keys could be loaded)."""

    status = 503
