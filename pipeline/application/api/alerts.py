"""Alerts (Alertmanager API v2): ``POST /api/v2/alerts`` into EVENTS, ``GET /api/v2/alerts``
from the rules stage's state with the status silences, inhibitions and time intervals give
each alert now (the filter's views), and the pushes not yet applied (``unprocessed``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts import Alert, PushedAlerts, encode
from contracts.matchers import matchers_match
from contracts.partition import partition_of
from pipeline.application.api.auth.errors import Forbidden
from pipeline.application.api.auth.middleware import identity_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import alert_status, gettable_alert
from pipeline.application.api.errors import bad_request, parse_error
from pipeline.application.api.filter_state import filter_state
from pipeline.application.api.push import MAX_ALERTS_PER_MESSAGE, PushError, parse_push, split_push
from pipeline.application.api.query import alert_filters, query_bool, receivers_ok, suppression_kept
from pipeline.application.api.routing import route
from pipeline.application.api.unprocessed import pending_pushes, wait_for_rules
from pipeline.foundation.amconfig import group_key
from pipeline.foundation.runtime.reads import read_partition_state
from pipeline.foundation.runtime.subjects import EVENTS, token
from pipeline.foundation.telemetry import producer_span
from stages.filter.views import STATUS_PREFIXES, alert_statuses
from stages.rules.views import alert_state_prefix, firing_alert, org_of_alert_key, unprocessed_alerts

__all__ = ["get_alerts", "post_alerts", "publish_push", "routes"]

_PUSH_OVERHEAD = 4096  # a part's envelope and headers, beside its alerts


async def _all(aws: Iterable[Awaitable[None]]) -> None:
    """Await all at once; every one runs to its end, then the first failure is raised."""
    for result in await asyncio.gather(*aws, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


async def publish_push(ctx: ApiContext, push: PushedAlerts, traceparent: str | None, *,
                       id_prefix: str = "push") -> None:
    """One organisation's alerts into EVENTS, in order, in parts that fit a message and a step
    (``POST /api/v2/alerts`` and the ingest endpoints; ``id_prefix`` keeps their ids apart)."""
    p = partition_of(push.org, ctx.partitions)
    parts = split_push(push, max_alerts=MAX_ALERTS_PER_MESSAGE,
                       max_bytes=(ctx.nc.max_payload or 1 << 20) // 2 - _PUSH_OVERHEAD)
    for i, part in enumerate(parts):
        headers = {"Nats-Msg-Id": f"{id_prefix}:{push.request_id}:{token(push.org)}:{i}"}
        if traceparent:
            headers["traceparent"] = traceparent
        await ctx.js.publish(EVENTS.out(p, "alerts"), encode(part), headers=headers)


async def post_alerts(ctx: ApiContext, request: Request) -> Response:
    body = await request.body()
    try:
        pushes, errors = parse_push(body, request_org=ctx.org_of(request, "push"), now=time.time(),
                                     limits=ctx.limits)
    except PushError as exc:
        return parse_error(str(exc), exc.code)
    identity = identity_of(request)
    foreign = sorted({p.org for p in pushes if not identity.may_act_for(p.org)})
    if foreign:  # an org_id label may not name an organisation the caller cannot act for
        raise Forbidden(f"{identity.subject} may not push alerts for organisation(s) {', '.join(foreign)}")
    tp = producer_span("POST /api/v2/alerts", request.headers.get("traceparent"), {
        "http.request.method": "POST", "http.route": "/api/v2/alerts", "messaging.system": "nats"})
    # Organisations at once: one after the other, a request naming 40 of them waited for 80
    # acknowledgements in turn, and Prometheus' batches name many.
    await _all(publish_push(ctx, push, tp) for push in pushes)
    await _all(ctx.audit(request, push.org, "alerts.push", push.request_id, {"alerts": len(push.alerts)})
               for push in pushes)
    if errors:
        return bad_request("; ".join(errors))
    return Response(status_code=200)


async def _firing_by_org(ctx: ApiContext, orgs: list[str] | None, partitions: set[int], now: float,
                         pushes: dict[int, list[tuple[float, PushedAlerts]]]) -> dict[str, list[Alert]]:
    """The firing alerts of the rules state by organisation (``orgs`` None: every one, and the
    organisations known only by their pending ``pushes``)."""
    alerts = ctx.stream("alerts")
    by_org: dict[str, list[Alert]] = {o: [] for o in orgs or ()}
    for p in sorted(partitions):
        subjects = [alerts.state_filter(p, *alert_state_prefix())] if orgs is None else [
            alerts.state_filter(p, *alert_state_prefix(o)) for o in orgs if partition_of(o, ctx.partitions) == p]
        for subject in subjects:
            for m, deleted in await read_partition_state(ctx.js, alerts.stream, subject, alerts.progress(p)):
                if deleted:
                    continue
                alert = firing_alert(m.data, now)
                if alert is not None:
                    org = org_of_alert_key(alerts.key_of_state_subject(m.subject, m.headers))
                    by_org.setdefault(org, []).append(alert)
        if orgs is None:
            for _, push in pushes.get(p, []):
                by_org.setdefault(push.org, [])
    return by_org


async def get_alerts(ctx: ApiContext, request: Request) -> Response:
    """Alertmanager's ``GET /alerts``: the unresolved alerts of the rules state, with the
    status silences and inhibitions give them now, and the pushes not yet applied
    (``unprocessed``, see ``pipeline.application.api.unprocessed``)."""
    try:
        matchers, rx = alert_filters(request)
    except ValueError as exc:
        return bad_request(str(exc))
    flags = {name: query_bool(request, name) for name in ("active", "silenced", "inhibited", "unprocessed")}
    # one organisation, the union a role may read, or (open mode, no X-Scope-OrgID) every one
    orgs = None if ctx.reads_every_org(request) else ctx.orgs_for_read(request)
    partitions = set(range(ctx.partitions)) if orgs is None else {partition_of(o, ctx.partitions) for o in orgs}
    backlogs = await wait_for_rules(ctx.js, partitions, alerts=ctx.stream("alerts"))
    pushes = {b.partition: await pending_pushes(ctx.js, b) for b in backlogs}
    now = time.time()
    resolve_timeout = ctx.loaded.config.global_.resolve_timeout
    by_org = await _firing_by_org(ctx, orgs, partitions, now, pushes)
    out: list[dict[str, Any]] = []
    for org, known in by_org.items():
        p = partition_of(org, ctx.partitions)
        pending = unprocessed_alerts(pushes.get(p, []), org, {a.fingerprint for a in known}, resolve_timeout, now)
        shown = [(a, rs) for a in known + pending if matchers_match(matchers, a.labels)
                 for rs in [ctx.receivers_for(a.labels, org)] if receivers_ok(rx, rs)]
        unapplied = {a.fingerprint for a in pending}
        processed = [a for a, _ in shown if a.fingerprint not in unapplied]
        fstate = await filter_state(ctx, org, *STATUS_PREFIXES) if processed else {}
        # the groups an alert is in: a time interval that muted one at its last flush mutes it
        keys = {a.fingerprint: [group_key(r, a.labels) for r in ctx.routes_of(org).match(a.labels)]
                for a in processed}
        statuses = {st.fingerprint: alert_status(st.state, st.silenced_by, st.inhibited_by, st.muted_by)
                    for st in alert_statuses(fstate, ctx.filter_config(org), org, processed, now, keys)}
        for a, receivers in shown:
            status = statuses.get(a.fingerprint) or alert_status("unprocessed")
            if suppression_kept(status, **flags):
                out.append(gettable_alert(a, receivers, status, open_end=now + resolve_timeout))
    out.sort(key=lambda a: a["fingerprint"])
    return JSONResponse(out)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("POST", "/api/v2/alerts", post_alerts, ctx), route("GET", "/api/v2/alerts", get_alerts, ctx)]
