"""The configuration both systems get, and Prometheus Alertmanager started for a side-by-side run.

The route makes every alert its own group (``group_by: ['...']``) notified at once
(``group_wait: 0s``), resolved alerts on the group's next ``group_interval`` tick
(``send_resolved: true``), never repeated within a run (``repeat_interval: 24h``), and pushed
alerts without ``endsAt`` stay firing for the run (``resolve_timeout: 1h``): the notification
model of :mod:`loadtest.oracle`. Tocsin's file adds a ``tocsin:`` section; Alertmanager's is the
same file without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.stack import spawn, stop_process, wait_ready

__all__ = ["Alertmanager", "alertmanager_binary", "route_config", "start_alertmanager"]

AM_CANDIDATES = ("prometheus-alertmanager", "alertmanager")


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def route_config(hook_url: str, group_interval: float, *, tocsin: bool, concurrency: int = 256) -> str:
    """The Alertmanager configuration of a run (with Tocsin's section when ``tocsin``)."""
    text = f"""\
global:
  resolve_timeout: 1h
route:
  receiver: lt
  group_by: ['...']
  group_wait: 0s
  group_interval: {_duration(group_interval)}
  repeat_interval: 24h
receivers:
  - name: lt
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
"""
    if tocsin:
        text += f"""\
tocsin:
  default_org: lt
  notifier:
    concurrency: {concurrency}
"""
    return text


def alertmanager_binary() -> str:
    """Debian's prometheus-alertmanager (or an ``alertmanager`` on PATH); installed with apt-get when
    missing and running as root, else a RuntimeError saying how to get it."""
    for name in AM_CANDIDATES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus-alertmanager"],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("prometheus-alertmanager")
        if found:
            return found
    raise RuntimeError("Prometheus Alertmanager not found: `sudo apt-get install prometheus-alertmanager` "
                       "(Debian/Ubuntu), or put an `alertmanager` binary from "
                       "https://github.com/prometheus/alertmanager/releases on PATH")


@dataclass(frozen=True)
class Alertmanager:
    url: str
    pid: int
    version: str


@contextlib.asynccontextmanager
async def start_alertmanager(work: Path, config_text: str) -> AsyncIterator[Alertmanager]:
    """Alertmanager on a free loopback port, storage under ``work``, clustering off."""
    from pipeline.foundation.embedded import free_port

    binary = alertmanager_binary()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "alertmanager.yml"
    conf.write_text(config_text)
    port = free_port()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    proc = spawn([binary, f"--config.file={conf}", f"--storage.path={work / 'am-data'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
                 work / "alertmanager.log")
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/-/ready", 30, proc, "alertmanager")
        yield Alertmanager(url=url, pid=proc.pid, version=version.strip())
    finally:
        await stop_process(proc, 15)
