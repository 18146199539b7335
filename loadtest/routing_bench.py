"""Throughput of the router's pure core (no NATS): routing, steps, flushes, and state memory.

Three figures, in one process:

1. routing: alerts/s of ``RouteTable.targets`` (labels -> matching routes -> group keys and
   ids) through a 50-route tree, next to amconfig's plain ``RouteNode.match`` + ``group_key``;
2. step: ``RouterCore.step`` inputs/s, applying each step's changes to a dict as the
   runtime does (a mix of new alerts, updates and resolutions over many groups);
3. fire: flushes/s of ``RouterCore.fire`` (the first flush of every group), then the memory
   the state takes once decoded from its wire form (tracemalloc: Python objects only).

Run: ``.venv/bin/python -m loadtest.routing_bench --alerts 100000``
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec

from contracts.labels import fingerprint
from contracts.messages import Alert, AlertChange, Cause
from pipeline.foundation.amconfig import RouteNode, compile_routes, group_key, load_config_text
from pipeline.foundation.runtime.step import Step
from stages.router.config import RouteTable
from stages.router.core import RouterCore
from stages.router.state import AlertShard, GroupHead, StateValue

__all__ = [
    "bench_core", "bench_memory", "bench_routing", "build_config", "main", "make_changes", "make_labels",
]

TEAMS = [f"team{i}" for i in range(10)]
SEVERITIES = ["critical", "warning", "info"]


def build_config() -> str:
    """A 50-route tree: 10 team routes with 4 children each (equality, regex, negative, continue)."""
    lines = [
        "route:",
        "  receiver: default",
        "  group_by: [alertname, cluster]",
        "  group_wait: 30s",
        "  group_interval: 5m",
        "  routes:",
    ]
    receivers = {"default"}
    for team in TEAMS:
        lines += [
            f"    - matchers: [team=\"{team}\"]",
            f"      receiver: {team}",
            "      routes:",
            "        - matchers: [severity=\"critical\"]",
            f"          receiver: {team}-pager",
            "          continue: true",
            "        - matchers: ['severity=~\"critical|warning\"', 'env!=\"dev\"']",
            f"          receiver: {team}-chat",
            "          group_by: [alertname, cluster, service]",
            "        - matchers: ['service=~\"db-.*\"']",
            f"          receiver: {team}-db",
            "          group_by: ['...']",
            "        - matchers: [env=\"dev\"]",
            f"          receiver: {team}-dev",
            "          group_by: []",
        ]
        receivers |= {team, f"{team}-pager", f"{team}-chat", f"{team}-db", f"{team}-dev"}
    lines.append("receivers:")
    lines += [f"  - name: {r}" for r in sorted(receivers)]
    return "\n".join(lines) + "\n"


def make_labels(n: int, rng: random.Random) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        labels = {
            "alertname": f"Alert{rng.randrange(40)}",
            "team": rng.choice([*TEAMS, "other"]),
            "severity": rng.choice(SEVERITIES),
            "cluster": f"c{rng.randrange(8)}",
            "service": rng.choice(["api", "web", "db-main", "db-replica", "queue"]),
            "env": rng.choice(["prod", "prod", "staging", "dev"]),
            "instance": f"10.0.{i // 250}.{i % 250}:9100",
            "job": "node",
        }
        out.append(labels)
    return out


def rate(n: int, fn: Callable[[], Any]) -> str:
    """``n`` per second of wall-clock time, and per second of this process's CPU time (the
    figure to read on a shared machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return f"{n / wall:>10,.0f}/s wall {n / cpu:>10,.0f}/s cpu"


