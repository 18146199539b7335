"""Silences (Alertmanager API v2) and acknowledgements (Tocsin) over the filter stage.

Writes are commands into TOCSIN_COMMANDS, partitioned by organisation; the filter applies
them exactly once. Reads come from the filter's state in TOCSIN_SENDS. A write waits (up
to a few seconds) until the filter committed it, so `amtool silence add` followed by
`amtool silence query` sees the new silence.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import AckCommand, Silence, SilenceCommand, SilenceMatcher, encode
from contracts.matchers import MatcherError, matchers_match, parse_matchers
from contracts.partition import partition_of
from pipeline.api.context import ApiContext
from pipeline.api.convert import rfc3339
from pipeline.api.errors import bad_request, not_found, parse_error
from pipeline.api.limits import check_silence
from pipeline.api.push import PushError, parse_time
from pipeline.runtime.jetstream import last_message
from pipeline.runtime.reads import read_last_per_subject
from pipeline.runtime.subjects import StreamNames
from stages.filter.silences import SilenceError, plan_upsert, silence_state, validate_silence
from stages.filter.state import SilenceValue, StateValue, silence_key
from stages.filter.views import acks_view, silence_view, silences_view

__all__ = ["COMMANDS", "SENDS", "filter_state", "silence_routes"]

COMMANDS = StreamNames("commands")
SENDS = StreamNames("sends")
_decoder = msgspec.json.Decoder(StateValue)


async def filter_state(ctx: ApiContext, org: str, *prefixes: str) -> dict[str, Any]:
    """The filter's state keys of ``org`` under each ``<prefix>/<org>/``."""
    p = partition_of(org, ctx.partitions)
    state: dict[str, Any] = {}
    for prefix in prefixes:
        async for m, deleted in read_last_per_subject(ctx.js, SENDS.stream, SENDS.state_filter(p, prefix, org)):
            if not deleted:
                state[SENDS.key_of_state_subject(m.subject)] = _decoder.decode(m.data)
    return state


async def _silence(ctx: ApiContext, org: str, sid: str) -> SilenceValue | None:
    subject = SENDS.state(partition_of(org, ctx.partitions), silence_key(org, sid))
    raw = await last_message(ctx.js, SENDS.stream, subject)
    if raw is None or not raw[1]:
        return None
    v = _decoder.decode(raw[1])
    return v if isinstance(v, SilenceValue) else None


def gettable_silence(s: Silence, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "status": {"state": silence_state(s, now)},
        "updatedAt": rfc3339(s.updated_at or s.starts_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": rfc3339(s.ends_at),
        "startsAt": rfc3339(s.starts_at),
        "matchers": [{"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
                     for m in s.matchers],
    }


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


def _parse_silence(doc: Any, org: str, now: float) -> Silence:
    if not isinstance(doc, dict):
        raise PushError("silence in body must be of type object")
    raw_matchers = doc.get("matchers")
    if not isinstance(raw_matchers, list) or not raw_matchers:
        raise PushError("matchers in body is required")
    matchers = []
    for i, m in enumerate(raw_matchers):
        if not isinstance(m, dict) or "name" not in m or "value" not in m or "isRegex" not in m:
            raise PushError(f"matchers.{i} in body must have name, value and isRegex")
        matchers.append(SilenceMatcher(name=str(m["name"]), value=str(m["value"]), is_regex=bool(m["isRegex"]),
                                       is_equal=bool(m.get("isEqual", True))))
    starts = parse_time(doc.get("startsAt"), "startsAt")
    ends = parse_time(doc.get("endsAt"), "endsAt")
    if starts is None or ends is None:
        raise PushError("startsAt and endsAt in body are required")
    return Silence(id=str(doc.get("id") or ""), org=org, matchers=matchers, starts_at=max(starts, 0.0),
                   ends_at=ends, created_by=str(doc.get("createdBy", "")), comment=str(doc.get("comment", "")),
                   updated_at=now)


def silence_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def post_silences(request: Request) -> Response:
        org, now = ctx.org_of(request, "silence"), time.time()
        try:
            sil = _parse_silence(msgspec.json.decode(await request.body()), org, now)
        except (PushError, msgspec.DecodeError) as exc:
            return parse_error(str(exc))
        if sil.starts_at >= sil.ends_at:
            return bad_request("Failed to create silence: start time must be before end time")
        if sil.ends_at < now:
            return bad_request("Failed to create silence: end time can't be in the past")
        try:
            validate_silence(sil)
        except SilenceError as exc:
            return bad_request(str(exc))
        limits = ctx.loaded.tocsin.limits
        if limits is not None:
            existing = [st for st in silences_view(await filter_state(ctx, org, "silence", "silences"), org, now)
                        if st.state != "expired"]
            problem = check_silence(limits, existing=len(existing), matchers=len(sil.matchers),
                                    size=len(encode(sil)), new=not sil.id)
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
            matchers = [m for f in request.query_params.getlist("filter") for m in parse_matchers(f)]
        except MatcherError as exc:
            return bad_request(str(exc))
        out = []
        for st in silences_view(await filter_state(ctx, org, "silence", "silences"), org, now):
            labels = {m.name: m.value for m in st.silence.matchers if m.is_equal and not m.is_regex}
            if matchers and not matchers_match(matchers, labels):
                continue
            out.append(gettable_silence(st.silence, now))
        return JSONResponse(out)

    async def get_silence(request: Request) -> Response:
        org, now = ctx.org_of(request), time.time()
        sid = request.path_params["id"]
        v = await _silence(ctx, org, sid)
        st = silence_view({silence_key(org, sid): v}, org, sid, now) if v else None
        if st is None:
            return not_found(f"silence {sid} not found")
        return JSONResponse(gettable_silence(st.silence, now))

    async def delete_silence(request: Request) -> Response:
        org, now = ctx.org_of(request, "silence"), time.time()
        sid = request.path_params["id"]
        v = await _silence(ctx, org, sid)
        if v is None:
            return not_found(f"silence {sid} not found")
        if silence_state(v.silence, now) == "expired":
            return Response(status_code=200)
        await _publish(ctx, org, SilenceCommand(action="expire", org=org, id=sid, at=now),
                       f"silence-expire:{sid}:{now!r}")
        with anyio.move_on_after(5.0):
            while (cur := await _silence(ctx, org, sid)) is not None and silence_state(cur.silence, time.time()) \
                    != "expired":
                await anyio.sleep(0.02)
        await ctx.audit(request, org, "silence.expire", sid)
        return Response(status_code=200)

    async def post_ack(request: Request) -> Response:
        org, now = ctx.org_of(request, "ack"), time.time()
        try:
            doc = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            return parse_error(str(exc))
        if not isinstance(doc, dict) or not (doc.get("groupKey") or doc.get("fingerprint")):
            return bad_request("an acknowledgement names a groupKey or a fingerprint")
        try:
            expires = parse_time(doc.get("expiresAt"), "expiresAt")
        except PushError as exc:
            return bad_request(str(exc))
        cmd = AckCommand(action="unack" if doc.get("remove") else "ack", org=org, at=now,
                         group_key=str(doc.get("groupKey") or ""), fingerprint=str(doc.get("fingerprint") or ""),
                         by=str(doc.get("by") or ""), comment=str(doc.get("comment") or ""), expires_at=expires,
                         request_id=uuid.uuid4().hex)
        await _publish(ctx, org, cmd, f"ack:{cmd.request_id}")
        await ctx.audit(request, org, "alert.ack" if cmd.action == "ack" else "alert.unack",
                        cmd.group_key or cmd.fingerprint)
        return JSONResponse({"accepted": True}, status_code=202)

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
    ]
