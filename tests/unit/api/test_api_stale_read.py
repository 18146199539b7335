"""A state read only a lagging NATS replica could answer is a 503 with Retry-After, not a 500
and not an old view."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.application.api.errors import stale_read
from pipeline.foundation.runtime.reads import StaleRead


def test_stale_read_is_a_503_to_retry() -> None:
    async def read(_: Request) -> Response:
        raise StaleRead("TOCSIN_ALERTS read from a replica behind")

    app = Starlette(routes=[Route("/read", read)], exception_handlers={StaleRead: stale_read})
    r = TestClient(app).get("/read")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert "replica behind" in r.json()
