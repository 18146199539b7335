"""Silences (Alertmanager API v2), acknowledgements and escalations (Tocsin) over the filter stage.

Acknowledgements (``POST /api/tocsin/acks``, ``POST /api/tocsin/unacks``) name a group key,
a fingerprint or matchers (each matching firing alert is acknowledged by its fingerprint);
an acknowledgement an escalation policy forbids (``ack: forbidden``) is refused with 409.
``GET /api/tocsin/escalations`` lists the running escalations, ``GET
/api/tocsin/escalation-policies`` the configured policies; ``GET /api/tocsin/timeline``
the lifecycle of one alert or group (fired, notified, escalated, acknowledged, silenced, resolved).

Writes are commands into TOCSIN_COMMANDS, partitioned by organisation; the filter applies
them exactly once. Reads come from the filter's state in TOCSIN_SENDS. A write waits (up
to a few seconds) until the filter committed it, so `amtool silence add` followed by
`amtool silence query` sees the new silence.

Everything a write names is checked before it is published (400 naming the limit): silence
ids and ack fields by ``contracts.ids``, sizes by ``pipeline.application.api.limits`` (matchers, regex
lengths and the encoded size before the matchers are even compiled).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import AckCommand, AlertChange, SendRequest, Silence, SilenceCommand, SilenceMatcher, decode, encode
from contracts.ids import check_fingerprint, check_group_key, check_id
from contracts.matchers import Matcher, MatcherError, MatchType, format_labelset, matchers_match, parse_matcher
from contracts.partition import partition_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import gettable_silence, rfc3339
from pipeline.application.api.errors import MIN_ITEMS, REQUIRED, bad_request, not_found, parse_error
from pipeline.application.api.limits import check_ack_comment, check_silence, check_silence_count
from pipeline.application.api.push import PushError, decode_body, parse_time
from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.reads import read_messages, read_partition_state
from pipeline.foundation.runtime.subjects import COMMANDS, StreamNames, token
from stages.filter.escalation import policy_for
from stages.filter.silences import SilenceError, plan_upsert, silence_state, silenced_by, validate_silence
from stages.filter.state import (
    FiringAlert,
    GroupState,
    SilenceValue,
    StateValue,
    firing_key,
    group_record_key,
    silence_key,
)
from stages.filter.views import acks_view, silence_view, silences_view

__all__ = ["ALERTS", "COMMANDS", "SENDS", "filter_state", "parse_silence", "silence_has_matchers", "silence_routes",
           "timeline"]

ALERTS = StreamNames("alerts")
SENDS = StreamNames("sends")
_decoder = msgspec.json.Decoder(StateValue)


async def filter_state(ctx: ApiContext, org: str, *prefixes: str) -> dict[str, Any]:
    """The filter's state keys of ``org`` under each ``<prefix>/<org>/``."""
    p = partition_of(org, ctx.partitions)
    state: dict[str, Any] = {}
    for prefix in prefixes:
        for m, deleted in await read_partition_state(ctx.js, SENDS.stream, SENDS.state_filter(p, prefix, org),
                                                     SENDS.progress(p)):
            if not deleted:
                state[SENDS.key_of_state_subject(m.subject, m.headers)] = _decoder.decode(m.data)
    return state


async def _silence(ctx: ApiContext, org: str, sid: str) -> SilenceValue | None:
    subject = SENDS.state(partition_of(org, ctx.partitions), silence_key(org, sid))
    raw = await last_message(ctx.js, SENDS.stream, subject, leader=True)
    if raw is None or not raw[1]:
        return None
    v = _decoder.decode(raw[1])
    return v if isinstance(v, SilenceValue) else None


async def _publish(ctx: ApiContext, org: str, cmd: msgspec.Struct, msg_id: str) -> None:
    p = partition_of(org, ctx.partitions)
    kind = "silence" if isinstance(cmd, SilenceCommand) else "ack"
    await ctx.js.publish(COMMANDS.out(p, kind), encode(cmd), headers={"Nats-Msg-Id": msg_id})


