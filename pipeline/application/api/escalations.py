"""Escalations (Tocsin): ``GET /api/tocsin/escalations`` lists the running escalations of the
organisation's groups, ``GET /api/tocsin/escalation-policies`` the configured policies (the
filter's views)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import rfc3339
from pipeline.application.api.filter_state import filter_state
from pipeline.application.api.routing import route
from stages.filter.views import ESCALATION_PREFIXES, escalation_policies_view, escalations_view

__all__ = ["get_escalations", "get_policies", "routes"]


async def get_policies(ctx: ApiContext, request: Request) -> Response:
    org = ctx.org_of(request)
    return JSONResponse([{"name": p.name, "matchers": p.matchers, "ack": p.ack, "repeat": p.repeat,
                          "steps": [{"after": after, "receivers": receivers} for after, receivers in p.steps]}
                         for p in escalation_policies_view(ctx.filter_config(org))])


async def get_escalations(ctx: ApiContext, request: Request) -> Response:
    org, now = ctx.org_of(request), time.time()
    state = await filter_state(ctx, org, *ESCALATION_PREFIXES)
    return JSONResponse([{"groupKey": e.group_key, "receiver": e.receiver, "groupLabels": e.group_labels,
                          "policy": e.policy, "ack": e.ack, "startedAt": rfc3339(e.started_at), "level": e.level,
                          "stepsDone": e.steps_done, "steps": e.steps, "paused": e.paused,
                          "nextStepAt": rfc3339(e.next_step_at) if e.next_step_at is not None else None,
                          "fingerprints": e.fingerprints}
                         for e in escalations_view(state, org, now)])


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [
        route("GET", "/api/tocsin/escalations", get_escalations, ctx),
        route("GET", "/api/tocsin/escalation-policies", get_policies, ctx),
    ]
