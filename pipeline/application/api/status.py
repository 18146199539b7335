"""Status (Alertmanager API v2): ``GET /api/v2/status``, with the organisation's configuration
for admins (re-marshalled, secrets hidden: ``pipeline.application.api.status_config``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from pipeline.application.api.auth.middleware import identity_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import rfc3339
from pipeline.application.api.routing import route
from pipeline.application.version import tocsin_version

__all__ = ["get_status", "routes"]


async def get_status(ctx: ApiContext, request: Request) -> Response:
    org = ctx.org_of(request)
    # the configuration (the organisation's own, if it has one) is an admin's read
    config = ctx.config_yaml(org) if identity_of(request).allows("admin") else ""
    return JSONResponse({
        "cluster": {"name": "tocsin", "peers": [], "status": "ready"},
        "config": {"original": config},
        "uptime": rfc3339(ctx.started_at),
        "versionInfo": {"branch": "main", "buildDate": "", "buildUser": "", "goVersion": "",
                        "revision": "", "version": tocsin_version()},
    })


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", "/api/v2/status", get_status, ctx)]
