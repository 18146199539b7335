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
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import msgspec
import nats.errors
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from contracts.partition import partition_of
from pipeline.application.api.app import api_routes
from pipeline.application.api.audit import AuditRecord, DenialAuditor
from pipeline.application.api.auth.jwt import load_key_source
from pipeline.application.api.auth.middleware import Authenticator, AuthMiddleware, auth_exception_handlers
from pipeline.application.api.context import AUDIT_TTL, ApiContext
from pipeline.application.api.errors import nats_unavailable, nesting_too_deep, stale_read
from pipeline.application.api.ingest import ingest_routes
from pipeline.application.api.ui import ui_routes
from pipeline.application.config.auth import AuthConfig
from pipeline.application.graph import (
    CHAIN,
    GRAPH,
    chain_core,
    process_stages,
    separate_streams,
    stage_specs,
    stream_names,
)
from pipeline.application.http import ConnectionWatch, HttpServer, health_routes
from pipeline.application.process_settings import Settings
from pipeline.application.reload import Prepare, Reloader, ReloadError, follow_reloads, reload_routes
from pipeline.application.settings import Loaded, load
from pipeline.application.startup import check_listen, check_postgres, start_timeout, wait_for_nats
from pipeline.foundation.embedded import start_nats, start_postgres, write_private_file
from pipeline.foundation.runtime.jetstream import (
    connect,
    ensure_deployment,
    ensure_partitions,
    ensure_stream,
    retry_transient,
)
from pipeline.foundation.runtime.partition import Input, StageSpec
from pipeline.foundation.runtime.reads import StaleRead
from pipeline.foundation.runtime.stage import StageRunner
from pipeline.foundation.runtime.subjects import AUDIT, COMMANDS, EVENTS, StreamNames, token
from pipeline.foundation.telemetry import setup_tracing
from stages.counter.core import CounterCore
from stages.notifier.service import NotifierOptions, build_notifier
from stages.source.service import SourceOptions, build_source

__all__ = ["STAGE_NAMES", "Endpoints", "Service", "Settings", "exception_handlers", "route_prefix", "run_process"]

log = logging.getLogger("tocsin")



# NATS errors that mean "no answer now": the API answers 503 (retry), not 500
_NATS_UNAVAILABLE = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                     nats.errors.OutboundBufferLimitError)


def exception_handlers() -> dict[Any, Any]:
    """How the process's HTTP server answers what a handler raised: the API's error shapes."""
    return {**auth_exception_handlers(), StaleRead: stale_read, RecursionError: nesting_too_deep,
            **dict.fromkeys(_NATS_UNAVAILABLE, nats_unavailable)}


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
    spec = StageSpec(name="counter", core=CounterCore(delay=settings.counter_delay),
                     inputs=[Input("events", EVENTS)], output=StreamNames("counts"),
                     partitions=settings.partitions)
    return StageRunner(nc, js, spec, replica=settings.replica, member_ttl=settings.member_ttl,
                       stream_replicas=settings.stream_replicas)


def _stateful(name: str) -> Callable[[Settings, Any, Any], Service]:
    """The factory of a stage of the graph (or the chain): its spec derives from pipeline.application.graph."""
    def build(settings: Settings, nc: Any, js: Any) -> Service:
        return StageRunner(nc, js, stage_specs(settings, name), replica=settings.replica,
                           member_ttl=settings.member_ttl, stream_replicas=settings.stream_replicas)
    build.__name__ = f"_{name}"
    return build


_rules, _router, _filter, _chain = (_stateful(n) for n in ("rules", "router", "filter", CHAIN))


def _notifier(settings: Settings, nc: Any, js: Any) -> Service:
    options = NotifierOptions(external_url=settings.external_url or settings.loaded.tocsin.external_url or "",
                              listen=settings.listen, stream_replicas=settings.stream_replicas)
    return build_notifier(nc, js, settings.loaded.config, options, orgs=settings.loaded.orgs)


_CORES: dict[str, Callable[[Settings], Any]] = {**{d.name: d.core for d in GRAPH}, CHAIN: chain_core}


