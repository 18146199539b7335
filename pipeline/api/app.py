"""Routes of the API: Alertmanager v2 (`/api/v2/...`) and Tocsin's own (`/api/tocsin/...`).

Writes go into streams (pushed alerts into EVENTS); reads come from the stages' state in
their streams, so any API replica answers the same.
"""

from __future__ import annotations

import re
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import AlertChange, encode
from contracts.matchers import matchers_match, parse_matchers
from contracts.partition import partition_of
from pipeline.api.auth import identity_of
from pipeline.api.auth_errors import Forbidden
from pipeline.api.context import ApiContext
from pipeline.api.convert import gettable_alert, rfc3339
from pipeline.api.errors import bad_request, parse_error
from pipeline.api.push import PushError, parse_push
from pipeline.api.silences import filter_state, silence_routes
from pipeline.runtime.reads import read_last_per_subject, read_messages
from pipeline.runtime.subjects import StreamNames, token

__all__ = ["ALERTS", "EVENTS", "ApiContext", "api_routes"]

EVENTS = StreamNames("events")
ALERTS = StreamNames("alerts")
GROUPS = StreamNames("groups")
AUDIT = StreamNames("audit")
MAX_ALERTS_PER_MESSAGE = 200  # keeps one push's step well inside an atomic batch


def _version() -> str:
    try:
        return version("tocsin")
    except PackageNotFoundError:
        return "0+unknown"


def _filters(request: Request) -> tuple[list[Any], re.Pattern[str] | None]:
    """The ``filter`` matchers and the ``receiver`` regex of an alerts read (ValueError: bad input)."""
    matchers = [m for f in request.query_params.getlist("filter") for m in parse_matchers(f)]
    receiver_re = request.query_params.get("receiver")
    try:
        return matchers, re.compile(f"^(?:{receiver_re})$") if receiver_re else None
    except re.error as exc:
        raise ValueError(f"failed to parse receiver param: {exc}") from exc


def _bool(request: Request, name: str, default: bool = True) -> bool:
    v = request.query_params.get(name)
    return default if v is None else v.lower() == "true"


