"""Throughput of the stage runtime with the counter test stage (issue: foundation), or of
a real stage (``--stage router``), or of rules, router and filter as each deployment runs them
(``--stage pipeline --deployment both``: separate, then chained, with the ratios).

Pre-loads N events into EVENTS across P partitions, then starts one stage process
(in this process) and measures inputs/s from start to the last committed input. Compares with
a bare nats-py atomic-batch loop on the same server in the same run, so the figure reads as
a ratio. Run: `.venv/bin/python -m loadtest.runtime_bench --events 50000`.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import psutil

from contracts import Event, encode
from contracts.partition import partition_of
from loadtest.stats import summarize
from pipeline.foundation.embedded import start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream, publish_atomic
from pipeline.foundation.runtime.partition import Input, StageSpec
from pipeline.foundation.runtime.stage import StageRunner
from pipeline.foundation.runtime.subjects import EVENTS, StreamNames
from pipeline.foundation.runtime.wire import BatchMsg
from stages.counter.core import CounterCore

__all__ = ["main"]



async def preload(nc, n: int, partitions: int, orgs: int, keys: int) -> None:
    js = nc.jetstream()
    pending = []
    for i in range(n):
        org = f"org{i % orgs}"
        ev = Event(id=str(i), org=org, reason="Tick", resource_kind="device", resource_name=f"d{i % keys}",
                   occurred_at=time.time())
        pending.append(js.publish(EVENTS.out(partition_of(org, partitions), "event"), encode(ev)))
        if len(pending) >= 2000:
            for f in pending:
                await f
            pending = []
    for f in pending:
        await f


async def bare_loop(nc, n: int) -> float:
    """A bare atomic-batch loop: progress + state + output per input, 256 inputs per batch."""
    names = StreamNames("bare")
    await ensure_stream(nc.jetstream(), names)
    t0 = time.perf_counter()
    fence = 0
    for start in range(0, n, 256):
        msgs = [BatchMsg(names.progress(0), b'{"s":%d}' % start,
                         {"Nats-Expected-Last-Subject-Sequence": str(fence), "Nats-Rollup": "sub"})]
        for i in range(start, min(n, start + 256)):
            msgs.append(BatchMsg(names.state(0, f"k{i % 1000}"), b'{"c":1}', {"Nats-Rollup": "sub"}))
            msgs.append(BatchMsg(names.out(0), b'{"c":1}', {"Nats-Msg-Id": f"b{i}"}))
        last = await publish_atomic(nc, msgs)
        fence = last - len(msgs) + 1
    return n / (time.perf_counter() - t0)


ALERTS = StreamNames("alerts")
STAGE_CONFIG = """
route:
  receiver: team
  group_by: [alertname, instance]
  group_wait: GROUP_WAIT
  routes:
    - {receiver: db, matchers: ['service="db"']}
    - {receiver: web, matchers: ['service=~"web|api"'], continue: true}
