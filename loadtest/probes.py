"""What the load test samples while it runs: CPU and memory per process, each stage's
consumer lag and inputs (its ``/metrics``), and the replication slot's lag (Postgres).

CPU is in percent of one core (``/proc`` through psutil: user + system time between two
samples); a process sampled with ``tree`` adds its descendants (Postgres' backends and WAL
sender). Memory is RSS, or PSS for trees (backends share Postgres' buffers).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio
import asyncpg
import httpx
import psutil

from loadtest.stack import Proc

__all__ = ["Sampler", "Samples", "parse_metrics"]

log = logging.getLogger("loadtest")

_LINE = re.compile(r"^(tocsin_stage_consumer_lag|tocsin_stage_inputs_total|tocsin_stage_commits_total|"
                   r"tocsin_stage_commit_batches_total|"
                   r"tocsin_stage_(?:commit|step)_seconds_(?:sum|count)|tocsin_source_rows_total|"
                   r"tocsin_source_batches_total|tocsin_source_publish_seconds_(?:sum|count)|"
                   r"tocsin_notifications_total|tocsin_notification_latency_seconds_(?:sum|count)|"
                   r"tocsin_notifier_in_flight)(?:\{([^}]*)\})? (\S+)$")
# the source's own metrics, under the names the stages use
_SOURCE = {"tocsin_source_rows_total": "inputs", "tocsin_source_batches_total": "commits",
           "tocsin_source_publish_seconds_sum": "commit_seconds_sum",
           "tocsin_source_publish_seconds_count": "commit_seconds_count",
           # the notifier: attempts, HTTP attempt latency, requests being worked on
           "tocsin_notifications_total": "inputs", "tocsin_notification_latency_seconds_sum": "attempt_seconds_sum",
           "tocsin_notification_latency_seconds_count": "attempt_seconds_count"}
_LABEL = re.compile(r'(\w+)="([^"]*)"')

SLOT_LAG = """SELECT coalesce(sum(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::float8
FROM pg_replication_slots WHERE slot_type = 'logical'"""


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """``(lag by "stage/input", counters by "stage/name")`` summed over partitions, from Prometheus
    text; counter names: ``inputs``, ``commits``, ``commit_seconds_sum``, ``commit_seconds_count``,
    ``step_seconds_sum``, ``step_seconds_count``."""
    lag: dict[str, float] = {}
    counters: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        value = float(m.group(3))
        name = m.group(1)
        stage = labels.get("stage") or ("notifier" if "notif" in name else "source" if name in _SOURCE else "?")
        if name == "tocsin_notifier_in_flight":
            lag["notifier/in_flight"] = lag.get("notifier/in_flight", 0.0) + value
        elif name == "tocsin_stage_consumer_lag":
            key = f"{stage}/{labels.get('input', '?')}"
            lag[key] = lag.get(key, 0.0) + value
        else:
            short = _SOURCE.get(name) or name.removeprefix("tocsin_stage_").removesuffix("_total")
            key = f"{stage}/{short}"
            counters[key] = counters.get(key, 0.0) + value
    return lag, counters


@dataclass
class Samples:
    cpu: list[tuple[float, str, float, float]] = field(default_factory=list)  # (t, role, % of a core, MiB)
    lag: list[tuple[float, str, float]] = field(default_factory=list)  # (t, "stage/input", messages)
    counters: list[tuple[float, str, str, float]] = field(default_factory=list)  # (t, url, "stage/counter", value)
    slot_lag: list[tuple[float, float]] = field(default_factory=list)  # (t, WAL bytes not confirmed)
    machine: list[tuple[float, float]] = field(default_factory=list)  # (t, % of one core busy, all processes)

    def counter_delta(self, key: str, start: float, end: float) -> float:
        """How much a counter grew from ``start`` to ``end``, summed over processes (each scraped
        URL is one process: a restarted one comes back on another port and counts from zero)."""
        series: dict[str, list[tuple[float, float]]] = {}
        for t, url, k, v in self.counters:
            if k == key:
                series.setdefault(url, []).append((t, v))
        if not series:
            return math.nan
        total = 0.0
        for pts in series.values():
            inside = [(t, v) for t, v in pts if start <= t <= end]
            if not inside:
                continue
            prev = inside[0][1] if pts[0][0] < start else 0.0  # a process started during the window
            for _, v in inside:
                total += v - prev if v >= prev else v  # a drop is a reset: count from zero
                prev = v
        return total

    def latest_lag(self) -> dict[str, float]:
        if not self.lag:
            return {}
        last = self.lag[-1][0]
        return {k: v for t, k, v in self.lag if t == last}

    def latest_cpu(self) -> dict[str, float]:
        if not self.cpu:
            return {}
        last = self.cpu[-1][0]
        return {r: c for t, r, c, _ in self.cpu if t == last}


class Sampler:
    def __init__(self, procs: Callable[[], list[Proc]], metrics_urls: Callable[[], list[str]],
                 dsn: str | None = None, *, period: float = 1.0, scrape_every: float = 2.0) -> None:
        self.procs = procs
        self.metrics_urls = metrics_urls
        self.dsn = dsn
        self.period = period
        self.scrape_every = scrape_every
        self.samples = Samples()
        self._prev: dict[int, float] = {}  # pid -> cpu seconds at the previous sample
        self._prev_t = 0.0
        self._handles: dict[int, psutil.Process] = {}
        self._machine_prev: tuple[float, float] | None = None  # (busy, total) cpu seconds

    def _handle(self, pid: int) -> psutil.Process:
        h = self._handles.get(pid)
        if h is None:
            h = self._handles[pid] = psutil.Process(pid)
        return h

    def _tree(self, p: Proc) -> Iterable[psutil.Process]:
        h = self._handle(p.pid)
        yield h
        if p.tree:
            with contextlib.suppress(psutil.Error):
                yield from h.children(recursive=True)

    def sample_machine(self, now: float) -> None:
        t = psutil.cpu_times()
        total = sum(t)
        busy = total - t.idle - getattr(t, "iowait", 0.0)
        if self._machine_prev is not None and total > self._machine_prev[1]:
            share = (busy - self._machine_prev[0]) / (total - self._machine_prev[1])
            self.samples.machine.append((now, 100.0 * share * (psutil.cpu_count() or 1)))
        self._machine_prev = (busy, total)

    def sample_cpu(self, now: float) -> None:
        self.sample_machine(now)
        dt = now - self._prev_t if self._prev_t else 0.0
        seen: dict[int, float] = {}
        by_role: dict[str, tuple[float, float]] = {}
        for p in self.procs():
            cpu_delta, mem = 0.0, 0.0
            try:
                for h in self._tree(p):
                    try:
                        with h.oneshot():
                            t = h.cpu_times()
                            total = t.user + t.system
                            if p.tree:
                                try:
                                    mem += h.memory_full_info().pss
                                except (psutil.AccessDenied, AttributeError):
                                    mem += h.memory_info().rss
                            else:
                                mem += h.memory_info().rss
                            started = h.create_time()
                    except psutil.Error:
                        continue
                    seen[h.pid] = total
                    prev = self._prev.get(h.pid)
                    if prev is not None:
                        cpu_delta += total - prev
                    elif self._prev_t and started >= self._prev_t:
                        cpu_delta += total  # started since the last sample
            except psutil.Error:
                continue
            c, m = by_role.get(p.role, (0.0, 0.0))
            by_role[p.role] = (c + cpu_delta, m + mem)
        if dt > 0:
            for role, (c, m) in sorted(by_role.items()):
                self.samples.cpu.append((now, role, 100.0 * c / dt, m / 2**20))
        self._prev = seen
        self._prev_t = now
        self._handles = {pid: h for pid, h in self._handles.items() if pid in seen}

    async def scrape(self, client: httpx.AsyncClient, now: float) -> None:
        lag: dict[str, float] = {}
        for url in self.metrics_urls():
            try:
                text = (await client.get(url)).text
            except httpx.HTTPError:
                continue
            lg, cs = parse_metrics(text)
            for k, v in lg.items():
                lag[k] = lag.get(k, 0.0) + v
            self.samples.counters += [(now, url, k, v) for k, v in sorted(cs.items())]
        self.samples.lag += [(now, k, v) for k, v in sorted(lag.items())]

    async def slot_lag(self, conn: asyncpg.Connection | None, now: float) -> asyncpg.Connection | None:
        if not self.dsn:
            return None
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(self.dsn, timeout=2)
            value = await conn.fetchval(SLOT_LAG, timeout=2)
            self.samples.slot_lag.append((now, float(value or 0.0)))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.debug("slot lag: %r", exc)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
            return None
        return conn

    async def run(self) -> None:
        conn: asyncpg.Connection | None = None
        last_scrape = 0.0
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                while True:
                    now = time.time()
                    self.sample_cpu(now)
                    if now - last_scrape >= self.scrape_every:
                        last_scrape = now
                        await self.scrape(client, now)
                        conn = await self.slot_lag(conn, now)
                    await anyio.sleep(max(0.0, self.period - (time.time() - now)))
        finally:
            if conn is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await conn.close(timeout=1)
