"""A real local HTTP receiver for tests: records every request with its arrival time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.application.http import HttpServer


@dataclass
class Received:
    path: str
    at: float
    body: Any
    headers: dict[str, str]


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self.event.clear()
                await self.event.wait()
        return self.received


@contextlib.asynccontextmanager
async def http_receiver() -> AsyncIterator[Receiver]:
    holder: list[Receiver] = []

    async def record(request: Request) -> Response:
        r = holder[0]
        body = await request.body()
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError:
            doc = body
        r.received.append(Received(request.url.path, time.time(), doc, dict(request.headers)))
        r.event.set()
        return Response(status_code=r.status)

    server = HttpServer(Starlette(routes=[Route("/{path:path}", record, methods=["POST", "PUT"])]), "127.0.0.1:0")
    holder.append(Receiver(url=server.url))

    class _Status:
        def __init__(self) -> None:
            self.ready = asyncio.get_running_loop().create_future()

        def started(self, value: Any = None) -> None:
            self.ready.set_result(value)

    status = _Status()
    task = asyncio.create_task(server.run(task_status=status))  # type: ignore[arg-type]
    await status.ready
    try:
        yield holder[0]
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
