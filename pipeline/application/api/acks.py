"""Acknowledgements (Tocsin): ``POST /api/tocsin/acks`` and ``/unacks``, ``GET /api/tocsin/acks``.

An acknowledgement names a group key, a fingerprint or matchers (each matching firing alert
is acknowledged by its fingerprint); one an escalation policy forbids (``ack: forbidden``) is
refused with 409. Writes are commands into TOCSIN_COMMANDS that the filter applies; reads
come from the filter's state (its views). Fields are checked by ``contracts.ids`` and
``pipeline.application.api.limits`` before anything is published.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from contracts import AckCommand
from contracts.ids import check_fingerprint, check_group_key, check_id
from contracts.matchers import MatcherError, parse_matcher
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import rfc3339
from pipeline.application.api.errors import bad_request, parse_error
from pipeline.application.api.filter_state import filter_state, filter_value, publish_command
from pipeline.application.api.limits import check_ack_comment
from pipeline.application.api.push import PushError, parse_time
from pipeline.application.api.routing import route
from stages.filter.views import (
    ACK_PREFIXES,
    FIRING_PREFIXES,
    ack_refusal,
    acks_view,
    escalation_policies_view,
    firing_key,
    group_record_key,
)

__all__ = ["get_acks", "post_ack", "post_unack", "routes"]


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


async def _forbidden(ctx: ApiContext, org: str, group_key: str, fp: str, matchers: list[str]) -> str | None:
    """Why an acknowledgement is refused (``ack: forbidden`` in the escalation policy of the
    group or of an alert it names), or None."""
    config = ctx.filter_config(org)
    if group_key:
        return ack_refusal(config, group=await filter_value(ctx, org, group_record_key(org, group_key)))
    if not escalation_policies_view(config):
        return None
    if fp:
        key = firing_key(org, fp)
        value = await filter_value(ctx, org, key)
        return ack_refusal(config, firing={key: value} if value is not None else {})
    return ack_refusal(config, firing=await filter_state(ctx, org, *FIRING_PREFIXES),
                       matchers=[parse_matcher(m) for m in matchers])


async def post_ack(ctx: ApiContext, request: Request, remove: bool = False) -> Response:
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
    await publish_command(ctx, org, cmd, f"ack:{cmd.request_id}")
    target = cmd.group_key or cmd.fingerprint or ",".join(cmd.matchers)
    await ctx.audit(request, org, "alert.ack" if cmd.action == "ack" else "alert.unack", target)
    return JSONResponse({"accepted": True, "action": action}, status_code=202)


async def post_unack(ctx: ApiContext, request: Request) -> Response:
    return await post_ack(ctx, request, remove=True)


async def get_acks(ctx: ApiContext, request: Request) -> Response:
    org, now = ctx.org_of(request), time.time()
    acks = acks_view(await filter_state(ctx, org, *ACK_PREFIXES), org, now)
    return JSONResponse([{"kind": a.kind, "target": a.target, "at": rfc3339(a.at), "by": a.by,
                          "comment": a.comment, "expiresAt": rfc3339(a.expires_at) if a.expires_at else None,
                          "active": a.active} for a in acks])


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [
        route("POST", "/api/tocsin/acks", post_ack, ctx),
        route("GET", "/api/tocsin/acks", get_acks, ctx),
        route("POST", "/api/tocsin/unacks", post_unack, ctx),
    ]