receivers: [{name: team}, {name: db}, {name: web}]
"""


async def preload_alert_changes(nc, n: int, partitions: int, orgs: int, keys: int) -> None:
    from contracts import Alert, AlertChange, Cause
    from contracts.labels import fingerprint

    js = nc.jetstream()
    pending = []
    now = time.time()
    for i in range(n):
        org = f"org{i % orgs}"
        labels = {"alertname": f"A{i % 50}", "instance": f"h{i % keys}", "service": ("db", "web", "x")[i % 3]}
        alert = Alert(fingerprint=fingerprint(labels), org=org, labels=labels, starts_at=now, updated_at=now + i)
        ch = AlertChange(change="fired", alert=alert, cause=Cause(kind="push", id=str(i), at=now))
        pending.append(js.publish(ALERTS.out(partition_of(org, partitions), "x", str(i)), encode(ch)))
        if len(pending) >= 2000:
            for f in pending:
                await f
            pending = []
    for f in pending:
        await f


def stage_spec(stage: str, partitions: int, group_wait: str = "1h") -> tuple[StageSpec, StreamNames]:
    if stage == "counter":
        return StageSpec(name="counter", core=CounterCore(delay=3600), inputs=[Input("events", EVENTS)],
                         output=StreamNames("counts"), partitions=partitions), EVENTS
    from pipeline.application.settings import load_text
    from stages.router.config import RouteTable
    from stages.router.core import RouterCore

    table = RouteTable.from_config(load_text(STAGE_CONFIG.replace("GROUP_WAIT", group_wait)).config)
    return StageSpec(name="router", core=RouterCore(table), inputs=[Input("alerts", ALERTS)],
                     output=StreamNames("groups"), partitions=partitions), ALERTS


async def run(n: int, partitions: int, orgs: int, keys: int, stage: str = "counter", group_wait: str = "1h") -> None:
    gc.set_threshold(50_000, 20, 100)  # as the stage processes run (pipeline.application.cli)
    with tempfile.TemporaryDirectory() as d:
        async with start_nats(Path(d) / "nats") as ns:
            nc = await connect(ns.url)
            js = nc.jetstream()
            await ensure_partitions(js, nc, partitions)
            spec, source = stage_spec(stage, partitions, group_wait)
            await ensure_stream(js, source)
            if stage == "counter":
                await preload(nc, n, partitions, orgs, keys)
            else:
                await preload_alert_changes(nc, n, partitions, orgs, keys)
            bare = await bare_loop(nc, n)
            runner = StageRunner(nc, js, spec, replica="bench")
            server = psutil.Process(ns.proc.pid)
            async with anyio.create_task_group() as tg:
                t0 = time.perf_counter()
                await tg.start(runner.run)
                ready = time.perf_counter()
                cpu0, server0 = time.process_time(), sum(server.cpu_times()[:2])
                from pipeline.foundation.runtime.metrics import stage_metrics

                counter = stage_metrics().inputs.labels(spec.name)
                while counter._value.get() < n:
                    await anyio.sleep(0.01)
                t1 = time.perf_counter()
                stage_cpu, server_cpu = time.process_time() - cpu0, sum(server.cpu_times()[:2]) - server0
                await runner.drain()
                tg.cancel_scope.cancel()
            rate = n / (t1 - ready)
            print(f"events={n} partitions={partitions} orgs={orgs} keys={keys}"
                  + (f" group_wait={group_wait}" if stage == "router" else ""))
            print(f"acquire+rebuild of {partitions} partitions: {ready - t0:.2f}s")
            print(f"runtime ({spec.name} stage): {rate:,.0f} inputs/s in one process")
            print(f"CPU per input: stage process {stage_cpu / n * 1e6:.0f} us, "
                  f"nats-server {server_cpu / n * 1e6:.0f} us")
            print(f"bare nats-py atomic-batch loop, same server, same run: {bare:,.0f} inputs/s")
            print(f"ratio runtime/bare: {rate / bare:.2f}")
            await nc.close()


PIPELINE_CONFIG = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: GROUP_WAIT
  group_interval: 1h
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs: [{url: 'http://127.0.0.1:9/hook'}]
"""


async def preload_pushes(nc, n: int, partitions: int, orgs: int, rate: float = 0.0) -> None:
    """One pushed alert per message, each its own group (alertname = its index): the burst's shape.
    With ``rate``, published at that many a second (in ticks of 10 ms), else as fast as acked."""
    from contracts import PushedAlert, PushedAlerts

    js = nc.jetstream()
    pending = []
    now = t0 = time.time()
    for i in range(n):
        org = f"org{i % orgs}"
        if rate:
            now = time.time()
        push = PushedAlerts(request_id=f"r{i}", org=org, received_at=now, alerts=[
            PushedAlert(labels={"alertname": f"A{i}", "job": "bench"}, starts_at=now, ends_at=now + 3600)])
        pending.append(js.publish(EVENTS.out(partition_of(org, partitions), "alerts"), encode(push)))
        if len(pending) >= 2000 or (rate and len(pending) >= rate / 100):
            for f in pending:
                await f
            pending = []
            if rate:
                await anyio.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
    for f in pending:
        await f


async def _stream_writes(js, streams: list[str]) -> int:
    """Messages written so far to ``streams`` (their last sequence: a replaced state value counts)."""
    total = 0
    for name in streams:
        try:
            total += (await js.stream_info(name)).state.last_seq
        except Exception:  # not made (the other deployment's stream)
            pass
    return total


class _Timing:
    """Where a chained input's time goes inside the stage process (``--rate``): from its store in
    the input stream to the worker's batch (delivery: the server's push of a pull, the callback,
    the fetch loop, the hand-over to the partition's loop), and the batch's step, commit and ack."""

    def __init__(self) -> None:
        self.delivery: list[float] = []  # per input: stored -> its batch starts
        self.batch: list[float] = []  # per batch: step + commit + ack
        self.commit: list[float] = []  # per commit (a partition's, within a group commit)

    def install(self) -> Callable[[], None]:
        from pipeline.foundation.runtime.machine import ack_metadata
        from pipeline.foundation.runtime.partition import PartitionWorker

        process, commit_action = PartitionWorker._process, PartitionWorker._commit_action
        timing = self

        async def timed_process(worker: PartitionWorker, batches: list[tuple[str, list[Any]]]) -> None:
            now, t0 = time.time(), time.perf_counter()
            for _, msgs in batches:
                for m in msgs:
                    timing.delivery.append(now - ack_metadata(m)[3] / 1e9)
            await process(worker, batches)
            if batches:
                timing.batch.append(time.perf_counter() - t0)

        async def timed_commit(worker: PartitionWorker, action: Any) -> None:
            t0 = time.perf_counter()
            await commit_action(worker, action)
            timing.commit.append(time.perf_counter() - t0)

        setattr(PartitionWorker, "_process", timed_process)  # noqa: B010 (a bench's instrument, undone below)
        setattr(PartitionWorker, "_commit_action", timed_commit)  # noqa: B010

        def uninstall() -> None:
            setattr(PartitionWorker, "_process", process)  # noqa: B010
            setattr(PartitionWorker, "_commit_action", commit_action)  # noqa: B010
        return uninstall


