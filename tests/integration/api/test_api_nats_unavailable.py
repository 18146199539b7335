"""When NATS does not answer, the API says "retry" (503 with Retry-After), not 500: the errors
a real connection raises are mapped by the process's exception handlers."""

from __future__ import annotations

import nats
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from pipeline.application.app import exception_handlers
from pipeline.foundation.embedded import NatsServer

pytestmark = pytest.mark.integration


async def test_a_closed_connection_is_a_503(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await nc.close()
    raised: list[BaseException] = []
    try:
        await js.publish("tocsin.commands.out.0.x", b"{}", timeout=1)
    except Exception as exc:  # what a handler would see
        raised.append(exc)
    assert raised, "publishing on a closed connection raised nothing"

    async def write(_: Request) -> None:
        raise raised[0]

    app = Starlette(routes=[Route("/w", write, methods=["POST"])], exception_handlers=exception_handlers())
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post("/w")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert resp.json().startswith("NATS unavailable, retry")


async def test_no_answer_in_time_is_a_503(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        with pytest.raises(nats.errors.Error) as info:  # nobody serves this subject
            await nc.request("tocsin.nobody.home", b"", timeout=0.2)
    finally:
        await nc.close()

    async def read(_: Request) -> None:
        raise info.value

    app = Starlette(routes=[Route("/r", read)], exception_handlers=exception_handlers())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/r").status_code == 503
