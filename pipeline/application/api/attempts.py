"""Delivery attempts (Tocsin): ``GET /api/tocsin/attempts`` of a group (``groupKey``) or an alert
(``fingerprint``), from the notifier's attempt log (its views)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts.ids import check_fingerprint, check_id
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import rfc3339
from pipeline.application.api.errors import bad_request
from pipeline.application.api.routing import route
from stages.notifier.views import attempts_view

__all__ = ["MAX_ATTEMPTS_LIMIT", "attempts_query", "get_attempts", "routes"]

MAX_ATTEMPTS_LIMIT = 10_000  # attempts one read returns at most
_LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last instant an RFC 3339 time can name


def attempts_query(params: Any) -> tuple[str | None, str | None, float | None, int]:
    """``groupKey``, ``fingerprint``, ``since`` (Unix seconds) and ``limit`` of an attempts read;
    ``ValueError`` names the parameter that is wrong and what it must be."""
    group_key, fp = params.get("groupKey"), params.get("fingerprint")
    if not group_key and not fp:
        raise ValueError("give groupKey or fingerprint")
    if group_key and (bad := check_id(group_key, "groupKey")):
        raise ValueError(bad)
    if fp and (bad := check_fingerprint(fp)):
        raise ValueError(bad)
    since: float | None = None
    if "since" in params:
        try:
            since = float(params["since"])
        except ValueError:
            since = None
        if since is None or not 0 <= since <= _LATEST_TIME:  # also refuses nan and inf
            raise ValueError(f"since must be Unix seconds between 0 and {_LATEST_TIME:.0f}")
    raw_limit = params.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_ATTEMPTS_LIMIT):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}")
    return group_key or None, fp or None, since, int(raw_limit)


async def get_attempts(ctx: ApiContext, request: Request) -> Response:
    """Tocsin: delivery attempts of a group (``groupKey``) or an alert (``fingerprint``)."""
    org = ctx.org_of(request)
    try:
        group_key, fp, since, limit = attempts_query(request.query_params)
    except ValueError as exc:
        return bad_request(str(exc))
    records = await attempts_view(ctx.js, org, group_key=group_key, fingerprint=fp, since=since, limit=limit)
    return JSONResponse([{
        "sendId": r.send_id, "status": r.status, "at": rfc3339(r.at), "receiver": r.receiver,
        "integration": r.integration, "groupKey": r.group_key, "attempt": r.attempt, "error": r.error,
        "reason": r.reason, "statusCode": r.status_code, "duration": r.duration,
        "templateErrors": r.template_errors} for r in records])


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", "/api/tocsin/attempts", get_attempts, ctx)]
