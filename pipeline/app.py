"""A Tocsin process: embedded servers when no URL is given, the stages it runs, HTTP, drain.

`tocsin up` runs every stage and the API in one process; `tocsin run STAGE` runs one.
Every task has this module's task group as its parent; each service reports readiness
through ``task_status.started()``; SIGINT/SIGTERM drain the stages before the servers stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.middleware import Middleware

from pipeline.api.app import api_routes
from pipeline.api.auth import AuthMiddleware, auth_exception_handlers
from pipeline.api.auth_config import AuthConfig
from pipeline.api.context import ApiContext
from pipeline.api.errors import stale_read
from pipeline.embedded import start_nats, start_postgres
from pipeline.http import HttpServer, health_routes
from pipeline.runtime.jetstream import connect, ensure_partitions, ensure_stream, retry_transient
from pipeline.runtime.partition import Input, StageSpec
from pipeline.runtime.reads import StaleRead
from pipeline.runtime.stage import StageRunner
from pipeline.runtime.subjects import StreamNames
from pipeline.settings import Loaded, load

__all__ = ["STAGE_NAMES", "Endpoints", "Service", "Settings", "run_process"]

log = logging.getLogger("tocsin")

EVENTS = StreamNames("events")
ALERTS = StreamNames("alerts")
GROUPS = StreamNames("groups")
SENDS = StreamNames("sends")
COMMANDS = StreamNames("commands")
AUDIT = StreamNames("audit")


@dataclass
class Settings:
    storage_path: Path = Path("data")
    nats_url: str | None = None
    postgres_dsn: str | None = None
    partitions: int = 16
    listen: str = ":9093"
    config_file: Path | None = None
    replica: str | None = None
    stream_replicas: int = 1
    member_ttl: float = 5.0
    counter_delay: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)
    loaded: Loaded = field(default_factory=lambda: load(None))


class Service(Protocol):
    @property
    def ready(self) -> bool: ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...

    async def drain(self, timeout: float = 10.0) -> None: ...


@dataclass
class Endpoints:
    nats_url: str
    postgres_dsn: str
    api_url: str
    metrics_url: str
    storage_path: str
    pid: int


def _counter(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.counter.core import CounterCore

    spec = StageSpec(name="counter", core=CounterCore(delay=settings.counter_delay),
                     inputs=[Input("events", EVENTS)], output=StreamNames("counts"),
                     partitions=settings.partitions)
    return StageRunner(nc, js, spec, replica=settings.replica, member_ttl=settings.member_ttl,
                       stream_replicas=settings.stream_replicas)


def _rules(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.rules.core import RulesCore
    from stages.rules.rules import load_rules

    section = settings.loaded.tocsin.rules
    core = RulesCore(load_rules(section) if section else None,
                     resolve_timeout=settings.loaded.config.global_.resolve_timeout)
    spec = StageSpec(name="rules", core=core, inputs=[Input("events", EVENTS)], output=ALERTS,
                     partitions=settings.partitions, output_ttl=int(settings.loaded.tocsin.history_retention))
    return StageRunner(nc, js, spec, replica=settings.replica, member_ttl=settings.member_ttl,
                       stream_replicas=settings.stream_replicas)


def _router(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.router.config import RouteTable
    from stages.router.core import RouterCore

    table = RouteTable.from_config(settings.loaded.config, settings.loaded.orgs)
    spec = StageSpec(name="router", core=RouterCore(table, since=time.time()),
                     inputs=[Input("alerts", ALERTS)], output=GROUPS, partitions=settings.partitions)
    return StageRunner(nc, js, spec, replica=settings.replica, member_ttl=settings.member_ttl,
                       stream_replicas=settings.stream_replicas)


def _filter(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.filter.config import filter_config, filter_options
    from stages.filter.core import FilterCore

    options = filter_options(settings.loaded.tocsin.filter)
    config = filter_config(settings.loaded.config, options)
    orgs = {org: filter_config(c, options) for org, c in settings.loaded.orgs.items()}
    spec = StageSpec(name="filter", core=FilterCore(config, orgs),
                     inputs=[Input("groups", GROUPS), Input("alerts", ALERTS), Input("commands", COMMANDS)],
                     output=SENDS, partitions=settings.partitions)
    return StageRunner(nc, js, spec, replica=settings.replica, member_ttl=settings.member_ttl,
                       stream_replicas=settings.stream_replicas)


def _notifier(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.notifier.service import build_notifier

    if settings.loaded.tocsin.external_url:
        settings.extra.setdefault("external_url", settings.loaded.tocsin.external_url)
    return build_notifier(settings, nc, js, settings.loaded.config, orgs=settings.loaded.orgs)


def _source(settings: Settings, nc: Any, js: Any) -> Service:
    from stages.source.service import build_source

    if settings.loaded.tocsin.source is not None:
        settings.extra.setdefault("source", settings.loaded.tocsin.source)
    return build_source(settings, nc, js)


class _Api:
    """The API has no loop of its own: its routes join the process's HTTP server."""

    ready = True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def drain(self, timeout: float = 10.0) -> None:
        return None


