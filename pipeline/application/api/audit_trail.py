"""The audit trail (Tocsin): ``GET /api/tocsin/audit``, the writes recorded in the caller's
organisation (admins only; records are written by ``ApiContext.audit``, see ``audit``)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts.partition import partition_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.routing import route
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.subjects import AUDIT, token

__all__ = ["get_audit", "routes"]


async def get_audit(ctx: ApiContext, request: Request) -> Response:
    """Tocsin: the audit trail of writes in the caller's organisation (admins only)."""
    org = ctx.org_of(request, "admin")
    records = []
    subject = f"{AUDIT.prefix}.out.{partition_of(org, ctx.partitions)}.{token(org)}"
    async for m in read_messages(ctx.js, AUDIT.stream, subject):
        records.append(msgspec.json.decode(m.data))
    return JSONResponse(records)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", "/api/tocsin/audit", get_audit, ctx)]
