"""Routes of the API: Alertmanager v2 (`/api/v2/...`) and Tocsin's own (`/api/tocsin/...`).

One module per resource, each with ``routes(ctx)`` built from module-level handlers
``handler(ctx, request)``; :func:`api_routes` assembles them. Writes go into streams (pushed
alerts into EVENTS, silences and acknowledgements into COMMANDS); reads come from the
stages' state and outputs through the views each stage publishes (``stages/*/views.py``), so
any API replica answers the same. Ingest (``ingest.ingest_routes``) and the web UI
(``ui.ui_routes``) are assembled beside these by ``pipeline.application.app``.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from pipeline.application.api import (
    acks,
    alerts,
    attempts,
    audit_trail,
    escalations,
    groups,
    history,
    openapi,
    receivers,
    silences,
    status,
    whoami,
)
from pipeline.application.api.context import ApiContext
from pipeline.application.api.rules import rules_routes

__all__ = ["api_routes"]


def api_routes(ctx: ApiContext) -> list[BaseRoute]:
    """Every route of the API but ingest and the UI."""
    return [
        *silences.routes(ctx),
        *acks.routes(ctx),
        *escalations.routes(ctx),
        *openapi.routes(),
        *audit_trail.routes(ctx),
        *attempts.routes(ctx),
        *alerts.routes(ctx),
        *groups.routes(ctx),
        *status.routes(ctx),
        *receivers.routes(ctx),
        *history.routes(ctx),
        *rules_routes(ctx),
        *whoami.routes(ctx),
    ]
