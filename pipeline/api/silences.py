"""Silences (Alertmanager API v2) and acknowledgements (Tocsin) over the filter stage.

Writes are commands into TOCSIN_COMMANDS, partitioned by organisation; the filter applies
them exactly once. Reads come from the filter's state in TOCSIN_SENDS. A write waits (up
to a few seconds) until the filter committed it, so `amtool silence add` followed by
`amtool silence query` sees the new silence.

Everything a write names is checked before it is published (400 naming the limit): silence
ids and ack fields by ``contracts.ids``, sizes by ``pipeline.api.limits`` (matchers, regex
lengths and the encoded size before the matchers are even compiled).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import AckCommand, Silence, SilenceCommand, SilenceMatcher, encode
from contracts.ids import check_fingerprint, check_group_key, check_id
from contracts.matchers import Matcher, MatcherError, MatchType, parse_matcher
from contracts.partition import partition_of
from pipeline.api.context import ApiContext
from pipeline.api.convert import gettable_silence, rfc3339
from pipeline.api.errors import MIN_ITEMS, REQUIRED, bad_request, not_found, parse_error
from pipeline.api.limits import check_ack_comment, check_silence, check_silence_count
from pipeline.api.push import PushError, decode_body, parse_time
from pipeline.runtime.jetstream import last_message
from pipeline.runtime.reads import read_partition_state
from pipeline.runtime.subjects import StreamNames
from stages.filter.silences import SilenceError, plan_upsert, silence_state, validate_silence
from stages.filter.state import SilenceValue, StateValue, silence_key
from stages.filter.views import acks_view, silence_view, silences_view

__all__ = ["COMMANDS", "SENDS", "filter_state", "parse_silence", "silence_has_matchers", "silence_routes"]

COMMANDS = StreamNames("commands")
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

    async def post_ack(request: Request) -> Response:
        org, now = ctx.org_of(request, "ack"), time.time()
        try:
            doc = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            return parse_error(str(exc))
        if not isinstance(doc, dict) or not (doc.get("groupKey") or doc.get("fingerprint")):
            return bad_request("an acknowledgement names a groupKey or a fingerprint")
        fields = {name: doc.get(name) or "" for name in ("groupKey", "fingerprint", "by", "comment")}
        for name, value in fields.items():
            if not isinstance(value, str):
                return bad_request(f"{name} must be a string")
        group_key, fp, by, comment = fields.values()
        problem = ((check_group_key(group_key) if group_key else None) or (check_fingerprint(fp) if fp else None)
                   or (check_id(by, "by") if by else None) or check_ack_comment(comment, ctx.limits))
        if problem:
            return bad_request(problem)
        try:
            expires = parse_time(doc.get("expiresAt"), "expiresAt")
        except PushError as exc:
            return bad_request(str(exc))
        cmd = AckCommand(action="unack" if doc.get("remove") else "ack", org=org, at=now, group_key=group_key,
                         fingerprint=fp, by=by, comment=comment, expires_at=expires, request_id=uuid.uuid4().hex)
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