def _reload_part(name: str, service: Service, settings: Settings) -> Prepare | None:
    """How the running ``service`` of stage ``name`` takes a new configuration (None: it does not
    use it, or only at a restart: the source, the API's authentication)."""
    if name in _CORES:
        def prepare_core(loaded: Loaded) -> Callable[[], None]:
            core = _CORES[name](dataclasses.replace(settings, loaded=loaded))
            spec = service.spec  # type: ignore[attr-defined]
            return lambda: setattr(spec, "core", core)  # the next step uses it; state and timers stay
        return prepare_core
    if name == "notifier":
        def prepare_notifier(loaded: Loaded) -> Callable[[], None]:
            fresh = _notifier(dataclasses.replace(settings, loaded=loaded), None, None)
            return lambda: service.adopt(fresh)  # type: ignore[attr-defined]
        return prepare_notifier
    return None


def _source(settings: Settings, nc: Any, js: Any) -> Service:
    return build_source(nc, js, SourceOptions(
        dsn=settings.postgres_dsn or "", partitions=settings.partitions, config=settings.loaded.tocsin.source,
        replica=settings.replica, stream_replicas=settings.stream_replicas))


class _Api:
    """The API has no loop of its own: its routes join the process's HTTP server."""

    ready = True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def drain(self, timeout: float = 10.0) -> None:
        return None


def _api(settings: Settings, nc: Any, js: Any) -> Service:
    return _Api()


def route_prefix(external_url: str | None, prefix: str | None) -> str:
    """``--web.route-prefix`` as Alertmanager derives it: the flag, else the external URL's path;
    "" or "/path" without a trailing slash."""
    path = prefix if prefix is not None else urllib.parse.urlsplit(external_url or "").path
    return "/" + path.strip("/") if path.strip("/") else ""


