"""The notifier as a service of a Tocsin process (``pipeline.application.app.Service``).

``build_notifier(nc, js, config, options)`` reads ``tocsin.notifier`` from the loaded
Alertmanager config, builds one sender per delivered integration and returns the service;
it raises :class:`~stages.notifier.config.NotifierConfigError` when the notifier settings
cannot work (unknown keys, fallbacks naming unknown receivers or forming a cycle).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from pipeline.foundation.amconfig.model import Config

from .config import NotifierConfig, NotifierConfigError, check_fallbacks, load_notifier_config
from .senders import Senders, build_senders
from .templates import TemplateSet
from .worker import Worker

__all__ = ["NotifierService", "build_notifier", "default_external_url"]

log = logging.getLogger("tocsin.notifier")


def default_external_url(listen: str) -> str:
    """Alertmanager's default: ``http://<hostname>:<port of the listen address>``."""
    port = listen.rpartition(":")[2] or "9093"
    return f"http://{socket.gethostname()}:{port}"


@dataclass(frozen=True)
class NotifierOptions:
    """What the application hands the notifier besides its configuration."""

    external_url: str = ""  # --web.external-url or tocsin.external_url; "" for Alertmanager's default
    listen: str = ":9093"  # the process's listen address (the default external URL's port)
    stream_replicas: int = 1


class NotifierService:
    """A notifier worker and its senders; closes the senders' connections when it stops."""

    def __init__(self, worker: Worker, senders: Senders, settings: NotifierConfig) -> None:
        self.worker = worker
        self.senders = senders
        self.settings = settings
        self._retired: list[Senders] = []  # replaced by a reload; sends in flight may still use them

    def adopt(self, fresh: NotifierService) -> None:
        """Take a reloaded configuration's senders and settings (built, not running): the next
        request uses them; requests in flight finish on the old ones, closed when this stops.
        The consumer's own settings (concurrency, ack_wait) take effect at a restart."""
        self._retired.append(self.senders)
        self.senders, self.settings = fresh.senders, fresh.settings
        self.worker.senders, self.worker.config = fresh.senders, fresh.worker.config
        self.worker.settings = fresh.settings

    @property
    def ready(self) -> bool:
        return self.worker.ready

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.worker.run(task_status=task_status)
        finally:
            with anyio.CancelScope(shield=True):
                for senders in (*self._retired, self.senders):
                    await senders.aclose()

    async def drain(self, timeout: float = 10.0) -> None:
        await self.worker.drain(timeout)


def build_notifier(nc: Any, js: Any, config: Config, options: NotifierOptions | None = None, *,
                   templates: TemplateSet | None = None, clock: Callable[[], float] = time.time,
                   orgs: Mapping[str, Config] | None = None) -> NotifierService:
    """The notifier service for ``config`` (see the module doc).

    The external URL of templates and webhooks is ``tocsin.notifier.external_url``, else
    ``options.external_url``, else Alertmanager's default from ``options.listen``.
    ``templates``: the named templates of the configuration (default: Alertmanager's).
    """
    ncfg = load_notifier_config(config.tocsin)
    problems = check_fallbacks(ncfg, [r.name for r in config.receivers])
    if problems:
        raise NotifierConfigError("; ".join(problems))
    options = options or NotifierOptions()
    external_url = ncfg.external_url or options.external_url or default_external_url(options.listen)
    senders = build_senders(config, external_url=external_url, templates=templates, default_timeout=ncfg.timeout,
                            orgs=orgs)
    for problem in senders.problems:
        log.warning("notifier: %s", problem)
    worker = Worker(nc, js, config=config, settings=ncfg, senders=senders, clock=clock,
                    stream_replicas=options.stream_replicas)
    return NotifierService(worker, senders, ncfg)