def make_changes(labels: list[dict[str, str]], orgs: list[str], rng: random.Random) -> list[AlertChange]:
    """Every alert fires, a quarter are then updated and a tenth resolve; stream time 1 ms apart."""
    changes: list[AlertChange] = []
    t = 1_000_000.0
    for i, ls in enumerate(labels):
        alert = Alert(fingerprint=fingerprint(ls), org=orgs[i % len(orgs)], labels=ls,
                      annotations={"summary": "x" * 40}, starts_at=t, updated_at=t)
        changes.append(AlertChange(change="fired", alert=alert, cause=Cause(kind="push", id=str(i), at=t),
                                   trace={"traceparent": f"00-{i:032x}-{i:016x}-01"}))
        t += 0.001
    for i in rng.sample(range(len(labels)), len(labels) // 4):
        a = changes[i].alert
        changes.append(AlertChange(change="updated", cause=Cause(kind="push"), alert=msgspec.structs.replace(
            a, annotations={"summary": "y" * 40}, updated_at=t)))
        t += 0.001
    for i in rng.sample(range(len(labels)), len(labels) // 10):
        a = changes[i].alert
        changes.append(AlertChange(change="resolved", cause=Cause(kind="push"),
                                   alert=msgspec.structs.replace(a, ends_at=t, updated_at=t)))
        t += 0.001
    return changes


def _apply(state: dict[str, StateValue], step: Step[StateValue]) -> None:
    for key, value in step.changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


def bench_routing(root: RouteNode, table: RouteTable, labels: list[dict[str, str]], orgs: list[str]) -> None:
    def plain() -> None:
        for ls in labels:
            for r in root.match(ls):
                group_key(r, ls)

    def fast() -> None:
        for i, ls in enumerate(labels):
            table.targets(orgs[i % len(orgs)], ls)

    sample = labels[:10_000]
    per_alert = sum(len(table.targets("o", ls)) for ls in sample) / len(sample)
    print(f"tree: {sum(1 for _ in root.walk())} routes; {per_alert:.2f} groups per alert on average")
    print(f"routing alerts, RouteNode.match + group_key:   {rate(len(labels), plain)}")
    print(f"routing alerts, RouteTable.targets (+ ids):     {rate(len(labels), fast)}")


def bench_core(core: RouterCore, changes: list[AlertChange]) -> dict[str, StateValue]:
    state: dict[str, StateValue] = {}

    def steps() -> None:
        for ch in changes:
            _apply(state, core.step(state, ch, ch.alert.updated_at))

    print(f"RouterCore.step, inputs ({len(changes):,}):            {rate(len(changes), steps)}")
    heads = [(k, v) for k, v in state.items() if isinstance(v, GroupHead)]
    print(f"  -> {len(heads):,} groups, {len(state):,} state keys")

    def fires() -> None:
        for key, head in heads:
            _apply(state, core.fire(state, key, head.deadline))

    print(f"RouterCore.fire, first flush of each group:    {rate(len(heads), fires)}")
    return state


def bench_memory(core: RouterCore, state: dict[str, StateValue]) -> None:
    """Memory of the state as a partition owner holds it: decoded from the state subjects."""
    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder(core.value_type)
    wire = {k: enc.encode(v) for k, v in state.items()}
    gc.collect()
    tracemalloc.start()
    rebuilt = {k: dec.decode(raw) for k, raw in wire.items()}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    active = sum(len(v.alerts) for v in rebuilt.values() if isinstance(v, AlertShard))
    on_wire = sum(map(len, wire.values())) / 2**20
    print(f"state of {active:,} alerts in groups ({len(rebuilt):,} keys, {on_wire:,.0f} MiB on the wire): "
          f"{size / 2**20:,.0f} MiB decoded, {size / max(active, 1):,.0f} B per alert")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=100_000, help="distinct alerts (default 100000)")
    ap.add_argument("--orgs", type=int, default=20, help="organisations sharing the partition")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = compile_routes(load_config_text(build_config()))
    table = RouteTable(root)
    labels = make_labels(args.alerts, rng)
    orgs = [f"org{i}" for i in range(args.orgs)]
    bench_routing(root, table, labels, orgs)
    core = RouterCore(table)
    state = bench_core(core, make_changes(labels, orgs, rng))
    bench_memory(core, state)


if __name__ == "__main__":
    main()