class _Prefixed:
    """Serves ``app`` under ``prefix``: paths outside it are 404, inside it the app sees the
    path without it (its auth's public paths and its routes stay as they are)."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
                return
            inner = path[len(self.prefix):] or "/"
            raw = scope.get("raw_path")
            scope = {**scope, "path": inner, "root_path": scope.get("root_path", "") + self.prefix,
                     "raw_path": raw[len(self.prefix):] or b"/" if raw else raw}
        await self.app(scope, receive, send)


def _authenticator(settings: Settings) -> Authenticator:
    """The API's authenticator, built before anything serves: a bad tokens or key file stops
    the start (``ConfigError``) instead of making every request a 500. The files were
    normally read when the configuration was loaded; a ``Loaded`` built in code reads them here."""
    loaded = settings.loaded
    config = loaded.tocsin.auth or AuthConfig()
    base_dir = str(settings.config_file.parent) if settings.config_file else "."
    if loaded.tokens is None and loaded.keys is None:
        return Authenticator.from_config(config, base_dir=base_dir)
    keys = loaded.keys
    if keys is None and config.jwt is not None and "jwt" in config.methods:
        keys = load_key_source(config.jwt, base_dir=base_dir)
    return Authenticator(config, tokens=loaded.tokens, keys=keys)


def _denial_auditor(js: Any, partitions: int) -> DenialAuditor:
    async def write(rec: AuditRecord) -> None:
        subject = AUDIT.out(partition_of(rec.org, partitions), token(rec.org))
        await js.publish(subject, msgspec.json.encode(rec), headers={"Nats-TTL": str(AUDIT_TTL)}, timeout=2)

    return DenialAuditor(write)


# name -> (factory, needs Postgres)
_FACTORIES: dict[str, tuple[Callable[[Settings, Any, Any], Service], bool]] = {
    "counter": (_counter, False),
    "rules": (_rules, False),
    "router": (_router, False),
    "filter": (_filter, False),
    CHAIN: (_chain, False),
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
    try:  # OTEL_TRACES_EXPORTER (otlp, console, none) and the OTEL_* variables; kept if already set up
        setup_tracing()
    except ValueError as exc:
        raise SystemExit(f"tocsin: {exc}") from None
    try:
        wanted, stage_names = list(stage_names), process_stages(settings.deployment, list(stage_names))
    except ValueError as exc:
        raise SystemExit(f"tocsin: {exc}") from None
    # which deployment's streams this process reads or writes: checked against the recorded one
    uses_graph = any(n in _CORES or n == "api" for n in stage_names)
    needs_pg = any(_FACTORIES[n][1] for n in stage_names)
    # one-line failures (pipeline.application.startup) before anything starts: a busy port, an external server down
    timeout = start_timeout()
    check_listen(settings.listen)
    if settings.nats_url:
        await wait_for_nats(settings.nats_url, timeout)
    if needs_pg and settings.postgres_dsn:
        await check_postgres(settings.postgres_dsn, timeout, logical=True)
    if stage_names != wanted:
        log.info("%s deployment: running %s for %s", settings.deployment, ", ".join(stage_names), ", ".join(wanted))
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
        if uses_graph:
            await retry_transient("deployment", functools.partial(
                ensure_deployment, js, nc, settings.deployment, legacy=separate_streams(),
                replicas=settings.stream_replicas))
        for names in (EVENTS, COMMANDS):
            await retry_transient(f"stream {names.stream}", functools.partial(
                ensure_stream, js, names, replicas=settings.stream_replicas))
        services = [_FACTORIES[n][0](settings, nc, js) for n in stage_names]
        watch = ConnectionWatch(nc, settings.loaded.tocsin.nats_disconnect_grace)
        reloader = Reloader(functools.partial(load, settings.config_file, settings.tocsin_file), settings.loaded)
        for name, service in zip(stage_names, services, strict=True):
            part = _reload_part(name, service, settings)
            if part is not None:
                reloader.add(part)

        def ready() -> bool:
            return all(s.ready for s in services)

        routes = health_routes(ready, watch) + reload_routes(reloader, nc, admin_only="api" in stage_names)
        middleware: list[Middleware] = []
        if "api" in stage_names:
            authenticator = _authenticator(settings)
            stack.push_async_callback(authenticator.aclose)
            await retry_transient("stream TOCSIN_AUDIT", functools.partial(
                ensure_stream, js, AUDIT, replicas=settings.stream_replicas))
            ctx = ApiContext(nc, js, settings.partitions, settings.loaded)
            ctx.streams = stream_names(settings.deployment)  # where the stages are read (pipeline.application.graph)
            reloader.add(lambda loaded: functools.partial(ctx.use, loaded))
            base_dir = str((settings.tocsin_file or settings.config_file or Path("alertmanager.yml")).parent)
            routes = api_routes(ctx) + ingest_routes(ctx, base_dir=base_dir) + ui_routes(ctx) + routes
            tocsin = settings.loaded.tocsin
            middleware.append(Middleware(AuthMiddleware, config=tocsin.auth or AuthConfig(),
                                         default_org=tocsin.default_org, limits=tocsin.limits,
                                         authenticator=authenticator,
                                         auditor=_denial_auditor(js, settings.partitions)))
        app = Starlette(routes=routes, middleware=middleware,
                        exception_handlers=exception_handlers())
        app.middleware_stack = app.build_middleware_stack()  # now: a middleware that cannot start stops the start
        http = HttpServer(_Prefixed(app, settings.route_prefix) if settings.route_prefix else app, settings.listen)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.watch)
            await tg.start(follow_reloads, reloader, nc)
            await tg.start(http.run)
            for s in services:
                await tg.start(s.run)
            base = http.url + settings.route_prefix
            endpoints = Endpoints(nats_url=nats_url, postgres_dsn=dsn, api_url=base, metrics_url=f"{base}/metrics",
                                  storage_path=str(storage), pid=os.getpid())
            # 0600: the URLs carry the embedded servers' credentials (for `tocsin emit`, `tocsin dlq`).
            write_private_file(storage / "endpoints.json", json.dumps(endpoints.__dict__, indent=2) + "\n")
            task_status.started(endpoints)
            if handle_signals:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                    async for signum in signals:
                        if signum == signal.SIGHUP:  # as Alertmanager: reload, keep running
                            with contextlib.suppress(ReloadError):  # (logged; the old configuration stays)
                                await reloader.reload()
                            continue
                        log.info("signal %d: draining", signum)
                        break
            else:
                await anyio.sleep_forever()
            with anyio.CancelScope(shield=True):
                for s in services:
                    await s.drain()
                http.stop()
            tg.cancel_scope.cancel()
