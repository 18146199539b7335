"""The process's HTTP server: health, readiness, metrics, and (in `tocsin up`) the API."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.runtime.metrics import REGISTRY

__all__ = ["HttpServer", "health_routes", "parse_listen_address"]


def parse_listen_address(addr: str) -> tuple[str, int]:
    """Alertmanager's ``--web.listen-address`` form: ``:9093``, ``0.0.0.0:9093``, ``[::1]:9093``."""
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid listen address {addr!r}: expected host:port or :port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def health_routes(is_ready: Callable[[], bool]) -> list[BaseRoute]:
    async def healthy(_: Request) -> Response:
        return PlainTextResponse("OK")

    async def ready(_: Request) -> Response:
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

    def __init__(self, app: Starlette, listen: str) -> None:
        self.app = app
        host, port = parse_listen_address(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
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
