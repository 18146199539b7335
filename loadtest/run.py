"""The end-to-end load test: a synthetic fleet through the whole pipeline, checked by an oracle.

    .venv/bin/python -m loadtest.run --scenario latency            # a reference scenario
    .venv/bin/python -m loadtest.run --scenario latency,throughput --short
    .venv/bin/python -m loadtest.run --mode cdc --rate 2000 --duration 60 --topology stages

For each target (Tocsin, and Prometheus Alertmanager in API mode with ``--targets
alertmanager,tocsin``) it starts the system (:mod:`loadtest.stack`, :mod:`loadtest.targets`)
and a webhook receiver (:mod:`loadtest.sink`), generates the fleet's events open-loop at
``--rate`` for ``--duration`` seconds (:mod:`loadtest.generator`), commits them as rows (CDC)
or pushes them as alerts (API) (:mod:`loadtest.drive`), samples CPU, memory and lag
(:mod:`loadtest.probes`), optionally kills things (:mod:`loadtest.chaos`) and profiles the
stage processes (py-spy), waits until every expected notification arrived (or a timeout),
and writes ``report.md``, ``summary.json`` and plots to ``loadtest/results/<name>/``
(:mod:`loadtest.report`). The verdict comes from :mod:`loadtest.oracle`. Exit status 0 when
nothing is missing, duplicated, unexpected or mislabelled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import logging
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from loadtest.chaos import Chaos, plan
from loadtest.collect import Collector
from loadtest.drive import ApiSender, CdcSender, EventLog, Sender, open_loop
from loadtest.generator import Fleet, FleetSpec, Mix, burst_events
from loadtest.hops import HOPS, Points, hop_latencies, hop_points, read_window, sent_points
from loadtest.oracle import AlertModel, Expectation, check, expectations, spacing
from loadtest.probes import Sampler
from loadtest.profile import pprof_top, start_py_spy, top_functions
from loadtest.repeat import schedule
from loadtest.report import BurstResult, TargetResult, summary, write_report
from loadtest.stack import Proc, Stack, spawn, start_stack, stop_process
from loadtest.stats import percentile, summarize
from loadtest.targets import route_config, start_alertmanager
from pipeline.application.graph import DEFAULT_DEPLOYMENT

__all__ = ["SCENARIOS", "RunConfig", "main", "run"]

log = logging.getLogger("loadtest")


@dataclass(frozen=True)
class RunConfig:
    name: str = "adhoc"
    mode: str = "cdc"  # cdc | api
    targets: tuple[str, ...] = ("tocsin",)  # tocsin, alertmanager (API mode only)
    topology: str = "stages"  # single | stages | cluster
    # separate | chained: how rules, router and filter run (pipeline.application.graph)
    deployment: str = DEFAULT_DEPLOYMENT
    rate: float = 1000.0  # fleet events per second
    duration: float = 60.0
    steps: str = ""  # "RATE:SECONDS,..." a stepped load instead of rate and duration
    seed: int = 1
    orgs: int = 200
    devices: int = 20_000
    zipf: float = 1.1
    dwell: float = 8.0
    flap: float = 0.25
    mix: str = ""
    group_interval: float = 5.0
    partitions: int = 16
    replicas: int = 1
    lanes: int = 4
    txn_rows: int = 100
    batch: int = 64
    concurrency: int = 256  # notifier sends in flight (the default)
    burst: int = 0  # alerts per burst wave after the steady load (0: none)
    chaos: bool = False
    kill_every: float = 10.0
    restart_nats: float | None = 0.33  # fraction of the duration
    restart_postgres: float | None = 0.66
    drain_timeout: float = 120.0
    quiet: float = 3.0  # seconds to wait for late duplicates once everything arrived
    profile: float = 0.0  # seconds of py-spy per stage process (0: none)
    hop_window: float = 10.0  # seconds of firing notifications traced hop by hop (0: none)
    out: str = "loadtest/results"
    work: str = ""
    keep_work: bool = False
    short: bool = False
    repeats: int = 1  # runs of each target, interleaved (loadtest.repeat): median and range of each figure

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError("repeats must be at least 1")
        if self.mode not in ("cdc", "api"):
            raise ValueError("mode is cdc or api")
        if "alertmanager" in self.targets and self.mode != "api":
            raise ValueError("Alertmanager takes pushed alerts only: use --mode api")
        if unknown := set(self.targets) - {"tocsin", "alertmanager"}:
            raise ValueError(f"unknown targets {sorted(unknown)}")
        if self.chaos and self.topology != "cluster":
            raise ValueError("chaos needs --topology cluster (supervised processes, 3 NATS nodes)")
        self.load_steps()  # valid
        if self.dwell <= self.group_interval + 1:
            raise ValueError(f"dwell ({self.dwell:g}s) must exceed group_interval ({self.group_interval:g}s) by more "
                             "than a second: an alert firing again before the tick that announces its resolution "
                             "is folded into its group (see loadtest/oracle.py)")


    def load_steps(self) -> list[tuple[float, float]]:
        """(rate, seconds) of the load: ``steps``, else ``rate`` for ``duration``."""
        if not self.steps:
            return [(self.rate, self.duration)]
        out = []
        for part in filter(None, (p.strip() for p in self.steps.split(","))):
            rate, sep, seconds = part.partition(":")
            try:
                out.append((float(rate), float(seconds)))
            except ValueError:
                raise ValueError(f"step {part!r} is not RATE:SECONDS") from None
            if not (sep and out[-1][0] > 0 and out[-1][1] > 0):
                raise ValueError(f"step {part!r} is not RATE:SECONDS with both > 0")
        return out

    @property
    def load_seconds(self) -> float:
        return sum(s for _, s in self.load_steps())


#: reference scenarios: name -> settings over the defaults
SCENARIOS: dict[str, dict[str, Any]] = {
    "smoke": dict(mode="cdc", topology="single", rate=100.0, duration=10.0, orgs=20, devices=400, dwell=3.0,
                  flap=0.4, group_interval=1.0, drain_timeout=30.0, partitions=4, hop_window=0.0),
    "latency": dict(mode="cdc", topology="stages", rate=1000.0, duration=120.0, profile=20.0, group_interval=30.0,
                    dwell=35.0),
    "throughput": dict(mode="cdc", topology="stages", rate=5000.0, duration=300.0, devices=50_000, orgs=300,
                       group_interval=30.0, dwell=35.0, profile=20.0, drain_timeout=300.0),
    # 3 interleaved runs of each, a 50,000-alert burst: one run of a 10,000-alert burst (2 s) was noise
    "api-vs-am": dict(mode="api", targets=("alertmanager", "tocsin"), topology="stages", deployment=DEFAULT_DEPLOYMENT,
                      rate=1000.0, duration=60.0, burst=50_000, repeats=3, group_interval=30.0, dwell=35.0),
    "ramp": dict(mode="cdc", topology="stages", steps="1000:40,2000:40,3000:40,4000:40,5000:40", devices=50_000,
                 orgs=300, group_interval=30.0, dwell=35.0, drain_timeout=600.0),
    "chaos": dict(mode="cdc", topology="cluster", rate=300.0, duration=120.0, devices=5000, orgs=100, dwell=30.0,
                  flap=0.5, chaos=True, kill_every=10.0, group_interval=5.0, drain_timeout=300.0, quiet=10.0,
                  partitions=8),
}
#: --short (CI smoke runs): these settings at most
_SHORT_CAPS: dict[str, dict[str, int]] = {"api-vs-am": {"burst": 2_000, "repeats": 1}}
_SHORT = {"smoke": 1.0, "latency": 0.5, "throughput": 0.2, "api-vs-am": 0.5, "chaos": 0.5, "ramp": 0.5}


def _fleet_spec(cfg: RunConfig) -> FleetSpec:
    return FleetSpec(seed=cfg.seed, orgs=cfg.orgs, devices=cfg.devices, zipf=cfg.zipf, dwell=cfg.dwell,
                     flap=cfg.flap, mix=Mix.parse(cfg.mix) if cfg.mix else Mix())


async def _wait_slot(dsn: str, timeout: float = 60.0) -> None:
    """Until the source's replication slot exists: rows committed before it are never streamed."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(dsn, timeout=5)
            try:
                if await conn.fetchval("SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"):
                    return
            finally:
                await conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError("the source created no replication slot")
        await asyncio.sleep(0.2)


