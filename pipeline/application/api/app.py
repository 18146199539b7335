"""Routes of the API: Alertmanager v2 (`/api/v2/...`) and Tocsin's own (`/api/tocsin/...`).

Writes go into streams (pushed alerts into EVENTS); reads come from the stages' state in
their streams, so any API replica answers the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterable, Sequence
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import msgspec
import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import Alert, AlertChange, PushedAlerts, encode
from contracts.ids import check_fingerprint, check_id
from contracts.matchers import GoRegex, Matcher, MatcherError, compile_go_regex, matchers_match, parse_matcher
from contracts.partition import partition_of
from pipeline.application.api.auth import identity_of
from pipeline.application.api.auth_errors import Forbidden
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import alert_status, gettable_alert, rfc3339
from pipeline.application.api.errors import bad_request, parse_error
from pipeline.application.api.push import PushError, parse_push, split_push
from pipeline.application.api.silences import filter_state, silence_routes
from pipeline.application.api.status_config import marshal_config
from pipeline.application.api.unprocessed import pending_pushes, unprocessed_alerts, wait_for_rules
from pipeline.foundation.amconfig import group_key
from pipeline.foundation.runtime.reads import read_messages, read_partition_state
from pipeline.foundation.runtime.subjects import AUDIT, EVENTS, StreamNames, token
from pipeline.foundation.telemetry import producer_span

__all__ = [
    "ALERTS",
    "EVENTS",
    "MAX_ATTEMPTS_LIMIT",
    "OPENAPI",
    "ApiContext",
    "api_routes",
    "attempts_query",
    "query_bool",
    "suppression_kept",
    "stream_names_of",
]

ALERTS = StreamNames("alerts")
GROUPS = StreamNames("groups")
# Alerts per pushed message: one message is one step, and in the chain a step commits the state
# changes of rules, router and filter together (a few per alert, more when each alert opens a
# group of its own), which must fit one atomic batch (1,000 messages) with room to spare.
MAX_ALERTS_PER_MESSAGE = 50
_PUSH_OVERHEAD = 4096  # a part's envelope and headers, beside its alerts
OPENAPI = Path(__file__).with_name("openapi.yaml")  # Tocsin's description of the API v2 it serves
MAX_ATTEMPTS_LIMIT = 10_000  # attempts one read returns at most
_LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last instant an RFC 3339 time can name
# go-swagger's booleans (swag.ConvertBool): these spellings are true, any other is false
_TRUE = frozenset({"true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled"})


def _version() -> str:
    try:
        return version("tocsin")
    except PackageNotFoundError:
        return "0+unknown"


@cache
def _openapi() -> tuple[bytes, bytes]:
    text = OPENAPI.read_bytes()
    return text, json.dumps(yaml.safe_load(text)).encode()


def _filters(request: Request) -> tuple[list[Matcher], GoRegex | None]:
    """The ``filter`` matchers (one per value) and the ``receiver`` regex (RE2, anchored) of an
    alerts read; ``MatcherError`` (a ValueError) names the bad one as Alertmanager does."""
    matchers = [parse_matcher(f) for f in request.query_params.getlist("filter")]
    receiver_re = request.query_params.get("receiver")
    try:
        return matchers, compile_go_regex(receiver_re) if receiver_re else None
    except MatcherError as exc:
        raise ValueError(f"failed to parse receiver param: {exc}") from exc


def query_bool(request: Request, name: str, default: bool = True) -> bool:
    """A boolean query parameter as go-swagger binds it: the last value counts, an empty or
    missing one is the default, and only swag's spellings of true are true."""
    values = request.query_params.getlist(name)
    if not values or values[-1] == "":
        return default
    return values[-1].lower() in _TRUE


def suppression_kept(status: dict[str, Any], *, active: bool, silenced: bool, inhibited: bool,
                     unprocessed: bool = True) -> bool:
    """Alertmanager's alert filter: each false flag excludes the alerts it names (an alert
    both silenced and inhibited is excluded by either flag)."""
    return not ((not active and status["state"] == "active") or (not silenced and status["silencedBy"])
                or (not inhibited and status["inhibitedBy"]) or (not unprocessed and status["state"] == "unprocessed"))


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