def _api(settings: Settings, nc: Any, js: Any) -> Service:
    return _Api()


# name -> (factory, needs Postgres)
_FACTORIES: dict[str, tuple[Callable[[Settings, Any, Any], Service], bool]] = {
    "counter": (_counter, False),
    "rules": (_rules, False),
    "router": (_router, False),
    "filter": (_filter, False),
    "notifier": (_notifier, False),
    "source": (_source, True),
    "api": (_api, False),
}
STAGE_NAMES = tuple(_FACTORIES)
UP_STAGES: tuple[str, ...] = ("source", "rules", "router", "filter", "notifier", "api")  # what `tocsin up` runs


async def run_process(settings: Settings, stage_names: list[str], *, handle_signals: bool = True,
                      task_status: TaskStatus[Endpoints] = anyio.TASK_STATUS_IGNORED) -> None:
    unknown = [n for n in stage_names if n not in _FACTORIES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGE_NAMES)}")
    needs_pg = any(_FACTORIES[n][1] for n in stage_names)
    storage = settings.storage_path.absolute()
    storage.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        nats_url = settings.nats_url
        if not nats_url:
            nats_url = (await stack.enter_async_context(start_nats(storage / "nats"))).url
        dsn = settings.postgres_dsn or ""
        if needs_pg and not dsn:
            dsn = (await stack.enter_async_context(start_postgres(storage / "postgres"))).dsn
        settings = dataclasses.replace(settings, nats_url=nats_url, postgres_dsn=dsn or None)
        nc = await connect(nats_url, name=f"tocsin-{'+'.join(stage_names) or 'up'}")
        stack.push_async_callback(nc.close)
        js = nc.jetstream()
        await retry_transient("partition count", functools.partial(
            ensure_partitions, js, nc, settings.partitions, replicas=settings.stream_replicas))
        for names in (EVENTS, COMMANDS):
            await retry_transient(f"stream {names.stream}", functools.partial(
                ensure_stream, js, names, replicas=settings.stream_replicas))
        services = [_FACTORIES[n][0](settings, nc, js) for n in stage_names]

        def ready() -> bool:
            return all(s.ready for s in services)

        routes = health_routes(ready)
        middleware: list[Middleware] = []
        if "api" in stage_names:
            await retry_transient("stream TOCSIN_AUDIT", functools.partial(
                ensure_stream, js, AUDIT, replicas=settings.stream_replicas))
            routes = api_routes(ApiContext(nc, js, settings.partitions, settings.loaded)) + routes
            tocsin = settings.loaded.tocsin
            base_dir = str(settings.config_file.parent) if settings.config_file else "."
            middleware.append(Middleware(AuthMiddleware, config=tocsin.auth or AuthConfig(),
                                         default_org=tocsin.default_org, limits=tocsin.limits, base_dir=base_dir))
        app = Starlette(routes=routes, middleware=middleware,
                        exception_handlers={**auth_exception_handlers(), StaleRead: stale_read})
        http = HttpServer(app, settings.listen)
        async with anyio.create_task_group() as tg:
            await tg.start(http.run)
            for s in services:
                await tg.start(s.run)
            endpoints = Endpoints(nats_url=nats_url, postgres_dsn=dsn, api_url=http.url,
                                  metrics_url=f"{http.url}/metrics", storage_path=str(storage), pid=os.getpid())
            (storage / "endpoints.json").write_text(json.dumps(endpoints.__dict__, indent=2) + "\n")
            task_status.started(endpoints)
            if handle_signals:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("signal %d: draining", signum)
                        break
            else:
                await anyio.sleep_forever()
            with anyio.CancelScope(shield=True):
                for s in services:
                    await s.drain()
                http.stop()
            tg.cancel_scope.cancel()
