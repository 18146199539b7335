"""The history of alerts (Tocsin): ``GET /api/tocsin/history``, every state change of one alert
or of one resource's alerts (the rules stage's outputs), and ``GET /api/tocsin/timeline``, the
lifecycle of one alert or group (fired, notified, escalated, acknowledged, silenced, resolved)
from the durable streams."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts import AckCommand, AlertChange, SendRequest, SilenceCommand, decode
from contracts.ids import check_fingerprint, check_group_key, check_id
from contracts.matchers import MatcherError, matchers_match, parse_matcher
from contracts.partition import partition_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import gettable_alert, rfc3339
from pipeline.application.api.errors import bad_request
from pipeline.application.api.routing import route
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.subjects import COMMANDS
from stages.filter.views import silence_matches
from stages.rules.views import history_subjects

__all__ = ["get_history", "get_timeline", "routes", "timeline"]


async def get_history(ctx: ApiContext, request: Request) -> Response:
    """Tocsin: every state change of one alert (``fingerprint``) or of every alert of one
    resource (``resource=KIND/NAME``) of the caller's organisation, oldest first."""
    org = ctx.org_of(request)
    fp = request.query_params.get("fingerprint", "")
    resource = request.query_params.get("resource", "")
    alerts = ctx.stream("alerts")
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
    base = f"{alerts.prefix}.out.{partition_of(org, ctx.partitions)}"
    subjects = [f"{base}.{s}" for s in history_subjects(org, tail)]
    changes = []
    async for m in read_messages(ctx.js, alerts.stream, subjects):
        ch = msgspec.json.decode(m.data, type=AlertChange)
        if resource and (ch.alert.labels.get("resource_kind"), ch.alert.labels.get("resource")) != (kind, name):
            continue
        changes.append({"change": ch.change, "at": rfc3339(ch.alert.updated_at or ch.cause.at),
                        "cause": {"kind": ch.cause.kind, "id": ch.cause.id},
                        "alert": gettable_alert(ch.alert, [])})
    return JSONResponse(changes)


async def timeline(ctx: ApiContext, org: str, *, fingerprint: str = "", group_key: str = "") -> list[dict[str, Any]]:
    """The lifecycle of one alert or one group, oldest first, from the durable streams: fired
    and resolved (alert changes), notified and escalated (send requests: receiver, integration,
    level), acknowledged and unacknowledged (ack commands: by whom), silenced (silences created
    that matched it). Reads the organisation's partition of each stream (an operator's query)."""
    p = partition_of(org, ctx.partitions)
    # where the stages' outputs are in this deployment (a chain keeps them all in its last stream)
    alerts, sends = ctx.stream("alerts"), ctx.stream("sends")
    out: list[dict[str, Any]] = []
    fps: set[str] = {fingerprint} if fingerprint else set()
    async for m in read_messages(ctx.js, sends.stream, [f"{sends.prefix}.out.{p}.>"]):
        req = _decode_message(m.data)
        if not isinstance(req, SendRequest) or req.org != org:
            continue
        if (group_key and req.group_key != group_key) or (fingerprint and all(
                a.fingerprint != fingerprint for a in req.alerts)):
            continue
        if group_key:
            fps.update(a.fingerprint for a in req.alerts)
        event = "acknowledge sent" if req.acknowledged and req.id.endswith("/ack") else (
            "escalated" if req.escalation_level else "notified")
        out.append({"event": event, "at": rfc3339(req.created_at), "receiver": req.receiver,
                    "integration": f"{req.integration.kind}[{req.integration.index}]", "status": req.status,
                    "level": req.escalation_level, "policy": req.escalation_policy, "groupKey": req.group_key,
                    "id": req.id, "_t": req.created_at})
    labels: dict[str, dict[str, str]] = {}
    base = f"{alerts.prefix}.out.{p}"  # an alert's changes: out.<p>.<org token>.<fp>[.<msg>]
    subjects = [f"{base}.{s}" for f in sorted(fps) for s in history_subjects(org, f)]
    if subjects:
        async for m in read_messages(ctx.js, alerts.stream, subjects):
            ch = _decode_message(m.data)
            if not isinstance(ch, AlertChange):
                continue
            labels[ch.alert.fingerprint] = ch.alert.labels
            t = ch.cause.at or ch.alert.updated_at  # what caused it (a push, an event), not when rules ran
            if ch.change != "updated":
                out.append({"event": ch.change, "at": rfc3339(t), "fingerprint": ch.alert.fingerprint,
                            "labels": ch.alert.labels, "_t": t})
    async for m in read_messages(ctx.js, COMMANDS.stream, [f"{COMMANDS.prefix}.out.{p}.>"]):
        cmd = _decode_message(m.data)
        if isinstance(cmd, AckCommand) and cmd.org == org and _ack_concerns(cmd, group_key, fps, labels):
            out.append({"event": "acknowledged" if cmd.action == "ack" else "unacknowledged", "at": rfc3339(cmd.at),
                        "by": cmd.by, "comment": cmd.comment,
                        "target": cmd.group_key or cmd.fingerprint or ",".join(cmd.matchers), "_t": cmd.at})
        elif isinstance(cmd, SilenceCommand) and cmd.org == org and cmd.silence is not None:
            sil = cmd.silence
            hit = [f for f, ls in labels.items() if silence_matches(sil, ls, max(sil.starts_at, cmd.at))]
            if hit:
                out.append({"event": "silenced", "at": rfc3339(max(sil.starts_at, cmd.at)), "silenceID": sil.id,
                            "by": sil.created_by, "comment": sil.comment, "until": rfc3339(sil.ends_at),
                            "fingerprints": hit, "_t": max(sil.starts_at, cmd.at)})
    out.sort(key=lambda e: e["_t"])
    for e in out:
        del e["_t"]
    return out


def _ack_concerns(cmd: AckCommand, group_key: str, fps: set[str], labels: dict[str, dict[str, str]]) -> bool:
    if cmd.group_key:
        return cmd.group_key == group_key
    if cmd.fingerprint:
        return cmd.fingerprint in fps
    try:
        parsed = [parse_matcher(m) for m in cmd.matchers]
    except MatcherError:
        return False
    return any(matchers_match(parsed, ls) for ls in labels.values())


def _decode_message(data: bytes) -> object:
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def get_timeline(ctx: ApiContext, request: Request) -> Response:
    org = ctx.org_of(request)
    fp = request.query_params.get("fingerprint", "")
    gk = request.query_params.get("groupKey", "")
    if bool(fp) == bool(gk):
        return bad_request("give fingerprint or groupKey")
    if bad := (check_fingerprint(fp) if fp else check_group_key(gk)):
        return bad_request(bad)
    return JSONResponse(await timeline(ctx, org, fingerprint=fp, group_key=gk))


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [
        route("GET", "/api/tocsin/history", get_history, ctx),
        route("GET", "/api/tocsin/timeline", get_timeline, ctx),
    ]
