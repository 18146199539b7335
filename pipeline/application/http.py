"""The process's HTTP server: health, readiness, metrics, and (in `tocsin up`) the API.

``/-/healthy`` is the liveness probe: it fails (503) once the process has lost its NATS
connection for good (nats-py closed it) or has been reconnecting for longer than a grace,
so an orchestrator restarts a process that cannot recover by itself; within the grace
nats-py's own reconnects keep it alive. ``/-/ready`` also needs the connection.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import anyio
import uvicorn
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from pipeline.application.startup import StartupError, parse_listen_address
from pipeline.foundation.runtime.metrics import REGISTRY

__all__ = ["ConnectionWatch", "HttpServer", "connection_problem", "health_routes"]


def connection_problem(state: str, down_since: float | None, now: float, grace: float) -> str | None:
    """Why the process is not alive given its NATS connection ``state`` (``connected``,
    ``reconnecting``, ``closed``) and since when it has been down, or ``None``."""
    if state == "closed":
        return "NATS connection closed for good: restart the process"
    if state == "connected" or down_since is None:
        return None
    down = now - down_since
    if down > grace:
        return f"NATS connection lost {down:.0f}s ago (grace {grace:g}s): check nats-server, or restart the process"
    return None


class _Connection(Protocol):
    @property
    def is_connected(self) -> bool: ...

    @property
    def is_closed(self) -> bool: ...


class ConnectionWatch:
    """Remembers since when the NATS connection has been down (sampled by ``watch`` and by
    every probe), for ``connection_problem``."""

    def __init__(self, nc: _Connection, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.nc = nc
        self.grace = grace
        self.clock = clock
        self.down_since: float | None = None

    def state(self) -> str:
        if self.nc.is_closed:
            return "closed"
        return "connected" if self.nc.is_connected else "reconnecting"

    def problem(self) -> str | None:
        now, state = self.clock(), self.state()
        if state == "connected":
            self.down_since = None
        elif self.down_since is None:
            self.down_since = now
        return connection_problem(state, self.down_since, now, self.grace)

    @property
    def connected(self) -> bool:
        return self.state() == "connected"

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample the connection often enough that the grace is measured from the loss, not
        from the first probe after it."""
        task_status.started()
        while True:
            self.problem()
            await anyio.sleep(min(1.0, max(0.05, self.grace / 4)))


def health_routes(is_ready: Callable[[], bool], watch: ConnectionWatch | None = None) -> list[BaseRoute]:
    async def healthy(_: Request) -> Response:
        problem = watch.problem() if watch is not None else None
        if problem:
            return PlainTextResponse(problem, 503)
        return PlainTextResponse("OK")

    async def ready(_: Request) -> Response:
        if watch is not None and not watch.connected:
            return PlainTextResponse("Service Unavailable: no NATS connection", 503)
        return PlainTextResponse("OK") if is_ready() else PlainTextResponse("Service Unavailable", 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the process's own handler drains the pipeline
        yield


class HttpServer:
    """uvicorn on a pre-bound socket (so port 0 works and the real port is known)."""

    def __init__(self, app: ASGIApp, listen: str) -> None:
        self.app = app
        host, port = parse_listen_address(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:  # (one line, not a traceback: pipeline.application.startup)
            self.sock.close()
            raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}; stop what uses it or give "
                               "another --web.listen-address") from None
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        self.server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.server.serve, [self.sock])
            while not self.server.started:
                await anyio.sleep(0.01)
            task_status.started()

    def stop(self) -> None:
        self.server.should_exit = True
