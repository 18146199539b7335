"""Receivers (Alertmanager API v2): ``GET /api/v2/receivers``, the organisation's configured receivers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from pipeline.application.api.context import ApiContext
from pipeline.application.api.routing import route

__all__ = ["get_receivers", "routes"]


async def get_receivers(ctx: ApiContext, request: Request) -> Response:
    org = ctx.org_of(request)
    return JSONResponse([{"name": r.name} for r in ctx.loaded.config_for(org).receivers])


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", "/api/v2/receivers", get_receivers, ctx)]
