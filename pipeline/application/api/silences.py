"""Silences (Alertmanager API v2) over the filter stage.

Writes are commands into TOCSIN_COMMANDS, partitioned by organisation; the filter applies
them exactly once. Reads come from the filter's state (its views). A write waits (up to a few
seconds) until the filter committed it, so `amtool silence add` followed by `amtool silence
query` sees the new silence.

Everything a write names is checked before it is published (400 naming the limit): silence
ids by ``contracts.ids``, sizes by ``pipeline.application.api.limits`` (matchers, regex
lengths and the encoded size before the matchers are even compiled).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts import Silence, SilenceCommand, SilenceMatcher, encode
from contracts.ids import check_id
from contracts.matchers import Matcher, MatcherError, MatchType, parse_matcher
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import gettable_silence
from pipeline.application.api.errors import MIN_ITEMS, REQUIRED, bad_request, not_found, parse_error
from pipeline.application.api.filter_state import filter_state, filter_value, publish_command
from pipeline.application.api.limits import check_silence, check_silence_count
from pipeline.application.api.push import PushError, decode_body, parse_time
from pipeline.application.api.routing import route
from stages.filter.views import (
    SILENCE_PREFIXES,
    SilenceError,
    SilenceStatus,
    plan_silence,
    silence_key,
    silence_status,
    silences_view,
    validate_silence,
)

__all__ = ["delete_silence", "get_silence", "get_silences", "parse_silence", "post_silences", "routes",
           "silence_has_matchers"]


async def _silence(ctx: ApiContext, org: str, sid: str, now: float) -> SilenceStatus | None:
    return silence_status(await filter_value(ctx, org, silence_key(org, sid)), now)


async def _wait_for(ctx: ApiContext, org: str, sid: str, updated_at: float, timeout: float = 5.0) -> None:
    with anyio.move_on_after(timeout):
        while True:
            st = await _silence(ctx, org, sid, time.time())
            if st is not None and st.silence.updated_at >= updated_at:
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


async def post_silences(ctx: ApiContext, request: Request) -> Response:
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
        existing = [st for st in silences_view(await filter_state(ctx, org, *SILENCE_PREFIXES), org, now)
                    if st.state != "expired"]
        problem = check_silence_count(len(existing), limits.max_silences)
        if problem:
            return bad_request(problem)
    previous = None
    if sil.id:
        previous = await filter_value(ctx, org, silence_key(org, sil.id))
        if silence_status(previous, now) is None:
            return not_found(f"silence {sil.id} not found")
    try:
        cmd = plan_silence(previous, org, sil, now, lambda: str(uuid.uuid4()))
    except SilenceError as exc:
        return bad_request(str(exc))
    assert cmd.silence is not None
    await publish_command(ctx, org, cmd, f"silence:{cmd.silence.id}:{now!r}")
    await _wait_for(ctx, org, cmd.silence.id, now)
    await ctx.audit(request, org, "silence.create" if not sil.id else "silence.update", cmd.silence.id,
                    {"replaces": sil.id} if sil.id and sil.id != cmd.silence.id else None)
    return JSONResponse({"silenceID": cmd.silence.id})


async def get_silences(ctx: ApiContext, request: Request) -> Response:
    org, now = ctx.org_of(request), time.time()
    try:
        filters = [parse_matcher(f) for f in request.query_params.getlist("filter")]
    except MatcherError as exc:
        return bad_request(str(exc))
    return JSONResponse([gettable_silence(st.silence, st.state)
                         for st in silences_view(await filter_state(ctx, org, *SILENCE_PREFIXES), org, now)
                         if silence_has_matchers(st.silence, filters)])


async def get_silence(ctx: ApiContext, request: Request) -> Response:
    org, now = ctx.org_of(request), time.time()
    sid = request.path_params["id"]
    if check_id(sid, "silence id"):  # an id no silence can have is unknown, as the API documents
        return not_found()
    st = await _silence(ctx, org, sid, now)
    if st is None:
        return not_found()
    return JSONResponse(gettable_silence(st.silence, st.state))


async def delete_silence(ctx: ApiContext, request: Request) -> Response:
    org, now = ctx.org_of(request, "silence"), time.time()
    sid = request.path_params["id"]
    if check_id(sid, "silence id"):
        return not_found()
    st = await _silence(ctx, org, sid, now)
    if st is None:
        return not_found()
    if st.state == "expired":  # Alertmanager answers 500 here; expiring is idempotent
        return Response(status_code=200)
    await publish_command(ctx, org, SilenceCommand(action="expire", org=org, id=sid, at=now),
                          f"silence-expire:{sid}:{now!r}")
    with anyio.move_on_after(5.0):
        while (cur := await _silence(ctx, org, sid, time.time())) is not None and cur.state != "expired":
            await anyio.sleep(0.02)
    await ctx.audit(request, org, "silence.expire", sid)
    return Response(status_code=200)


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [
        route("POST", "/api/v2/silences", post_silences, ctx),
        route("GET", "/api/v2/silences", get_silences, ctx),
        route("GET", "/api/v2/silence/{id}", get_silence, ctx),
        route("DELETE", "/api/v2/silence/{id}", delete_silence, ctx),
    ]
