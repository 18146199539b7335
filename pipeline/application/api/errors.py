"""Alertmanager's error shapes.

Handler errors of API v2 are a JSON string body (go-swagger ``WithPayload(err.Error())``);
requests go-swagger cannot parse or validate get ``{"code": ..., "message": ...}``: code 400
for a body that is not JSON of the right types, and a validation code (6xx) answered with
status 422 for a missing required field or too few items.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "INVALID_TYPE",
    "MIN_ITEMS",
    "PARSE",
    "REQUIRED",
    "bad_request",
    "nats_unavailable",
    "nesting_too_deep",
    "not_found",
    "parse_error",
    "server_error",
    "stale_read",
]

# go-openapi/errors codes; any code of 600 or more is answered with status 422
PARSE = 400
INVALID_TYPE = 601
REQUIRED = 602
MIN_ITEMS = 612


def bad_request(message: str) -> JSONResponse:
    return JSONResponse(message, status_code=400)


def not_found(message: str | None = None) -> Response:
    """404; without a message the body is empty, as Alertmanager answers for an unknown silence id."""
    if message is None:
        return Response(status_code=404)
    return JSONResponse(message, status_code=404)


def parse_error(message: str, code: int = PARSE) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code if code < 600 else 422)


def server_error(message: str) -> JSONResponse:
    return JSONResponse(message, status_code=500)


async def stale_read(_: Request, exc: Exception) -> Response:
    """503 when only a replica still catching up could answer a state read (a NATS node just
    came back): retry in a moment rather than act on an old view."""
    return JSONResponse(f"state not available yet, retry: {exc}", status_code=503, headers={"Retry-After": "1"})


async def nesting_too_deep(_: Request, exc: Exception) -> Response:
    """400 for a ``RecursionError`` a handler hit parsing what it was sent: the edge refuses
    bodies nesting deeper than ``MAX_JSON_DEPTH``, this is the backstop for anything else."""
    return parse_error("request nests too deeply to parse")


async def nats_unavailable(_: Request, exc: Exception) -> Response:
    """503 when NATS did not answer (a timeout, no responders, the connection closed): nothing
    was decided, so the client retries (a write carries an id, so a retry never doubles it)."""
    return JSONResponse(f"NATS unavailable, retry: {type(exc).__name__}", status_code=503,
                        headers={"Retry-After": "1"})
