"""Routes from handlers: each resource module's handlers are module-level functions
``handler(ctx, request)``, bound to the process's :class:`ApiContext` here."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.application.api.context import ApiContext

__all__ = ["Handler", "route"]

Handler = Callable[[ApiContext, Request], Awaitable[Response]]


def route(method: str, path: str, handler: Handler, ctx: ApiContext) -> Route:
    """``method path`` answered by ``handler`` with ``ctx`` (the route is named after the handler)."""
    return Route(path, functools.partial(handler, ctx), methods=[method], name=handler.__name__)