async def _wait_for(ctx: ApiContext, org: str, sid: str, updated_at: float, timeout: float = 5.0) -> None:
    with anyio.move_on_after(timeout):
        while True:
            v = await _silence(ctx, org, sid)
            if v is not None and v.silence.updated_at >= updated_at:
                return
            await anyio.sleep(0.02)


_ZERO = datetime(1, 1, 1, tzinfo=UTC).timestamp()  # Go's zero time: what an empty time decodes to
_MATCH_TYPES = {(False, True): MatchType.EQUAL, (False, False): MatchType.NOT_EQUAL,
                (True, True): MatchType.REGEX, (True, False): MatchType.NOT_REGEX}


def parse_silence(body: bytes, org: str, now: float) -> Silence:
    """A ``postableSilence`` checked as go-swagger checks it (``PushError``, see ``push``): first
    the types (400), then the required fields in its order (422), with Alertmanager's messages."""
    doc = decode_body(body, "silence", dict, "object")
    for name in ("id", "createdBy", "comment"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise PushError(f"{name} in body must be of type string")
    raw_matchers = doc.get("matchers")
    if raw_matchers is not None and not isinstance(raw_matchers, list):
        raise PushError("matchers in body must be of type array")
    for i, m in enumerate(raw_matchers or []):
        if not isinstance(m, dict):
            raise PushError(f"matchers.{i} in body must be of type object")
        for name, kind in (("name", str), ("value", str), ("isRegex", bool), ("isEqual", bool)):
            if m.get(name) is not None and not isinstance(m[name], kind):
                raise PushError(f"matchers.{i}.{name} in body must be of type {'string' if kind is str else 'boolean'}")
    starts = parse_time(doc.get("startsAt"), "startsAt")
    ends = parse_time(doc.get("endsAt"), "endsAt")
    for name in ("comment", "createdBy", "endsAt", "matchers"):
        if doc.get(name) is None:
            raise PushError(f"{name} in body is required", REQUIRED)
    assert isinstance(raw_matchers, list)
    if not raw_matchers:
        raise PushError("matchers in body should have at least 1 items", MIN_ITEMS)
    for i, m in enumerate(raw_matchers):
        for name in ("isRegex", "name", "value"):
            if m.get(name) is None:
                raise PushError(f"matchers.{i}.{name} in body is required", REQUIRED)
    if doc.get("startsAt") is None:
        raise PushError("startsAt in body is required", REQUIRED)
    matchers = [SilenceMatcher(name=m["name"], value=m["value"], is_regex=m["isRegex"],
                               is_equal=m.get("isEqual") is not False) for m in raw_matchers]
    return Silence(id=doc.get("id") or "", org=org, matchers=matchers,
                   starts_at=max(_ZERO if starts is None else starts, 0.0), ends_at=_ZERO if ends is None else ends,
                   created_by=doc["createdBy"], comment=doc["comment"], updated_at=now)


def _identity_name(request: Request) -> str:
    """Who acknowledged, when the body does not say: the authenticated subject."""
    name = getattr(getattr(request.state, "identity", None), "subject", "")
    return name if isinstance(name, str) and not check_id(name, "by") else ""


def _check_ack_matchers(texts: list[str], ctx: ApiContext) -> str | None:
    if len(texts) > ctx.limits.max_silence_matchers:
        return f"at most {ctx.limits.max_silence_matchers} matchers (limits.max_silence_matchers)"
    for text in texts:
        if len(text) > ctx.limits.max_silence_regex_length:
            return f"a matcher is longer than {ctx.limits.max_silence_regex_length} characters"
        try:
            parse_matcher(text)
        except MatcherError as exc:
            return f"invalid matcher {text!r}: {exc}"
    return None


async def _state_value(ctx: ApiContext, org: str, key: str) -> StateValue | None:
    raw = await last_message(ctx.js, SENDS.stream, SENDS.state(partition_of(org, ctx.partitions), key), leader=True)
    if raw is None or not raw[1]:
        return None
    return _decoder.decode(raw[1])


async def _forbidden(ctx: ApiContext, org: str, group_key: str, fp: str, matchers: list[str]) -> str | None:
    """Why an acknowledgement is refused (``ack: forbidden`` in the escalation policy of the
    group or of an alert it names), or None."""
    if group_key:
        value = await _state_value(ctx, org, group_record_key(org, group_key))
        esc = value.esc if isinstance(value, GroupState) else None
        if esc is not None and esc.ack == "forbidden":
            return (f"the escalation policy {esc.policy!r} of this group forbids acknowledgements "
                    "(ack: forbidden): it escalates until the alerts resolve")
        return None
    policies = getattr(ctx.filter_config(org), "escalation", ())
    if not policies:
        return None
    if fp:
        value = await _state_value(ctx, org, firing_key(org, fp))
        labelsets = [value.labels] if isinstance(value, FiringAlert) else []
    else:
        parsed = [parse_matcher(m) for m in matchers]
        labelsets = [v.labels for v in (await filter_state(ctx, org, "firing")).values()
                     if isinstance(v, FiringAlert) and matchers_match(parsed, v.labels)]
    for labels in labelsets:
        policy = policy_for(policies, [labels])
        if policy is not None and policy.ack == "forbidden":
            return (f"the escalation policy {policy.name!r} of alert {format_labelset(labels)} forbids "
                    "acknowledgements (ack: forbidden): it escalates until the alert resolves")
    return None


async def timeline(ctx: ApiContext, org: str, *, fingerprint: str = "", group_key: str = "") -> list[dict[str, Any]]:
    """The lifecycle of one alert or one group, oldest first, from the durable streams: fired
    and resolved (alert changes), notified and escalated (send requests: receiver, integration,
    level), acknowledged and unacknowledged (ack commands: by whom), silenced (silences created
    that matched it). Reads the organisation's partition of each stream (an operator's query)."""
    p = partition_of(org, ctx.partitions)
    # where the stages' outputs are in this deployment (a chain keeps them all in its last stream)
    names = getattr(ctx, "streams", None) or {}
    alerts, sends = names.get("alerts", ALERTS), names.get("sends", SENDS)
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
    base = f"{alerts.prefix}.out.{p}.{token(org)}"  # an alert's changes: out.<p>.<org token>.<fp>[.<msg>]
    subjects = [s for f in sorted(fps) for s in (f"{base}.{f}.*", f"{base}.{f}")]
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
            hit = [f for f, ls in labels.items() if silenced_by([sil], ls, max(sil.starts_at, cmd.at))]
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


def _escalation_json(gs: GroupState, now: float) -> dict[str, Any]:
    esc, last = gs.esc, gs.last
    assert esc is not None and last is not None
    f = last.flush
    due = esc.due_at
    level = esc.level_of(esc.next - 1) if esc.next else 0  # the last level notified
    return {"groupKey": f.group_key, "receiver": f.receiver, "groupLabels": f.group_labels, "policy": esc.policy,
            "ack": esc.ack, "startedAt": rfc3339(esc.started_at), "level": level,
            "stepsDone": esc.next, "steps": esc.total, "paused": esc.paused,
            "nextStepAt": rfc3339(due) if due is not None else None,
            "fingerprints": [a.fingerprint for a in f.alerts if not a.resolved_at(now)]}


def silence_has_matchers(s: Silence, filters: list[Matcher]) -> bool:
    """Alertmanager's silence filter: every filter matcher is one of the silence's matchers
    (same name, type and value); the filter is not matched against label values."""
    return all(any(m.name == f.name and m.value == f.value and _MATCH_TYPES[(m.is_regex, m.is_equal)] == f.type
                   for m in s.matchers) for f in filters)


def silence_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def post_silences(request: Request) -> Response:
        org, now = ctx.org_of(request, "silence"), time.time()
        try:
            sil = parse_silence(await request.body(), org, now)
        except PushError as exc:
            return parse_error(str(exc), exc.code)
        limits = ctx.limits
        # sizes first: a matcher is compiled only once its silence is known to be within bounds
        problem = (check_id(sil.id, "silence id") if sil.id else None) or check_silence(
            limits, existing=0, matchers=len(sil.matchers), size=len(encode(sil)), new=False,
            regex_lengths=[len(m.value) if m.is_regex else 0 for m in sil.matchers])
        if problem:
            return bad_request(problem)
        if sil.starts_at >= sil.ends_at:
            return bad_request("Failed to create silence: start time must be before end time")
        if sil.ends_at < now:
            return bad_request("Failed to create silence: end time can't be in the past")
        try:
            validate_silence(sil)
        except SilenceError as exc:
            return bad_request(str(exc))
        if limits.max_silences > 0 and not sil.id:
            existing = [st for st in silences_view(await filter_state(ctx, org, "silence", "silences"), org, now)
                        if st.state != "expired"]
            problem = check_silence_count(len(existing), limits.max_silences)
            if problem:
                return bad_request(problem)
        state: dict[str, Any] = {}
        if sil.id:
            prev = await _silence(ctx, org, sil.id)
            if prev is None:
                return not_found(f"silence {sil.id} not found")
            state[silence_key(org, sil.id)] = prev
        try:
            cmd = plan_upsert(state, org, sil, now, lambda: str(uuid.uuid4()))
        except SilenceError as exc:
            return bad_request(str(exc))
        assert cmd.silence is not None
        await _publish(ctx, org, cmd, f"silence:{cmd.silence.id}:{now!r}")
        await _wait_for(ctx, org, cmd.silence.id, now)
        await ctx.audit(request, org, "silence.create" if not sil.id else "silence.update", cmd.silence.id,
                        {"replaces": sil.id} if sil.id and sil.id != cmd.silence.id else None)
        return JSONResponse({"silenceID": cmd.silence.id})

    async def get_silences(request: Request) -> Response:
        org, now = ctx.org_of(request), time.time()
        try:
            filters = [parse_matcher(f) for f in request.query_params.getlist("filter")]
        except MatcherError as exc:
            return bad_request(str(exc))
        return JSONResponse([gettable_silence(st.silence, st.state)
                             for st in silences_view(await filter_state(ctx, org, "silence", "silences"), org, now)
                             if silence_has_matchers(st.silence, filters)])

    async def get_silence(request: Request) -> Response:
        org, now = ctx.org_of(request), time.time()
        sid = request.path_params["id"]
        if check_id(sid, "silence id"):  # an id no silence can have is unknown, as the API documents
            return not_found()
        v = await _silence(ctx, org, sid)
        st = silence_view({silence_key(org, sid): v}, org, sid, now) if v else None
        if st is None:
            return not_found()
        return JSONResponse(gettable_silence(st.silence, st.state))

    async def delete_silence(request: Request) -> Response:
        org, now = ctx.org_of(request, "silence"), time.time()
        sid = request.path_params["id"]
        if check_id(sid, "silence id"):
            return not_found()
        v = await _silence(ctx, org, sid)
        if v is None:
            return not_found()
        if silence_state(v.silence, now) == "expired":  # Alertmanager answers 500 here; expiring is idempotent
            return Response(status_code=200)
        await _publish(ctx, org, SilenceCommand(action="expire", org=org, id=sid, at=now),
                       f"silence-expire:{sid}:{now!r}")
        with anyio.move_on_after(5.0):
            while (cur := await _silence(ctx, org, sid)) is not None and silence_state(cur.silence, time.time()) \
                    != "expired":
                await anyio.sleep(0.02)
        await ctx.audit(request, org, "silence.expire", sid)
        return Response(status_code=200)

    async def post_ack(request: Request, remove: bool = False) -> Response:
        org, now = ctx.org_of(request, "ack"), time.time()
        try:
            doc = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            return parse_error(str(exc))
        if not isinstance(doc, dict):
            return bad_request("an acknowledgement is a JSON object naming a groupKey, a fingerprint or matchers")
        fields = {name: doc.get(name) or "" for name in ("groupKey", "fingerprint", "by", "comment")}
        for name, value in fields.items():
            if not isinstance(value, str):
                return bad_request(f"{name} must be a string")
        group_key, fp, by, comment = fields.values()
        raw_matchers = doc.get("matchers") or []
        if not isinstance(raw_matchers, list) or not all(isinstance(m, str) for m in raw_matchers):
            return bad_request('matchers must be a list of strings such as \'severity="critical"\'')
        if sum(map(bool, (group_key, fp, raw_matchers))) != 1:
            return bad_request("an acknowledgement names exactly one of groupKey, fingerprint and matchers")
        problem = ((check_group_key(group_key) if group_key else None) or (check_fingerprint(fp) if fp else None)
                   or (check_id(by, "by") if by else None) or check_ack_comment(comment, ctx.limits)
                   or _check_ack_matchers(raw_matchers, ctx))
        if problem:
            return bad_request(problem)
        try:
            expires = parse_time(doc.get("expiresAt"), "expiresAt")
        except PushError as exc:
            return bad_request(str(exc))
        action: Literal["ack", "unack"] = "unack" if remove or doc.get("remove") else "ack"
        if not by:
            by = _identity_name(request)
        if action == "ack":
            refused = await _forbidden(ctx, org, group_key, fp, raw_matchers)
            if refused:
                return JSONResponse(refused, status_code=409)  # a JSON string, as the API's other errors
        cmd = AckCommand(action=action, org=org, at=now, group_key=group_key, fingerprint=fp,
                         matchers=list(raw_matchers), by=by, comment=comment, expires_at=expires,
                         request_id=uuid.uuid4().hex)
        await _publish(ctx, org, cmd, f"ack:{cmd.request_id}")
        target = cmd.group_key or cmd.fingerprint or ",".join(cmd.matchers)
        await ctx.audit(request, org, "alert.ack" if cmd.action == "ack" else "alert.unack", target)
        return JSONResponse({"accepted": True, "action": action}, status_code=202)

    async def post_unack(request: Request) -> Response:
        return await post_ack(request, remove=True)

    async def get_timeline(request: Request) -> Response:
        org = ctx.org_of(request)
        fp = request.query_params.get("fingerprint", "")
        gk = request.query_params.get("groupKey", "")
        if bool(fp) == bool(gk):
            return bad_request("give fingerprint or groupKey")
        if bad := (check_fingerprint(fp) if fp else check_group_key(gk)):
            return bad_request(bad)
        return JSONResponse(await timeline(ctx, org, fingerprint=fp, group_key=gk))

    async def get_policies(request: Request) -> Response:
        org = ctx.org_of(request)
        policies = getattr(ctx.filter_config(org), "escalation", ())
        return JSONResponse([{"name": p.name, "matchers": [str(m) for m in p.matchers], "ack": p.ack,
                              "repeat": p.repeat,
                              "steps": [{"after": s.after, "receivers": list(s.receivers)} for s in p.steps]}
                             for p in policies])

    async def get_escalations(request: Request) -> Response:
        org, now = ctx.org_of(request), time.time()
        state = await filter_state(ctx, org, "group")
        return JSONResponse([_escalation_json(v, now) for v in state.values()
                             if isinstance(v, GroupState) and v.esc is not None and v.last is not None])

    async def get_acks(request: Request) -> Response:
        org, now = ctx.org_of(request), time.time()
        acks = acks_view(await filter_state(ctx, org, "ack"), org, now)
        return JSONResponse([{"kind": a.kind, "target": a.target, "at": rfc3339(a.at), "by": a.by,
                              "comment": a.comment, "expiresAt": rfc3339(a.expires_at) if a.expires_at else None,
                              "active": a.active} for a in acks])

    return [
        Route("/api/v2/silences", post_silences, methods=["POST"]),
        Route("/api/v2/silences", get_silences, methods=["GET"]),
        Route("/api/v2/silence/{id}", get_silence, methods=["GET"]),
        Route("/api/v2/silence/{id}", delete_silence, methods=["DELETE"]),
        Route("/api/tocsin/acks", post_ack, methods=["POST"]),
        Route("/api/tocsin/acks", get_acks, methods=["GET"]),
        Route("/api/tocsin/unacks", post_unack, methods=["POST"]),
        Route("/api/tocsin/escalations", get_escalations, methods=["GET"]),
        Route("/api/tocsin/escalation-policies", get_policies, methods=["GET"]),
        Route("/api/tocsin/timeline", get_timeline, methods=["GET"]),
    ]