def _ms(summary: dict[str, float]) -> str:
    return " / ".join(f"{summary[q] * 1000:.1f}" for q in ("p50", "p90", "p99", "max")) + " ms"


class _LabelledAlert(msgspec.Struct):
    labels: dict[str, str] = {}


class _Labelled(msgspec.Struct):
    """A push or a send request, as far as the latency read-back needs it."""

    alerts: list[_LabelledAlert] = []
    received_at: float = 0.0


async def _end_to_end(nc: Any, start: float) -> dict[str, list[float]]:
    """Per alert (its alertname): publish (``received_at``) -> stored in EVENTS -> its send request
    stored in SENDS, from the streams' timestamps."""
    from loadtest.hops import read_window

    dec = msgspec.json.Decoder(_Labelled)
    pushed: dict[str, tuple[float, float]] = {}
    for ts, data in await read_window(nc, "TOCSIN_EVENTS", "tocsin.events.out.>", start - 1, time.time() + 60,
                                      idle=1.0):
        m = dec.decode(data)
        if m.alerts:
            pushed[m.alerts[0].labels.get("alertname", "")] = (m.received_at, ts)
    out: dict[str, list[float]] = {"publish->events": [], "events->sends": [], "publish->sends": []}
    for ts, data in await read_window(nc, "TOCSIN_SENDS", "tocsin.sends.out.>", start - 1, time.time() + 60,
                                      idle=1.0):
        m = dec.decode(data)
        got = pushed.pop(m.alerts[0].labels.get("alertname", ""), None) if m.alerts else None
        if got is not None:
            out["publish->events"].append(got[1] - got[0])
            out["events->sends"].append(ts - got[1])
            out["publish->sends"].append(ts - got[0])
    return out


async def run_pipeline(n: int, partitions: int, orgs: int, deployment: str, group_wait: str,
                       rate: float = 0.0) -> dict[str, Any]:
    """rules, router and filter over ``n`` pushed alerts in one process, as ``deployment`` runs
    them: separate (three stages, three consumers, three commits per input) or chained (one).
    Preloaded (a backlog), or with ``rate`` published at that rate while the stages run (a
    steady load: few inputs per commit)."""
    from pipeline.application.app import Settings
    from pipeline.application.graph import CHAIN, CHAINED, process_stages, stage_specs
    from pipeline.application.settings import load_text
    from pipeline.foundation.runtime.metrics import stage_metrics

    gc.set_threshold(50_000, 20, 100)
    settings = Settings(loaded=load_text(PIPELINE_CONFIG.replace("GROUP_WAIT", group_wait)), partitions=partitions,
                        deployment=deployment)
    names = process_stages(deployment, ["rules", "router", "filter"])
    streams = ["TOCSIN_ALERTS", "TOCSIN_GROUPS", "TOCSIN_SENDS"]
    sends_expected = n if group_wait == "0s" else 0
    with tempfile.TemporaryDirectory() as d:
        async with start_nats(Path(d) / "nats") as ns:
            nc = await connect(ns.url)
            js = nc.jetstream()
            await ensure_partitions(js, nc, partitions)
            for s in ("events", "commands"):
                await ensure_stream(js, StreamNames(s))
            if not rate:
                await preload_pushes(nc, n, partitions, orgs)
            specs = [stage_specs(settings, name) for name in names]
            runners = [StageRunner(nc, js, spec, replica="bench") for spec in specs]
            server = psutil.Process(ns.proc.pid)
            timing = _Timing()
            uninstall = timing.install() if rate else (lambda: None)
            wall0 = time.time()
            metrics = stage_metrics()
            inputs = {spec.name: metrics.inputs.labels(spec.name) for spec in specs}
            batches = {spec.name: metrics.batches.labels(spec.name) for spec in specs}
            last = CHAIN if deployment == CHAINED else "filter"
            sends = metrics.outputs.labels(last)
            # what each stage must have taken in: the pushes; the router the alert changes; the filter both
            # and the flushes; the chain the pushes alone
            want = {CHAIN: n, "rules": n, "router": n, "filter": n + sends_expected}
            base_in = {k: c._value.get() for k, c in inputs.items()}
            base_out, base_batches = sends._value.get(), {k: c._value.get() for k, c in batches.items()}
            for spec in specs:  # (made before the clock starts: a stage's output stream is another's input)
                await ensure_stream(js, spec.output, subjects=spec.output_subjects)
            writes0 = await _stream_writes(js, streams)
            async with anyio.create_task_group() as tg:
                # from the start of the first stage: the stages start one after the other, and each
                # takes what is there as soon as it is ready (acquiring P partitions: a few ms each)
                t0 = time.perf_counter()
                cpu0, server0 = time.process_time(), sum(server.cpu_times()[:2])
                for r in runners:
                    await tg.start(r.run)
                if rate:
                    t0 = time.perf_counter()
                    cpu0, server0 = time.process_time(), sum(server.cpu_times()[:2])
                    await preload_pushes(nc, n, partitions, orgs, rate)
                out_expected = sends_expected + (n if deployment == CHAINED else 0)  # (the chain counts alert changes)
                while (any(inputs[k]._value.get() - base_in[k] < want[k] for k in inputs)
                       or sends._value.get() - base_out < out_expected):
                    await anyio.sleep(0.01)
                t1 = time.perf_counter()
                stage_cpu, server_cpu = time.process_time() - cpu0, sum(server.cpu_times()[:2]) - server0
                for r in runners:
                    await r.drain()
                tg.cancel_scope.cancel()
            uninstall()
            writes = await _stream_writes(js, streams) - writes0
            commits = sum(c._value.get() - base_batches[k] for k, c in batches.items())
            latency = await _end_to_end(nc, wall0) if rate and sends_expected else {}
            await nc.close()
    result: dict[str, Any] = {
        "rate": n / (t1 - t0), "writes": writes / n, "commits": commits / n,
        "stage_us": stage_cpu / n * 1e6, "server_us": server_cpu / n * 1e6, "seconds": t1 - t0}
    if rate:
        result["latency"] = {k: summarize(v) for k, v in latency.items()} | {
            "stored->batch (delivery)": summarize(timing.delivery), "batch (step+commit+ack)": summarize(timing.batch),
            "commit": summarize(timing.commit)}
    return result


