"""Throughput of the stage runtime with the counter test stage (issue: foundation), or of
a real stage (``--stage router``).

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
from pathlib import Path

import anyio
import psutil

from contracts import Event, encode
from contracts.partition import partition_of
from pipeline.embedded import start_nats
from pipeline.runtime.jetstream import BatchMsg, connect, ensure_partitions, ensure_stream, publish_atomic
from pipeline.runtime.partition import Input, StageSpec
from pipeline.runtime.stage import StageRunner
from pipeline.runtime.subjects import StreamNames
from stages.counter.core import CounterCore

__all__ = ["main"]

EVENTS = StreamNames("events")


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
    from pipeline.settings import load_text
    from stages.router.config import RouteTable
    from stages.router.core import RouterCore

    table = RouteTable.from_config(load_text(STAGE_CONFIG.replace("GROUP_WAIT", group_wait)).config)
    return StageSpec(name="router", core=RouterCore(table), inputs=[Input("alerts", ALERTS)],
                     output=StreamNames("groups"), partitions=partitions), ALERTS


async def run(n: int, partitions: int, orgs: int, keys: int, stage: str = "counter", group_wait: str = "1h") -> None:
    gc.set_threshold(50_000, 20, 100)  # as the stage processes run (pipeline.cli)
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
                from pipeline.runtime.metrics import stage_metrics

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--orgs", type=int, default=200)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--stage", choices=["counter", "router"], default="counter",
                    help="counter: the runtime's test stage; router: the router/grouper stage (50 alert names)")
    ap.add_argument("--group-wait", default="1h",
                    help="the router's group_wait: 1h never flushes; 0s with --keys as large as --events "
                         "flushes every alert as its own group, the shape of the API burst")
    a = ap.parse_args()
    anyio.run(run, a.events, a.partitions, a.orgs, a.keys, a.stage, a.group_wait)


if __name__ == "__main__":
    main()