def _model(events: EventLog) -> AlertModel:
    model = AlertModel()
    for ev, sent in events.sent_events():
        model.apply(ev.id, ev.org, ev.kind, ev.name, ev.reason, ev.message, events.occurred(ev), sent)
    return model


async def _wait_delivered(collector: Collector, keys: set[tuple[str, str]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        collector.poll()
        if keys <= collector.seen:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


def _fmt_k(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 10_000 else f"{x:,.0f}"


async def _progress(label: str, cfg: RunConfig, events: EventLog, sender: Sender, collector: Collector,
                    sampler: Sampler, every: float = 2.0) -> None:
    last_t, last_sent, last_req = time.time(), 0, 0
    while True:
        await asyncio.sleep(every)
        now = time.time()
        collector.poll()
        sent = events.sent_count()
        lat = sorted(collector.firing_latencies(now - 5.0))
        lag = sampler.samples.latest_lag()
        cpu = sampler.samples.latest_cpu()
        slot = sampler.samples.slot_lag[-1][1] if sampler.samples.slot_lag else 0.0
        dt = now - last_t
        line = (f"[{label} {now - events.t0:5.0f}/{cfg.load_seconds:.0f}s] sent {sent:,} "
                f"({(sent - last_sent) / dt:,.0f}/s) backlog {sender.backlog():,} | "
                f"notifications {collector.requests:,} "
                f"({(collector.requests - last_req) / dt:,.0f}/s) | firing p50 "
                f"{percentile(lat, 50) * 1000:.0f}ms p99 {percentile(lat, 99) * 1000:.0f}ms")
        if lag:
            line += " | lag " + " ".join(f"{'in-flight' if k == 'notifier/in_flight' else k.split('/')[0]}:{_fmt_k(v)}"
                                          for k, v in lag.items() if v)
        if slot:
            line += f" slot {slot / 1024:,.0f}KiB"
        if cpu:
            line += " | cpu " + " ".join(f"{r}:{c:.0f}" for r, c in sorted(cpu.items(), key=lambda kv: -kv[1])[:6])
        print(line, file=sys.stderr, flush=True)
        last_t, last_sent, last_req = now, sent, collector.requests


def _python_roles(procs: list[Proc]) -> list[Proc]:
    return [p for p in procs if not p.role.startswith(("nats", "postgres", "topology", "alertmanager"))]


async def _pprof(url: str, seconds: float, path: Path) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=seconds + 30) as client:
            r = await client.get(url, params={"seconds": str(max(1, round(seconds)))})
            if r.status_code == 200:
                path.write_bytes(r.content)


async def _profile(procs: Callable[[], list[Proc]], at: float, seconds: float, out: Path,
                   nats_pprof: str) -> dict[str, Path]:
    """py-spy of every Python process and Go pprof of nats-server (when it serves one), at once."""
    await asyncio.sleep(max(0.0, at - time.time()))
    started = []
    for p in _python_roles(procs()):
        path = out / f"profile-{p.role}.txt"
        proc = start_py_spy(p.pid, seconds, path)
        if proc is not None:
            started.append((p.role, proc, path))
    nats_path = out / "profile-nats.pb.gz"
    if nats_pprof:
        await _pprof(nats_pprof, seconds, nats_path)
    for _, proc, _ in started:
        while proc.poll() is None:
            await asyncio.sleep(0.5)
    found = {role: path for role, proc, path in started if path.exists()}
    if nats_path.exists():
        found["nats"] = nats_path
    return found


async def _trace_hops(nats_url: str, events: EventLog, collector: Collector, start: float, end: float,
                      deployment: str = "separate") -> tuple[int, dict[str, dict[str, float]]]:
    """Per-hop latency of the firing notifications whose event was sent between ``start`` and ``end``."""
    import nats

    sample = {lc.id: lc.fire_sent for lc in _model(events).lifecycles if start <= lc.fire_sent <= end}
    points: Points = {}
    sent_points(sample, points)
    wanted = set(sample)
    nc = await nats.connect(servers=nats_url.split(","), name="loadtest-hops")
    try:
        from pipeline.application.graph import CHAINED, stream_names

        streams = {"events": "TOCSIN_EVENTS", **{k: v.stream for k, v in stream_names(deployment).items()}}
        # (a chain hands its group flushes on in memory: no groups hop)
        traced_hops: tuple[str, ...] = tuple(h for h in HOPS if h != "groups") if deployment == CHAINED else HOPS
        for name in traced_hops[1:-1]:
            msgs = await read_window(nc, streams[name], f"tocsin.{name}.out.>", start - 1.0,
                                     min(time.time(), end + 60.0))
            hop_points(name, msgs, wanted, points)
    finally:
        await nc.close()
    for d in collector.deliveries:
        if d.status == "firing" and d.lifecycle in wanted:
            points[d.lifecycle].setdefault("received", d.at)
    lat = hop_latencies(points, traced_hops)
    traced = len(next(iter(lat.values()), []))
    return traced, {hop: dict(summarize(v)) for hop, v in lat.items()}


async def _bursts(cfg: RunConfig, spec: FleetSpec, events: EventLog, sender: Sender,
                  collector: Collector) -> list[BurstResult]:
    results = []
    n = cfg.burst
    first = len(events.events) + 1
    for resolve in (False, True):
        status = "resolved" if resolve else "firing"
        wave = burst_events(spec, n, len(events.events) + 1, time.time() - events.t0, resolve=resolve)
        start = time.time()
        for ev in wave:
            sender.submit(events.add(ev))
        await sender.drain(cfg.drain_timeout)
        pushed = time.time()
        keys = {(str(first + k), status) for k in range(n)}
        await _wait_delivered(collector, keys, cfg.drain_timeout + cfg.group_interval)
        arrivals = [d.at for d in collector.deliveries if (d.lifecycle, d.status) in keys]
        results.append(BurstResult(n=n, status=status, push_seconds=pushed - start, started=start,
                                   e2e_seconds=(max(arrivals) - start) if arrivals else float("nan"),
                                   delivered=len({(d.lifecycle, d.status) for d in collector.deliveries
                                                  if (d.lifecycle, d.status) in keys})))
        print(f"burst {status}: {n:,} pushed in {pushed - start:.2f}s; {results[-1].delivered:,} notified in "
              f"{results[-1].e2e_seconds:.2f}s", file=sys.stderr, flush=True)
    return results


async def run_target(cfg: RunConfig, target: str, sink_url: str, sink_file: Path, work: Path,
                     results_dir: Path, sink_pid: int, run_no: int = 0) -> TargetResult:
    # each run its own webhook path: the sink's record file is shared, lifecycle ids restart at 1
    suffix = f"-{run_no}" if run_no else ""
    path = f"/{target}{suffix}"
    spec = _fleet_spec(cfg)
    fleet = Fleet(spec)
    events = EventLog(t0=time.time())
    work.mkdir(parents=True, exist_ok=True)
    hook = f"{sink_url}{path}"
    sut_cm: contextlib.AbstractAsyncContextManager[Any]
    if target == "tocsin":
        conf = work / "tocsin.yml"
        conf.write_text(route_config(hook, cfg.group_interval, tocsin=True, concurrency=cfg.concurrency))
        sut_cm = start_stack(cfg.topology, work, conf, partitions=cfg.partitions, replicas=cfg.replicas,
                             with_api=cfg.mode == "api", deployment=cfg.deployment)
        label = f"Tocsin ({cfg.topology} topology, {cfg.deployment}, {cfg.mode.upper()})"
    else:
        sut_cm = start_alertmanager(work, route_config(hook, cfg.group_interval, tocsin=False))
        label = "Alertmanager (API)"
    notes: list[str] = []
    profiles: dict[str, Path] = {}
    bursts: list[BurstResult] = []
    hops: tuple[int, dict[str, dict[str, float]]] = (0, {})
    burst_hops: tuple[int, dict[str, dict[str, float]]] = (0, {})
    burst_profiling: asyncio.Task[dict[str, Path]] | None = None
    chaos: Chaos | None = None
    print(f"starting {label}...", file=sys.stderr, flush=True)
    async with sut_cm as sut:
        if isinstance(sut, Stack):
            api_url, procs, metrics, dsn = sut.api_url, sut.processes, sut.metrics_urls, sut.postgres_dsn
        else:
            api_url, dsn = sut.url, ""
            am_pid = sut.pid
            notes.append(f"Alertmanager: {sut.version}")

            def procs() -> list[Proc]:
                return [Proc("alertmanager", am_pid)]

            def metrics() -> list[str]:
                return []
        sender: Sender
        if cfg.mode == "cdc":
            sender = CdcSender(dsn, events, lanes=cfg.lanes, txn_rows=cfg.txn_rows)
            await sender.prepare()
            await _wait_slot(dsn)
        else:
            sender = ApiSender(api_url, events, lanes=cfg.lanes, batch=cfg.batch)
        if cfg.topology == "cluster" and target == "tocsin":
            await asyncio.sleep(3.0)  # replicas find each other and settle their partitions
        def sampled() -> list[Proc]:
            return [*procs(), Proc("loadgen", os.getpid()), Proc("sink", sink_pid)]

        sampler = Sampler(sampled, metrics, dsn or None)
        collector = Collector(sink_file, path, events)
        background = [asyncio.create_task(sampler.run()), asyncio.create_task(sender.run())]
        events.t0 = time.time() + 0.2
        background.append(asyncio.create_task(_progress(target, cfg, events, sender, collector, sampler)))
        if cfg.chaos and isinstance(sut, Stack):
            chaos = Chaos(sut, seed=cfg.seed, stages=("source", "rules", "router", "filter", "chain", "notifier"))
            background.append(asyncio.create_task(chaos.run(events.t0, plan(
                cfg.load_seconds, cfg.kill_every, nats_at=cfg.restart_nats, postgres_at=cfg.restart_postgres))))
        profiling = None
        if cfg.profile > 0 and target == "tocsin":
            at = events.t0 + max(0.0, min(cfg.load_seconds * 0.3, cfg.load_seconds - cfg.profile))
            profiling = asyncio.create_task(_profile(procs, at, min(cfg.profile, cfg.load_seconds), work,
                                                     sut.nats_pprof if isinstance(sut, Stack) else ""))
        try:
            generated = await open_loop(fleet, events, cfg.load_steps(), sender)
            load_end = time.time()
            if not await sender.drain(cfg.drain_timeout):
                notes.append(f"the sender still had {sender.backlog()} events queued after {cfg.drain_timeout:.0f}s")
            keys = set(expectations(_model(events).lifecycles))
            drained = await _wait_delivered(collector, keys, cfg.drain_timeout + cfg.group_interval)
            print(f"[{target}] {'all' if drained else 'NOT all'} {len(keys):,} expected notifications arrived, "
                  f"{time.time() - load_end:.1f}s after the load", file=sys.stderr, flush=True)
            if cfg.hop_window > 0 and isinstance(sut, Stack):
                with contextlib.suppress(Exception):
                    start = events.t0 + 0.4 * (load_end - events.t0)
                    hops = await _trace_hops(sut.nats_url, events, collector, start,
                                             min(load_end, start + cfg.hop_window), cfg.deployment)
            await asyncio.sleep(cfg.quiet)
            if cfg.burst:
                if cfg.profile > 0 and target == "tocsin":  # the firing wave, profiled on its own
                    (work / "burst").mkdir(exist_ok=True)
                    burst_profiling = asyncio.create_task(_profile(
                        procs, time.time(), min(cfg.profile, 6.0), work / "burst",
                        sut.nats_pprof if isinstance(sut, Stack) else ""))
                bursts = await _bursts(cfg, spec, events, sender, collector)
                if burst_profiling is not None:
                    profiles.update({f"{role}-burst": path for role, path in (await burst_profiling).items()})
                if cfg.hop_window > 0 and isinstance(sut, Stack) and bursts:
                    with contextlib.suppress(Exception):  # the firing wave, every notification of it
                        burst_hops = await _trace_hops(sut.nats_url, events, collector, bursts[0].started,
                                                       bursts[0].started + bursts[0].push_seconds, cfg.deployment)
                await asyncio.sleep(cfg.quiet)
            if profiling is not None:
                profiles.update(await profiling)
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for profiler in (profiling, burst_profiling):
                if profiler is not None and not profiler.done():
                    profiler.cancel()
            if chaos is not None:
                await chaos.cleanup()
        end = time.time()
    collector.poll()  # whatever the shutdown delivered
    model = _model(events)
    expected: dict[Any, Expectation] = expectations(model.lifecycles)
    verdict = check(expected, collector.deliveries)
    sender_stats: dict[str, float] = {}
    if isinstance(sender, CdcSender):
        sender_stats = {"transactions": sender.transactions, "retried transactions": sender.retries}
    elif isinstance(sender, ApiSender):
        sender_stats = {"requests": sender.requests, "alerts pushed": sender.alerts, "retries": sender.retries,
                        "rejected": sender.rejected}
    prof: dict[str, Any] = {}
    results_dir.mkdir(parents=True, exist_ok=True)
    for role, p in profiles.items():
        if p.name.endswith(".pb.gz"):
            data = p.read_bytes()
            prof[role] = pprof_top(data, 20)
            shutil.copy(p, results_dir / f"profile-{target}{suffix}-{role}.pb.gz")
            continue
        raw = p.read_text(errors="replace")
        prof[role] = top_functions(raw)
        with gzip.open(results_dir / f"profile-{target}{suffix}-{role}.txt.gz", "wt") as f:
            f.write(raw)
    if run_no:
        label += f", run {run_no}"
    return TargetResult(
        target=target, label=label, mode=cfg.mode, t0=events.t0, load_end=load_end, end=end, generated=generated,
        sent_times=sorted(s for s in events.sent if s == s), arrivals=sorted(collector.arrivals),
        verdict=verdict, spacing=spacing(model.lifecycles, cfg.group_interval), samples=sampler.samples,
        sender=sender_stats, chaos=chaos.log if chaos else [], bursts=bursts, profiles=prof, drained=drained,
        model={"lifecycles": len(model.lifecycles), "out_of_order": model.out_of_order,
               "message_mismatch": model.message_mismatch},
        hops=hops, burst_hops=burst_hops, steps=cfg.load_steps() if cfg.steps else [], notes=notes)


def _machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


async def run(cfg: RunConfig, command: str) -> tuple[bool, Path]:
    from pipeline.foundation.embedded import free_port

    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix=f"loadtest-{cfg.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    results_dir = Path(cfg.out) / cfg.name
    sink_file = work / "received.jsonl"
    port = free_port()
    sink = spawn([sys.executable, "-m", "loadtest.sink", "--port", str(port), "--out", str(sink_file)],
                 work / "sink.log")
    machine = _machine()
    results: list[TargetResult] = []
    try:
        from loadtest.stack import wait_ready

        with contextlib.suppress(Exception):
            await wait_ready(f"http://127.0.0.1:{port}/stats", 10, sink, "the sink")
        runs = schedule(cfg.targets, cfg.repeats)
        for k, target in runs:
            run_no = k if cfg.repeats > 1 else 0
            if run_no:
                print(f"=== run {k}/{cfg.repeats}: {target} ===", file=sys.stderr, flush=True)
            results.append(await run_target(cfg, target, f"http://127.0.0.1:{port}", sink_file,
                                            work / f"{target}{'-' + str(k) if run_no else ''}", results_dir,
                                            sink.pid, run_no))
            if cfg.mode == "api" and len(runs) > 1:
                await asyncio.sleep(1.0)  # the last target's processes gone before the next starts
    finally:
        await stop_process(sink, 10, signal.SIGTERM)
    machine["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ok = all(r.verdict.ok and r.drained for r in results)
    lines = [f"**Verdict: {'PASS' if ok else 'FAIL'}** — " + "; ".join(
        f"{r.label}: {len(r.verdict.missing)} missing, {len(r.verdict.duplicated)} duplicated, "
        f"{len(r.verdict.unexpected)} unexpected" for r in results)]
    params = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "work", "keep_work")}
    report = write_report(results_dir, title=f"Load test: {cfg.name}", command=command, params=params,
                          machine=machine, results=results, verdict_lines=lines)
    if cfg.repeats > 1:
        print((report.parent / "repeated.md").read_text(), file=sys.stderr)
    for r in results:
        s = summary(r)
        f = s["firing_latency_s"]
        print(f"{r.label}: sent {s['sent']:,} ({s['sent_per_second']:,.0f}/s), notifications {s['notifications']:,}, "
              f"missing {s['missing']}, duplicated {s['duplicated']}, repeats {s['same_key_repeats']}, "
              f"unexpected {s['unexpected']}; firing p50 {f['p50'] * 1000:.0f} ms p99 {f['p99'] * 1000:.0f} ms",
              file=sys.stderr)
    print(f"report: {report}", file=sys.stderr)
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}", file=sys.stderr)
    return ok, report


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="", help=f"comma-separated: {', '.join(SCENARIOS)} (or 'all')")
    ap.add_argument("--short", action="store_true", help="shortened durations (for make bench); name gets -short")
    for f in dataclasses.fields(RunConfig):
        if f.name in ("short",):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "targets":
            ap.add_argument(flag, default=None, help="comma-separated: tocsin, alertmanager")
        elif f.name in ("chaos", "keep_work"):
            ap.add_argument(flag, action="store_const", const=True, default=None)
        elif f.name in ("restart_nats", "restart_postgres"):
            ap.add_argument(flag, default=None, help="fraction of the duration, or 'none'")
        else:
            ap.add_argument(flag, type=type(f.default) if f.default is not None else str, default=None)
    ap.add_argument("--log-level", default="warning")
    return ap