async def compare_deployments(n: int, partitions: int, orgs: int, deployments: list[str], group_wait: str,
                              rate: float = 0.0) -> None:
    results = {}
    for deployment in deployments:
        results[deployment] = r = await run_pipeline(n, partitions, orgs, deployment, group_wait, rate)
        print(f"{deployment:>8}: {r['rate']:,.0f} alerts/s ({r['seconds']:.2f}s)  JetStream writes/alert "
              f"{r['writes']:.2f} (stage streams, besides the push in EVENTS)  atomic batches/alert "
              f"{r['commits']:.3f}  CPU/alert: stages {r['stage_us']:.0f} us, nats-server {r['server_us']:.0f} us")
        for what, q in r.get("latency", {}).items():
            print(f"{'':>10}latency {what}: p50 / p90 / p99 / max {_ms(q)} ({q['count']:.0f})")
    if len(results) == 2:
        c, s = results["chained"], results["separate"]
        print(f"chained/separate: throughput {c['rate'] / s['rate']:.2f}x, writes {c['writes'] / s['writes']:.2f}x, "
              f"CPU (stages + server) {(c['stage_us'] + c['server_us']) / (s['stage_us'] + s['server_us']):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--orgs", type=int, default=200)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--stage", choices=["counter", "router", "pipeline"], default="counter",
                    help="counter: the runtime's test stage; router: the router/grouper stage (50 alert names); "
                         "pipeline: rules, router and filter over pushed alerts, in --deployment")
    ap.add_argument("--deployment", choices=["chained", "separate", "both"], default="both",
                    help="with --stage pipeline: how rules, router and filter run (both: one after the other, "
                         "with the ratios)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="with --stage pipeline: publish the alerts at this rate while the stages run (a steady "
                         "load) instead of preloading them (a backlog); the CPU figures then include the publisher")
    ap.add_argument("--group-wait", default="1h",
                    help="the router's group_wait: 1h never flushes; 0s with --keys as large as --events "
                         "flushes every alert as its own group, the shape of the API burst")
    a = ap.parse_args()
    if a.stage == "pipeline":
        deployments = ["separate", "chained"] if a.deployment == "both" else [a.deployment]
        print(f"alerts={a.events} partitions={a.partitions} orgs={a.orgs} group_wait={a.group_wait}"
              + (f" rate={a.rate:g}/s" if a.rate else " (preloaded)"))
        anyio.run(compare_deployments, a.events, a.partitions, a.orgs, deployments, a.group_wait, a.rate)
        return
    anyio.run(run, a.events, a.partitions, a.orgs, a.keys, a.stage, a.group_wait)


if __name__ == "__main__":
    main()