def _receivers_ok(rx: GoRegex | None, receivers: Sequence[str]) -> bool:
    return rx is None or any(rx.match(r) for r in receivers)


async def _all(aws: Iterable[Awaitable[None]]) -> None:
    """Await all at once; every one runs to its end, then the first failure is raised."""
    for result in await asyncio.gather(*aws, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def stream_names_of(ctx: ApiContext) -> dict[str, StreamNames]:
    """Where the stages' state and outputs are read: the graph's names in the process's deployment
    (``ctx.streams``, set by :func:`pipeline.application.app.run_process`; the ``separate`` names without it)."""
    return getattr(ctx, "streams", None) or {"alerts": ALERTS, "groups": GROUPS, "sends": StreamNames("sends")}


def api_routes(ctx: ApiContext) -> list[BaseRoute]:
    names = stream_names_of(ctx)
    ALERTS, GROUPS = names["alerts"], names["groups"]
    async def post_alerts(request: Request) -> Response:
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

        async def publish(push: PushedAlerts) -> None:  # one organisation's alerts, in order
            p = partition_of(push.org, ctx.partitions)
            parts = split_push(push, max_alerts=MAX_ALERTS_PER_MESSAGE,
                               max_bytes=(ctx.nc.max_payload or 1 << 20) // 2 - _PUSH_OVERHEAD)
            for i, part in enumerate(parts):
                headers = {"Nats-Msg-Id": f"push:{push.request_id}:{token(push.org)}:{i}"}
                if tp:
                    headers["traceparent"] = tp
                await ctx.js.publish(EVENTS.out(p, "alerts"), encode(part), headers=headers)

        # Organisations at once: one after the other, a request naming 40 of them waited for 80
        # acknowledgements in turn, and Prometheus' batches name many.
        await _all(publish(push) for push in pushes)
        await _all(ctx.audit(request, push.org, "alerts.push", push.request_id, {"alerts": len(push.alerts)})
                   for push in pushes)
        if errors:
            return bad_request("; ".join(errors))
        return Response(status_code=200)

    async def get_alerts(request: Request) -> Response:
        """Alertmanager's ``GET /alerts``: the unresolved alerts of the rules state, with the
        status silences and inhibitions give them now, and the pushes not yet applied
        (``unprocessed``, see ``pipeline.application.api.unprocessed``)."""
        from stages.filter.views import alert_statuses
        from stages.rules.state import AlertState, StateValue, to_alert

        try:
            matchers, rx = _filters(request)
        except ValueError as exc:
            return bad_request(str(exc))
        flags = {name: query_bool(request, name) for name in ("active", "silenced", "inhibited", "unprocessed")}
        # one organisation, the union a role may read, or (open mode, no X-Scope-OrgID) every one
        orgs = None if ctx.reads_every_org(request) else ctx.orgs_for_read(request)
        partitions = set(range(ctx.partitions)) if orgs is None else {partition_of(o, ctx.partitions) for o in orgs}
        backlogs = await wait_for_rules(ctx.js, partitions, alerts=ALERTS)
        pushes = {b.partition: await pending_pushes(ctx.js, b) for b in backlogs}
        now = time.time()
        decoder = msgspec.json.Decoder(StateValue)
        resolve_timeout = ctx.loaded.config.global_.resolve_timeout
        by_org: dict[str, list[Alert]] = {o: [] for o in orgs or ()}
        for p in sorted(partitions):
            subjects = [ALERTS.state_filter(p, "alert")] if orgs is None else [
                ALERTS.state_filter(p, "alert", o) for o in orgs if partition_of(o, ctx.partitions) == p]
            for subject in subjects:
                for m, deleted in await read_partition_state(ctx.js, ALERTS.stream, subject, ALERTS.progress(p)):
                    if deleted:
                        continue
                    v = decoder.decode(m.data)
                    if isinstance(v, AlertState) and v.status == "firing" and (v.ends_at is None or v.ends_at > now):
                        org = ALERTS.key_of_state_subject(m.subject, m.headers).split("/", 2)[1]
                        by_org.setdefault(org, []).append(to_alert(v))
            if orgs is None:
                for _, push in pushes.get(p, []):
                    by_org.setdefault(push.org, [])
        out: list[dict[str, Any]] = []
        for org, known in by_org.items():
            p = partition_of(org, ctx.partitions)
            pending = unprocessed_alerts(pushes.get(p, []), org, {a.fingerprint for a in known}, resolve_timeout, now)
            shown = [(a, rs) for a in known + pending if matchers_match(matchers, a.labels)
                     for rs in [ctx.receivers_for(a.labels, org)] if _receivers_ok(rx, rs)]
            unapplied = {a.fingerprint for a in pending}
            processed = [a for a, _ in shown if a.fingerprint not in unapplied]
            fstate = await filter_state(ctx, org, "silence", "inhibit", "group") if processed else {}
            # the groups an alert is in: a time interval that muted one at its last flush mutes it
            keys = {a.fingerprint: [group_key(r, a.labels) for r in ctx.routes_of(org).match(a.labels)]
                    for a in processed}
            statuses = {st.fingerprint: alert_status(st.state, st.silenced_by, st.inhibited_by, st.muted_by)
                        for st in alert_statuses(fstate, ctx.filter_config(org), org, processed, now,  # type: ignore[arg-type]
                                                 keys)}
            for a, receivers in shown:
                status = statuses.get(a.fingerprint) or alert_status("unprocessed")
                if suppression_kept(status, **flags):
                    out.append(gettable_alert(a, receivers, status, open_end=now + resolve_timeout))
        out.sort(key=lambda a: a["fingerprint"])
        return JSONResponse(out)

    async def get_groups(request: Request) -> Response:
        """Alertmanager's ``alertGroups`` from the router's aggregation groups of the caller's org.

        An alert's receivers are those of every listed group holding it; a group left without
        alerts by the filters is not listed; ``muted=false`` drops the groups a time interval
        muted at their last flush (their alerts then show ``mutedBy`` and are suppressed)."""
        from stages.filter.views import alert_statuses
        from stages.router.groups import groups_view
        from stages.router.state import StateValue as RouterValue

        try:
            matchers, rx = _filters(request)
        except ValueError as exc:
            return bad_request(str(exc))
        flags = {name: query_bool(request, name) for name in ("active", "silenced", "inhibited")}
        muted = query_bool(request, "muted")
        org, now = ctx.org_of(request), time.time()
        p = partition_of(org, ctx.partitions)
        decoder = msgspec.json.Decoder(RouterValue)
        state: dict[str, Any] = {}
        subject = GROUPS.state_filter(p, "group", token(org))
        for m, deleted in await read_partition_state(ctx.js, GROUPS.stream, subject, GROUPS.progress(p)):
            if not deleted:
                state[GROUPS.key_of_state_subject(m.subject)] = decoder.decode(m.data)
        views = [g for g in groups_view(state, org, now) if _receivers_ok(rx, [g.receiver])]
        fstate = await filter_state(ctx, org, "silence", "inhibit", "group") if views else {}
        listed: list[tuple[Any, list[tuple[Alert, dict[str, Any]]]]] = []
        receivers: dict[str, set[str]] = {}
        for g in views:
            alerts = [a for a in g.alerts if matchers_match(matchers, a.labels)]
            keys = {a.fingerprint: [g.group_key] for a in alerts}
            statuses = alert_statuses(fstate, ctx.filter_config(org), org, alerts, now, keys)  # type: ignore[arg-type]
            kept: list[tuple[Alert, dict[str, Any]]] = []
            for a, st in zip(alerts, statuses, strict=True):
                status = alert_status(st.state, st.silenced_by, st.inhibited_by, st.muted_by)
                if suppression_kept(status, **flags):
                    kept.append((a, status))
                    receivers.setdefault(a.fingerprint, set()).add(g.receiver)
            if kept:
                listed.append((g, kept))
        out = [{"labels": g.labels, "receiver": {"name": g.receiver},
                "alerts": [gettable_alert(a, sorted(receivers[a.fingerprint]), st,
                                          open_end=now + ctx.loaded.config.global_.resolve_timeout)
                           for a, st in kept]}
               for g, kept in listed if muted or not any(st["mutedBy"] for _, st in kept)]
        return JSONResponse(out)

    marshalled: dict[int, str] = {}

    def config_yaml(org: str) -> str:
        """The organisation's configuration re-marshalled (no comments, secrets hidden), once."""
        config = ctx.loaded.config_for(org)
        if id(config) not in marshalled:
            marshalled[id(config)] = marshal_config(config)
        return marshalled[id(config)]

    async def status(request: Request) -> Response:
        org = ctx.org_of(request)
        # the configuration (the organisation's own, if it has one) is an admin's read
        config = config_yaml(org) if identity_of(request).allows("admin") else ""
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
            if bad := check_fingerprint(fp):
                return bad_request(bad)
            tail = fp
        elif resource:
            kind, sep, name = resource.partition("/")
            if not sep or not kind or not name:
                return bad_request("resource is KIND/NAME")
            if bad := check_id(kind, "resource kind") or check_id(name, "resource name"):
                return bad_request(bad)
            tail = "*"  # the organisation's history, filtered below
        else:
            return bad_request("give fingerprint or resource")
        # An output's subject ends in a token of its own; outputs of the older layout did not.
        subjects = [f"{base}.{tail}.*", f"{base}.{tail}"]
        changes = []
        async for m in read_messages(ctx.js, ALERTS.stream, subjects):
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
        try:
            group_key, fp, since, limit = attempts_query(request.query_params)
        except ValueError as exc:
            return bad_request(str(exc))
        records = await read_attempts(ctx.js, org, group_key=group_key, fingerprint=fp, since=since, limit=limit)
        return JSONResponse([{
            "sendId": r.send_id, "status": r.status, "at": rfc3339(r.at), "receiver": r.receiver,
            "integration": r.integration, "groupKey": r.group_key, "attempt": r.attempt, "error": r.error,
            "reason": r.reason, "statusCode": r.status_code, "duration": r.duration,
            "templateErrors": r.template_errors} for r in records])

    async def audit(request: Request) -> Response:
        """Tocsin: the audit trail of writes in the caller's organisation (admins only)."""
        org = ctx.org_of(request, "admin")
        records = []
        subject = f"{AUDIT.prefix}.out.{partition_of(org, ctx.partitions)}.{token(org)}"
        async for m in read_messages(ctx.js, AUDIT.stream, subject):
            records.append(msgspec.json.decode(m.data))
        return JSONResponse(records)

    async def openapi_yaml(request: Request) -> Response:
        return Response(_openapi()[0], media_type="application/yaml")

    async def openapi_json(request: Request) -> Response:
        return Response(_openapi()[1], media_type="application/json")

    return [
        *silence_routes(ctx),
        Route("/api/v2/openapi.yaml", openapi_yaml, methods=["GET"]),
        Route("/api/v2/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/tocsin/audit", audit, methods=["GET"]),
        Route("/api/tocsin/attempts", attempts, methods=["GET"]),
        Route("/api/v2/alerts", post_alerts, methods=["POST"]),
        Route("/api/v2/alerts", get_alerts, methods=["GET"]),
        Route("/api/v2/alerts/groups", get_groups, methods=["GET"]),
        Route("/api/v2/status", status, methods=["GET"]),
        Route("/api/v2/receivers", receivers, methods=["GET"]),
        Route("/api/tocsin/history", history, methods=["GET"]),
    ]