def _configs(args: argparse.Namespace) -> list[RunConfig]:
    names = [n for n in args.scenario.split(",") if n] if args.scenario else []
    if names == ["all"]:
        names = [n for n in SCENARIOS if n != "smoke"]
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "targets":
            value = tuple(t.strip() for t in value.split(",") if t.strip())
        elif f.name in ("restart_nats", "restart_postgres"):
            value = None if str(value).lower() == "none" else float(value)
        overrides[f.name] = value
    configs = []
    for name in names or [""]:
        if name and name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        base: dict[str, Any] = {"name": name or "adhoc", **SCENARIOS.get(name, {})}
        base.update(overrides)
        if len(names) > 1:
            base["name"] = name
        if args.short:
            factor = _SHORT.get(name, 0.5)
            base["duration"] = max(10.0, base.get("duration", RunConfig.duration) * factor)
            if base.get("steps"):
                base["steps"] = ",".join(f"{r}:{max(10.0, float(s) * factor):g}" for r, s in
                                         (p.split(":") for p in str(base["steps"]).split(",")))
            base["short"] = True
            base["name"] = f"{base['name']}-short"
            base["profile"] = min(base.get("profile", 0.0), base["duration"] * 0.5)
            for key, cap in _SHORT_CAPS.get(name, {}).items():
                if key not in overrides:
                    base[key] = min(base.get(key, cap), cap)
        configs.append(RunConfig(**base))
    return configs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    command = "python -m loadtest.run " + shlex.join(argv)
    all_ok = True
    for cfg in _configs(args):
        ok, _ = asyncio.run(run(cfg, command))
        all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
