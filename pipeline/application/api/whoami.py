"""Who the caller is (Tocsin): ``GET /api/tocsin/whoami`` answers the request's identity, its
role and permissions, and the organisations it may read and act for, so a client (the web
UI's organisation switcher) can offer them.

An identity of every organisation (``orgs: ['*']``, and every caller without authentication)
may name any organisation: ``allOrganisations`` is true and ``organisations`` lists those
this process knows (the default one and those with a configuration of their own).

The middleware answers this path without ``X-Scope-OrgID`` even for an identity of several
organisations (``ORG_OPTIONAL_PATHS``): learning them is what the call is for. ``current``
is then empty; with a header, it is the organisations the request acts for.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from pipeline.application.api.auth.middleware import identity_of
from pipeline.application.api.context import ApiContext
from pipeline.application.api.routing import route
from pipeline.application.config.identity import PERMISSIONS, AllOrgs, Identity

__all__ = ["WHOAMI_PATH", "get_whoami", "routes", "whoami"]

WHOAMI_PATH: Final = "/api/tocsin/whoami"


def whoami(identity: Identity, current: list[str], known_orgs: list[str]) -> dict[str, Any]:
    """The answer for ``identity`` acting for ``current``; ``known_orgs`` stand for "every"."""
    every = isinstance(identity.orgs, AllOrgs)
    orgs = sorted(set(known_orgs)) if every else sorted(identity.orgs)  # type: ignore[arg-type]
    return {"subject": identity.subject, "role": identity.role, "method": identity.method,
            "permissions": [p for p in PERMISSIONS if identity.allows(p)],
            "organisations": orgs, "allOrganisations": every, "allowUnion": identity.allow_union,
            "current": current}


async def get_whoami(ctx: ApiContext, request: Request) -> Response:
    identity = identity_of(request)  # any authenticated caller may ask who it is
    known = [ctx.default_org, *ctx.loaded.orgs]
    return JSONResponse(whoami(identity, list(getattr(request.state, "orgs", None) or []), known))


def routes(ctx: ApiContext) -> list[BaseRoute]:
    return [route("GET", WHOAMI_PATH, get_whoami, ctx)]
