"""The web UI for the on-call engineer: one page and its static assets (plain ES modules, no build).

``GET /`` answers ``ui_assets/index.html`` with a ``<base href>`` of the request's root path, so
every asset and API call is relative and the page works under ``--web.route-prefix``. The
assets are package data (``pipeline/application/api/ui_assets``), public like ``/`` (see
``DEFAULT_PUBLIC_PATHS``); the API calls the page makes carry the bearer token it was given.

With an ``ApiContext`` two reads the Alertmanager API lacks are added (read permission):
``GET /api/tocsin/ui/routes`` (the caller's route tree and receivers with their integrations,
for the status view) and ``POST /api/tocsin/ui/groupkeys`` (the groups an alert's labels fall
in, with their group keys: what a group acknowledgement names). The alerts view's page of
groups, ``GET /api/tocsin/ui/groups``, is served beside Alertmanager's read in ``groups.py``.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts.matchers import format_matchers
from pipeline.application.api.context import ApiContext
from pipeline.application.api.errors import bad_request
from pipeline.foundation.amconfig import RouteNode, group_key

__all__ = ["ASSETS", "MAX_GROUPKEY_LABELSETS", "route_tree", "ui_routes"]

ASSETS: Final = Path(__file__).with_name("ui_assets")
MAX_GROUPKEY_LABELSETS: Final = 500  # label sets one groupkeys read resolves (a page of groups)
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
# the page may load only its own scripts and styles, and talk only to its own origin
_CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


@cache
def _assets() -> dict[str, bytes]:
    """The assets folder's files, read once: the names a request may ask for (any other is a
    404, and a public path's arbitrary names never grow a cache)."""
    return {p.name: p.read_bytes() for p in ASSETS.iterdir()
            if p.is_file() and p.suffix in _TYPES and not p.name.startswith(".")}


def _asset(name: str) -> bytes | None:
    return _assets().get(name)


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", **(extra or {})}


def route_tree(node: RouteNode) -> dict[str, Any]:
    """A route node and its children as the status view draws them."""
    return {"receiver": node.receiver, "matchers": format_matchers(node.matchers) if node.matchers else "",
            "groupBy": ["..."] if node.group_by_all else sorted(node.group_by), "continue": node.continue_,
            "groupWait": node.group_wait, "groupInterval": node.group_interval,
            "repeatInterval": node.repeat_interval, "muteTimeIntervals": list(node.mute_time_intervals),
            "activeTimeIntervals": list(node.active_time_intervals), "key": node.key,
            "routes": [route_tree(r) for r in node.routes]}


def _integrations(receiver: Any) -> list[dict[str, Any]]:
    """The kinds of a receiver's integrations and how many of each (their settings may hold secrets)."""
    out = []
    for name in sorted(getattr(type(receiver), "__struct_fields__", ())):
        if name.endswith("_configs") and (configs := getattr(receiver, name)):
            out.append({"kind": name.removesuffix("_configs"), "count": len(configs)})
    return out


def ui_routes(ctx: ApiContext | None = None) -> list[BaseRoute]:
    async def index(request: Request) -> Response:
        page = _asset("index.html")
        assert page is not None, "pipeline/application/api/ui_assets/index.html is missing: reinstall the package"
        base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
        body = page.replace(b"<base href=\"./\">", f"<base href=\"{base}\">".encode())
        return Response(body, media_type="text/html; charset=utf-8", headers=_headers({"Cache-Control": "no-cache"}))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        body = _asset(name)
        if body is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return Response(body, media_type=_TYPES[Path(name).suffix],
                        headers=_headers({"Cache-Control": "no-cache"}))

    routes: list[BaseRoute] = [Route("/", index, methods=["GET"]), Route("/ui/{name}", asset, methods=["GET"])]
    if ctx is None:
        return routes

    async def routes_view(request: Request) -> Response:
        org = ctx.org_of(request)
        config = ctx.loaded.config_for(org)
        return JSONResponse({"org": org, "route": route_tree(ctx.routes_of(org)),
                             "receivers": [{"name": r.name, "integrations": _integrations(r)}
                                           for r in config.receivers]})

    async def groupkeys(request: Request) -> Response:
        org = ctx.org_of(request)
        try:
            doc = msgspec.json.decode(await request.body(), type=list[dict[str, str]])
        except msgspec.DecodeError as exc:
            return bad_request(f"the body is a JSON list of label sets (objects of strings): {exc}")
        if len(doc) > MAX_GROUPKEY_LABELSETS:
            return bad_request(f"at most {MAX_GROUPKEY_LABELSETS} label sets per request: split it")
        tree = ctx.routes_of(org)
        return JSONResponse([[{"receiver": r.receiver, "groupKey": group_key(r, labels)} for r in tree.match(labels)]
                             for labels in doc])

    return [*routes, Route("/api/tocsin/ui/routes", routes_view, methods=["GET"]),
            Route("/api/tocsin/ui/groupkeys", groupkeys, methods=["POST"])]
