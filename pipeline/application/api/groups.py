"""Alert groups (Alertmanager API v2): ``GET /api/v2/alerts/groups`` from the router's
aggregation groups (its views), with each alert's status from the filter's views.

A read of 10,000 groups needs each group's router state and its filter record (for the time
intervals that muted it). Both are kept decoded between reads (``state_cache``: a read
applies only what was committed since the last one), the filter's records decoded only as
far as their time intervals; every status is computed against one scan of the silences
(``StatusReader``) and the answer encoded by msgspec. The web UI reads one page of the same
groups, in its order, with the totals (``GET /api/tocsin/ui/groups``).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any, Final, NamedTuple

import msgspec
from nats.aio.client import Client as NATS
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from contracts import Alert
from contracts.matchers import GoRegex, Matcher, matchers_match
from contracts.partition import partition_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.convert import alert_status, gettable_alert
from pipeline.application.api.errors import bad_request
from pipeline.application.api.filter_state import filter_state
from pipeline.application.api.query import alert_filters, query_bool, receivers_ok, suppression_kept
from pipeline.application.api.routing import route
from pipeline.application.api.state_cache import StateCache, no_gc
from pipeline.foundation.runtime.subjects import StreamNames
from stages.filter.views import StatusReader, group_muting
from stages.router.views import GroupView, RouterValue, decode_value, group_state_prefix, groups_of_state

__all__ = ["MAX_UI_PAGE", "get_groups", "get_ui_groups", "routes", "ui_order"]

MAX_UI_PAGE: Final = 500  # groups a page of the UI's read holds at most


class _Caches:
    def __init__(self, groups: StreamNames, sends: StreamNames) -> None:
        self.groups: StateCache[RouterValue] = StateCache(
            lambda m: groups.key_of_state_subject(m.subject), lambda _key, data: decode_value(data))
        self.mutings: StateCache[list[str]] = StateCache(
            lambda m: sends.key_of_state_subject(m.subject, m.headers), lambda _key, data: group_muting(data))


# by connection: each NATS server (each test's) has streams and sequences of its own
_caches: weakref.WeakKeyDictionary[NATS, _Caches] = weakref.WeakKeyDictionary()


def _caches_of(ctx: ApiContext) -> _Caches:
    """The kept state of the groups reads on ``ctx``'s connection."""
    caches = _caches.get(ctx.nc)
    if caches is None:
        caches = _caches[ctx.nc] = _Caches(ctx.stream("groups"), ctx.stream("sends"))
    return caches


async def _groups(ctx: ApiContext, org: str, now: float) -> list[GroupView]:
    groups = ctx.stream("groups")
    p = partition_of(org, ctx.partitions)
    state = await _caches_of(ctx).groups.read(ctx.js, groups.stream, groups.state_filter(p, *group_state_prefix(org)),
                                             groups.progress(p))
    with no_gc():
        return groups_of_state(state, org, now)


async def _mutings(ctx: ApiContext, org: str) -> dict[str, list[str]]:
    """The time intervals that muted each of the organisation's groups at its last flush, by
    the filter's state key."""
    sends = ctx.stream("sends")
    p = partition_of(org, ctx.partitions)
    return await _caches_of(ctx).mutings.read(ctx.js, sends.stream, sends.state_filter(p, "group", org),
                                             sends.progress(p))


class _Listed(NamedTuple):
    groups: list[tuple[GroupView, list[tuple[Alert, dict[str, Any]]]]]  # each with its kept alerts and statuses
    receivers: dict[str, list[str]]  # by fingerprint: the receivers of every listed group holding it
    open_end: float


async def _listed(ctx: ApiContext, request: Request) -> _Listed | Response:
    """The groups Alertmanager's ``alertGroups`` lists for the request (or its 400)."""
    try:
        matchers, rx = alert_filters(request)
    except ValueError as exc:
        return bad_request(str(exc))
    flags = {name: query_bool(request, name) for name in ("active", "silenced", "inhibited")}
    muted = query_bool(request, "muted")
    org, now = ctx.org_of(request), time.time()
    # the router's groups and what the filter knows of them, side by side
    all_groups, fstate, mutings = await asyncio.gather(
        _groups(ctx, org, now), filter_state(ctx, org, "silence", "inhibit"), _mutings(ctx, org))
    with no_gc():
        return _list(ctx, org, now, all_groups, fstate, mutings, matchers, rx, flags, muted)