def api_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def post_alerts(request: Request) -> Response:
        body = await request.body()
        try:
            pushes, errors = parse_push(body, request_org=ctx.org_of(request, "push"), now=time.time())
        except PushError as exc:
            return parse_error(str(exc))
        identity = identity_of(request)
        foreign = sorted({p.org for p in pushes if not identity.may_act_for(p.org)})
        if foreign:  # an org_id label may not name an organisation the caller cannot act for
            raise Forbidden(f"{identity.subject} may not push alerts for organisation(s) {', '.join(foreign)}")
        for push in pushes:
            p = partition_of(push.org, ctx.partitions)
            for i in range(0, len(push.alerts), MAX_ALERTS_PER_MESSAGE):
                part = msgspec.structs.replace(push, alerts=push.alerts[i:i + MAX_ALERTS_PER_MESSAGE])
                headers = {"Nats-Msg-Id": f"push:{push.request_id}:{token(push.org)}:{i}"}
                tp = request.headers.get("traceparent")
                if tp:
                    headers["traceparent"] = tp
                await ctx.js.publish(EVENTS.out(p, "alerts"), encode(part), headers=headers)
        for push in pushes:
            await ctx.audit(request, push.org, "alerts.push", push.request_id, {"alerts": len(push.alerts)})
        if errors:
            return bad_request("; ".join(errors))
        return Response(status_code=200)

    async def get_alerts(request: Request) -> Response:
        try:
            matchers, rx = _filters(request)
        except ValueError as exc:
            return bad_request(str(exc))
        active = _bool(request, "active")
        silenced, inhibited, muted = _bool(request, "silenced"), _bool(request, "inhibited"), _bool(request, "muted")
        now = time.time()
        from stages.filter.views import alert_statuses
        from stages.rules.state import AlertState, StateValue, to_alert

        decoder = msgspec.json.Decoder(StateValue)
        out: list[dict[str, Any]] = []
        for org in ctx.orgs_for_read(request):  # one, or the union a role may read
            alerts: list[tuple[Any, list[str]]] = []
            p = partition_of(org, ctx.partitions)
            async for m, deleted in read_last_per_subject(ctx.js, ALERTS.stream, ALERTS.state_filter(p, "alert", org)):
                if deleted:
                    continue
                v = decoder.decode(m.data)
                if not isinstance(v, AlertState) or v.status != "firing":
                    continue
                alert = to_alert(v)
                if alert.ends_at is not None and alert.ends_at <= now:
                    continue
                if matchers and not matchers_match(matchers, alert.labels):
                    continue
                receivers = ctx.receivers_for(alert.labels, org)
                if rx and not any(rx.match(r) for r in receivers):
                    continue
                alerts.append((alert, receivers))
            fstate = await filter_state(ctx, org, "silence", "inhibit", "group") if alerts else {}
            statuses = alert_statuses(fstate, ctx.filter_config(org), org, [a for a, _ in alerts],  # type: ignore[arg-type]
                                      now)
            for (alert, receivers), st in zip(alerts, statuses, strict=True):
                keep = (active and st.state == "active") or (silenced and bool(st.silenced_by)) or (
                    inhibited and bool(st.inhibited_by)) or (muted and bool(st.muted_by))
                if keep:
                    out.append(gettable_alert(alert, receivers, {
                        "state": st.state, "silencedBy": st.silenced_by, "inhibitedBy": st.inhibited_by,
                        "mutedBy": st.muted_by}))
        out.sort(key=lambda a: a["fingerprint"])
        return JSONResponse(out)

    async def get_groups(request: Request) -> Response:
        """Alertmanager's ``alertGroups`` from the router's aggregation groups of the caller's org."""
        from stages.filter.views import alert_statuses
        from stages.router.groups import groups_view
        from stages.router.state import StateValue as RouterValue

        try:
            matchers, rx = _filters(request)
        except ValueError as exc:
            return bad_request(str(exc))
        active, silenced = _bool(request, "active"), _bool(request, "silenced")
        inhibited, muted = _bool(request, "inhibited"), _bool(request, "muted")
        org, now = ctx.org_of(request), time.time()
        p = partition_of(org, ctx.partitions)
        decoder = msgspec.json.Decoder(RouterValue)
        state: dict[str, Any] = {}
        subject = GROUPS.state_filter(p, "group", token(org))
        async for m, deleted in read_last_per_subject(ctx.js, GROUPS.stream, subject):
            if not deleted:
                state[GROUPS.key_of_state_subject(m.subject)] = decoder.decode(m.data)
        views = [g for g in groups_view(state, org, now) if not rx or rx.match(g.receiver)]
        fstate = await filter_state(ctx, org, "silence", "inhibit", "group") if views else {}
        out = []
        for g in views:
            keys = {a.fingerprint: [g.group_key] for a in g.alerts}
            statuses = alert_statuses(fstate, ctx.filter_config(org), org, g.alerts, now, keys)  # type: ignore[arg-type]
            alerts = []
            for a, st in zip(g.alerts, statuses, strict=True):
                if matchers and not matchers_match(matchers, a.labels):
                    continue
                keep = (active and st.state == "active") or (silenced and bool(st.silenced_by)) or (
                    inhibited and bool(st.inhibited_by)) or (muted and bool(st.muted_by))
                if keep:
                    alerts.append(gettable_alert(a, [g.receiver], {
                        "state": st.state, "silencedBy": st.silenced_by, "inhibitedBy": st.inhibited_by,
                        "mutedBy": st.muted_by}))
            if alerts:
                out.append({"labels": g.labels, "receiver": {"name": g.receiver}, "alerts": alerts})
        return JSONResponse(out)

    async def status(request: Request) -> Response:
        org = ctx.org_of(request)
        # the configuration (the organisation's own, if it has one) is an admin's read; secrets are redacted
        config = ctx.loaded.config_for(org).redacted if identity_of(request).allows("admin") else ""
        return JSONResponse({
            "cluster": {"name": "tocsin", "peers": [], "status": "ready"},
            "config": {"original": config},
            "uptime": rfc3339(ctx.started_at),
            "versionInfo": {"branch": "main", "buildDate": "", "buildUser": "", "goVersion": "",
                            "revision": "", "version": _version()},
        })

    async def receivers(request: Request) -> Response:
        org = ctx.org_of(request)
        return JSONResponse([{"name": r.name} for r in ctx.loaded.config_for(org).receivers])

    async def history(request: Request) -> Response:
        """Tocsin: every state change of one alert (``fingerprint``) or of every alert of one
        resource (``resource=KIND/NAME``) of the caller's organisation, oldest first."""
        org = ctx.org_of(request)
        fp = request.query_params.get("fingerprint", "")
        resource = request.query_params.get("resource", "")
        base = f"{ALERTS.prefix}.out.{partition_of(org, ctx.partitions)}.{token(org)}"
        if fp:
            if not re.fullmatch(r"[0-9a-f]{16}", fp):
                return bad_request("fingerprint must be 16 hex digits")
            subject = f"{base}.{fp}"
        elif resource:
            kind, sep, name = resource.partition("/")
            if not sep or not kind or not name:
                return bad_request("resource is KIND/NAME")
            subject = f"{base}.*"  # the organisation's history, filtered below
        else:
            return bad_request("give fingerprint or resource")
        changes = []
        async for m in read_messages(ctx.js, ALERTS.stream, subject):
            ch = msgspec.json.decode(m.data, type=AlertChange)
            if resource and (ch.alert.labels.get("resource_kind"), ch.alert.labels.get("resource")) != (kind, name):
                continue
            changes.append({"change": ch.change, "at": rfc3339(ch.alert.updated_at or ch.cause.at),
                            "cause": {"kind": ch.cause.kind, "id": ch.cause.id},
                            "alert": gettable_alert(ch.alert, [])})
        return JSONResponse(changes)

    async def attempts(request: Request) -> Response:
        """Tocsin: delivery attempts of a group (``groupKey``) or an alert (``fingerprint``)."""
        from stages.notifier.ledger import attempts as read_attempts

        org = ctx.org_of(request)
        group_key = request.query_params.get("groupKey")
        fp = request.query_params.get("fingerprint")
        if not group_key and not fp:
            return bad_request("give groupKey or fingerprint")
        try:
            since = float(request.query_params["since"]) if "since" in request.query_params else None
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return bad_request("since is Unix seconds and limit a whole number")
        records = await read_attempts(ctx.js, org, group_key=group_key, fingerprint=fp, since=since, limit=limit)
        return JSONResponse([{
            "sendId": r.send_id, "status": r.status, "at": rfc3339(r.at), "receiver": r.receiver,
            "integration": r.integration, "groupKey": r.group_key, "attempt": r.attempt, "error": r.error,
            "reason": r.reason, "statusCode": r.status_code, "duration": r.duration} for r in records])

    async def audit(request: Request) -> Response:
        """Tocsin: the audit trail of writes in the caller's organisation (admins only)."""
        org = ctx.org_of(request, "admin")
        records = []
        subject = f"{AUDIT.prefix}.out.{partition_of(org, ctx.partitions)}.{token(org)}"
        async for m in read_messages(ctx.js, AUDIT.stream, subject):
            records.append(msgspec.json.decode(m.data))
        return JSONResponse(records)

    return [
        *silence_routes(ctx),
        Route("/api/tocsin/audit", audit, methods=["GET"]),
        Route("/api/tocsin/attempts", attempts, methods=["GET"]),
        Route("/api/v2/alerts", post_alerts, methods=["POST"]),
        Route("/api/v2/alerts", get_alerts, methods=["GET"]),
        Route("/api/v2/alerts/groups", get_groups, methods=["GET"]),
        Route("/api/v2/status", status, methods=["GET"]),
        Route("/api/v2/receivers", receivers, methods=["GET"]),
        Route("/api/tocsin/history", history, methods=["GET"]),
    ]
