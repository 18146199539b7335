"""Alertmanager's error shapes.

Handler errors of API v2 are a JSON string body (go-swagger ``WithPayload(err.Error())``);
request-parsing errors are ``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

__all__ = ["bad_request", "not_found", "parse_error", "server_error"]


def bad_request(message: str) -> JSONResponse:
    return JSONResponse(message, status_code=400)


def not_found(message: str = "") -> JSONResponse:
    return JSONResponse(message, status_code=404)


def parse_error(message: str, code: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code)


def server_error(message: str) -> JSONResponse:
    return JSONResponse(message, status_code=500)