def _list(ctx: ApiContext, org: str, now: float, all_groups: list[GroupView], fstate: dict[str, Any],
          mutings: dict[str, list[str]], matchers: list[Matcher], rx: GoRegex | None, flags: dict[str, bool],
          muted: bool) -> _Listed:
    statuses = StatusReader(fstate, ctx.filter_config(org), org, now, mutings)
    listed: list[tuple[GroupView, list[tuple[Alert, dict[str, Any]]]]] = []
    receivers: dict[str, set[str]] = {}
    for g in all_groups:
        if not receivers_ok(rx, [g.receiver]):
            continue
        kept: list[tuple[Alert, dict[str, Any]]] = []
        keys = (g.group_key,)
        for a in g.alerts:
            if matchers and not matchers_match(matchers, a.labels):
                continue
            st = statuses.status(a, keys)
            status = alert_status(st.state, st.silenced_by, st.inhibited_by, st.muted_by)
            if suppression_kept(status, **flags):
                kept.append((a, status))
                receivers.setdefault(a.fingerprint, set()).add(g.receiver)
        if kept and (muted or not any(st["mutedBy"] for _, st in kept)):
            listed.append((g, kept))
    return _Listed(listed, {fp: sorted(rs) for fp, rs in receivers.items()},
                   now + ctx.loaded.config.global_.resolve_timeout)


def _group(g: GroupView, kept: list[tuple[Alert, dict[str, Any]]], listed: _Listed) -> dict[str, Any]:
    """Alertmanager's ``alertGroup``."""
    return {"labels": g.labels, "receiver": {"name": g.receiver},
            "alerts": [gettable_alert(a, listed.receivers[a.fingerprint], st, open_end=listed.open_end)
                       for a, st in kept]}


async def get_groups(ctx: ApiContext, request: Request) -> Response:
    """Alertmanager's ``alertGroups`` from the router's aggregation groups of the caller's org.

    An alert's receivers are those of every listed group holding it; a group left without
    alerts by the filters is not listed; ``muted=false`` drops the groups a time interval
    muted at their last flush (their alerts then show ``mutedBy`` and are suppressed)."""
    listed = await _listed(ctx, request)
    if isinstance(listed, Response):
        return listed
    with no_gc():  # (msgspec writes the same JSON as JSONResponse's json.dumps, several times faster)
        body = msgspec.json.encode([_group(g, kept, listed) for g, kept in listed.groups])
    return Response(body, media_type="application/json")


def ui_order(receiver: str, labels: dict[str, str]) -> tuple[str, str]:
    """The UI's order of groups: by receiver, then by the label set as it writes it
    (``{a="b", c="d"}``, names sorted, values JSON-quoted)."""
    text = ", ".join(f"{k}={json.dumps(labels[k], ensure_ascii=False)}" for k in sorted(labels))
    return receiver, f"{receiver}|{{{text}}}"


async def get_ui_groups(ctx: ApiContext, request: Request) -> Response:
    """``GET /api/tocsin/ui/groups``: one page of what ``alertGroups`` lists for the same query,
    in the UI's order (:func:`ui_order`), with the totals; ``page`` (from 0) and ``perPage``
    (1 to ``MAX_UI_PAGE``, default 50). The web UI shows 50 groups at a time: the answer for
    10,000 groups is 4 MB its browser would parse to show 50."""
    try:
        page = int(request.query_params.get("page") or 0)
        per_page = int(request.query_params.get("perPage") or 50)
    except ValueError:
        return bad_request("page and perPage are whole numbers")
    if page < 0 or not 0 < per_page <= MAX_UI_PAGE:
        return bad_request(f"page is 0 or more and perPage 1 to {MAX_UI_PAGE}")
    listed = await _listed(ctx, request)
    if isinstance(listed, Response):
        return listed
    with no_gc():
        ordered = sorted(listed.groups, key=lambda gk: ui_order(gk[0].receiver, gk[0].labels))
        shown = ordered[page * per_page:(page + 1) * per_page]
        body = msgspec.json.encode({
            "groups": [_group(g, kept, listed) for g, kept in shown], "page": page, "perPage": per_page,
            "totalGroups": len(ordered), "totalAlerts": sum(len(kept) for _, kept in ordered)})
    return Response(body, media_type="application/json")


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", "/api/v2/alerts/groups", get_groups, ctx),
            route("GET", "/api/tocsin/ui/groups", get_ui_groups, ctx)]
