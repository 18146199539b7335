"""Reloading the configuration: ``POST /-/reload`` (or ``PUT``) and SIGHUP, as Alertmanager.

A reload loads the files again, then prepares every part that uses the configuration (a
stage's new core, the notifier's new senders, the API's routes), and only when every part
prepared without error swaps them all in; otherwise nothing changes and the error is
answered (500, as Alertmanager) and logged. Two phases, so a reload never leaves a process
half on the old configuration and half on the new.

What Tocsin keeps that Alertmanager does not: the stages' state, timers included, lives in
the streams, not in the configuration, so a reload neither resends a notification nor
flushes a group early; a group keeps its timers, and a group whose route changed is handled
as after a restart. Settings that shape the process itself (the source, authentication,
limits, the default organisation, retention, P) take effect at a restart: a reload that
changes them fails, naming them, and keeps the old configuration.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Final, NoReturn

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.application.api.auth.middleware import require
from pipeline.application.settings import Loaded
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.runtime.metrics import REGISTRY

__all__ = ["RELOAD_SUBJECT", "RESTART_ONLY", "Prepare", "ReloadError", "Reloader", "follow_reloads",
           "reload_routes", "restart_only_changes"]

log = logging.getLogger("tocsin.reload")

#: ``tocsin:`` settings a reload cannot apply (they are read once, when the process starts).
RESTART_ONLY: Final = ("source", "auth", "limits", "default_org", "history_retention", "nats_disconnect_grace")

#: Where a process that reloaded on request tells the others (``tocsin up --topology
#: processes``, Helm): each reloads its own copy of the files.
RELOAD_SUBJECT: Final = "tocsin.control.reload"
_ORIGIN: Final = uuid.uuid4().hex  # this process, so it does not reload twice on its own news

#: A part of the process that uses the configuration: given the new one, it prepares its
#: change (raising if it cannot) and returns what swaps it in (which must not fail).
Prepare = Callable[[Loaded], Callable[[], None]]

_SUCCESS = {prefix: Gauge(f"{prefix}_config_last_reload_successful", "Whether the last configuration reload "
                          "attempt was successful", registry=REGISTRY) for prefix in ("alertmanager", "tocsin")}
_SUCCESS_AT = {prefix: Gauge(f"{prefix}_config_last_reload_success_timestamp_seconds", "Timestamp of the last "
                             "successful configuration reload", registry=REGISTRY)
               for prefix in ("alertmanager", "tocsin")}


class ReloadError(Exception):
    """The reload failed; the old configuration stays. The message says why."""


def restart_only_changes(old: Loaded, new: Loaded) -> list[str]:
    """The restart-only settings whose value differs between ``old`` and ``new``."""
    return [f"tocsin.{name}" for name in RESTART_ONLY if getattr(old.tocsin, name) != getattr(new.tocsin, name)]


class Reloader:
    """Reloads one process's configuration (see the module doc). ``load`` reads the files."""

    def __init__(self, load: Callable[[], Loaded], current: Loaded, clock: Callable[[], float] = time.time) -> None:
        self._load = load
        self.current = current
        self._parts: list[Prepare] = []
        self._lock = anyio.Lock()
        self._clock = clock
        self.last_error = ""
        self._record(True)

    def add(self, prepare: Prepare) -> None:
        self._parts.append(prepare)

    def _record(self, ok: bool) -> None:
        for prefix in ("alertmanager", "tocsin"):
            _SUCCESS[prefix].set(1 if ok else 0)
            if ok:
                _SUCCESS_AT[prefix].set(self._clock())

    async def reload(self) -> Loaded:
        """Load and apply the configuration; :class:`ReloadError` keeps the old one."""
        async with self._lock:
            try:
                new = await anyio.to_thread.run_sync(self._load)  # file reads (templates, tokens): off the loop
                changed = restart_only_changes(self.current, new)
                if changed:
                    raise ReloadError(f"{', '.join(changed)} changed: it takes effect at a restart")
                swaps = [prepare(new) for prepare in self._parts]
            except ConfigError as exc:
                self._failed("; ".join(exc.errors))
            except ReloadError as exc:
                self._failed(str(exc))
            except (ValueError, TypeError, OSError) as exc:  # a part could not be built from it
                self._failed(f"{type(exc).__name__}: {exc}")
            for swap in swaps:
                swap()
            self.current, self.last_error = new, ""
            self._record(True)
            log.info("configuration reloaded")
            return new

    def _failed(self, why: str) -> NoReturn:
        self.last_error = why
        self._record(False)
        log.error("configuration reload failed, the old configuration stays: %s", why)
        raise ReloadError(why)


def reload_routes(reloader: Reloader, nc: NATS, *, admin_only: bool) -> list[BaseRoute]:
    """``POST``/``PUT /-/reload``: 200 when reloaded, else 500 with the reason (Alertmanager's
    answers). With the API in the process, only an admin may reload (in open mode, anyone, as
    Alertmanager). A reload asked here is passed on to the other processes through NATS."""

    async def reload(request: Request) -> Response:
        if admin_only:
            require(request, "admin")
        try:
            await reloader.reload()
        except ReloadError as exc:
            return PlainTextResponse(f"failed to reload config: {exc}", 500)
        await nc.publish(RELOAD_SUBJECT, _ORIGIN.encode())
        return PlainTextResponse("")

    return [Route("/-/reload", reload, methods=["POST", "PUT"])]


async def follow_reloads(reloader: Reloader, nc: NATS, *,
                         task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Reload when another process of the deployment reloaded on request (its failure is logged
    and counted in the metrics, the old configuration stays)."""
    send, receive = anyio.create_memory_object_stream[bytes](16)

    async def on_message(msg: Msg) -> None:
        if msg.data != _ORIGIN.encode():
            send.send_nowait(msg.data)

    sub = await nc.subscribe(RELOAD_SUBJECT, cb=on_message)
    task_status.started()
    try:
        async with receive:
            async for _ in receive:
                try:
                    await reloader.reload()
                except ReloadError:
                    pass  # logged by the reloader
    finally:
        with anyio.CancelScope(shield=True):
            await sub.unsubscribe()
