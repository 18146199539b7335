"""The run's report: ``report.md``, ``summary.json`` and PNG plots in the results directory.

Plots (matplotlib, Agg; skipped with a note when it is not installed):
``throughput.png`` (events sent and notifications received per second), ``latency.png``
(firing latency p50/p99 per 5-second window), ``latency_cdf.png`` (distribution per
target), ``lag.png`` (consumer lag per stage input, replication slot lag) and ``cpu.png``
(CPU per process).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from loadtest.oracle import Spacing, Verdict
from loadtest.probes import Samples
from loadtest.profile import Hot
from loadtest.repeat import repeated_table
from loadtest.stats import percentile, rate_series, summarize, window_percentiles

__all__ = ["BurstResult", "TargetResult", "cpu_figures", "cpu_seconds", "summary", "write_report"]


@dataclass
class BurstResult:
    n: int
    status: str  # "firing" wave or "resolved" wave
    push_seconds: float  # first push to last push accepted
    e2e_seconds: float  # first push to the last notification of the wave
    delivered: int
    started: float = 0.0  # wall time of the first push

    @property
    def ingest_rate(self) -> float:
        return self.n / self.push_seconds if self.push_seconds > 0 else math.nan

    @property
    def e2e_rate(self) -> float:
        return self.delivered / self.e2e_seconds if self.e2e_seconds > 0 else math.nan


@dataclass
class TargetResult:
    target: str  # "tocsin" | "alertmanager"
    label: str
    mode: str
    t0: float
    load_end: float
    end: float
    generated: int
    sent_times: list[float]
    arrivals: list[float]
    verdict: Verdict
    spacing: Spacing
    samples: Samples
    sender: dict[str, float] = field(default_factory=dict)
    chaos: list[tuple[float, str, str]] = field(default_factory=list)
    bursts: list[BurstResult] = field(default_factory=list)
    profiles: dict[str, tuple[int, list[Hot]]] = field(default_factory=dict)
    drained: bool = True
    model: dict[str, int] = field(default_factory=dict)  # lifecycles, out_of_order, message_mismatch
    hops: tuple[int, dict[str, dict[str, float]]] = (0, {})  # (notifications traced, hop -> summary)
    burst_hops: tuple[int, dict[str, dict[str, float]]] = (0, {})  # the same for the firing burst
    steps: list[tuple[float, float]] = field(default_factory=list)  # a stepped load: (rate, seconds)
    notes: list[str] = field(default_factory=list)

    @property
    def load_seconds(self) -> float:
        return self.load_end - self.t0


_HOP_WHAT = {
    "sent->events": "commit returned -> event in TOCSIN_EVENTS (source; API: push -> stored)",
    "events->alerts": "rules stage (chained: the chain): fetch, step, commit",
    "alerts->groups": "router: fetch, step, group_wait timer, flush commit",
    "groups->sends": "filter: fetch, step, commit",
    "alerts->sends": "chained: the same commit as the alert change (0)",
    "sends->received": "notifier: fetch, ledger, HTTP to the sink",
}


def _ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:,.0f} ms" if x >= 0.01 else f"{x * 1000:.1f} ms"


def _num(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def cpu_figures(samples: Iterable[tuple[float, str, float, float]], t0: float, load_end: float
                ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per process role, from ``(time, role, CPU %, memory MiB)`` samples: the CPU mean while
    the load ran (as the machine's figure is taken), and the CPU and memory maxima of the
    whole run (a burst or a drain after the load included). A mean over the whole run would
    count the idle drain and read low: a machine busy at 198% showed its processes at 131%.
    A role with no sample in the load window gets its mean over the whole run."""
    during: dict[str, list[float]] = {}
    every: dict[str, list[float]] = {}
    mem_max: dict[str, float] = {}
    cpu_max: dict[str, float] = {}
    for t, role, c, m in samples:
        every.setdefault(role, []).append(c)
        if t0 <= t <= load_end:
            during.setdefault(role, []).append(c)
        cpu_max[role] = max(cpu_max.get(role, 0.0), c)
        mem_max[role] = max(mem_max.get(role, 0.0), m)
    mean = {role: sum(v) / len(v) for role, v in ((k, during.get(k) or vs) for k, vs in every.items())}
    return mean, cpu_max, mem_max


#: roles that drive the test, not the system under test (left out of a burst's "system" CPU)
_HARNESS = ("loadgen", "sink")


def cpu_seconds(samples: Iterable[tuple[float, str, float, float]], start: float, end: float) -> dict[str, float]:
    """CPU seconds each role spent from ``start`` to ``end``: a sample's CPU % is its process's
    mean since the role's previous sample, so each interval counts for its overlap with the window."""
    by_role: dict[str, list[tuple[float, float]]] = {}
    for t, role, c, _ in samples:
        by_role.setdefault(role, []).append((t, c))
    out: dict[str, float] = {}
    for role, pts in by_role.items():
        pts.sort()
        total = 0.0
        for (t0, _), (t1, c) in pairwise(pts):
            overlap = min(t1, end) - max(t0, start)
            if overlap > 0:
                total += c / 100.0 * overlap
        out[role] = total
    return out


def _burst_figures(r: TargetResult, b: BurstResult) -> dict[str, Any]:
    # CPU per notification of the wave, from its first push to its last notification
    per: dict[str, float] = {}
    if b.delivered:
        cpu = cpu_seconds(r.samples.cpu, b.started, b.started + b.e2e_seconds)
        per = {role: 1e6 * v / b.delivered for role, v in cpu.items()}
    return {"n": b.n, "status": b.status, "push_s": b.push_seconds, "e2e_s": b.e2e_seconds,
            "delivered": b.delivered, "ingest_per_s": b.ingest_rate, "e2e_per_s": b.e2e_rate,
            "cpu_us_per_notification": per,
            "cpu_us_per_notification_system": sum(v for k, v in per.items() if k not in _HARNESS) if per
            else math.nan,
            "cpu_us_per_notification_all": sum(per.values()) if per else math.nan}


def summary(r: TargetResult) -> dict[str, Any]:
    """The figures of one target (JSON-safe)."""
    v = r.verdict
    sent = len(r.sent_times)
    in_load = sum(1 for t in r.sent_times if t <= r.load_end)
    # steady load: notifications of events sent while the load ran (a burst after it is apart)
    firing = summarize(lat for a, lat in v.latency["firing"] if a - lat <= r.load_end)
    resolved = summarize(lat for a, lat in v.latency["resolved"] if a - lat <= r.load_end)
    burst_firing = summarize(lat for a, lat in v.latency["firing"] if a - lat > r.load_end)
    cpu_mean, cpu_max, mem_max = cpu_figures(r.samples.cpu, r.t0, r.load_end)
    last_firing = max((a for a, lat in v.latency["firing"] if a - lat <= r.load_end), default=math.nan)
    out: dict[str, Any] = {
        "target": r.target, "label": r.label, "mode": r.mode,
        "load_seconds": round(r.load_seconds, 3),
        "generated": r.generated, "sent": sent,
        "sent_per_second": in_load / r.load_seconds if r.load_seconds > 0 else math.nan,
        "notifications": len(r.arrivals),
        "notifications_per_second_during_load": sum(1 for a in r.arrivals if r.t0 <= a <= r.load_end)
        / r.load_seconds if r.load_seconds > 0 else math.nan,
        "expected": v.expected, "delivered": v.delivered, "missing": len(v.missing),
        "duplicated": len(v.duplicated), "same_key_repeats": len(v.repeats), "unexpected": len(v.unexpected),
        "label_mismatch": len(v.label_mismatch),
        "firing_latency_s": firing, "resolved_latency_s": resolved, "burst_firing_latency_s": burst_firing,
        "firing_drain_s": (last_firing - r.load_end) if last_firing == last_firing else math.nan,
        "spacing": {"refires": r.spacing.refires, "min_gap_s": r.spacing.min_gap, "below_guard": r.spacing.below,
                    "guard_s": r.spacing.guard},
        "model": r.model, "sender": r.sender, "drained": r.drained,
        "cpu_percent_mean": cpu_mean, "cpu_percent_max": cpu_max, "memory_mib_max": mem_max,
        "max_lag": _max_by_key([p for p in r.samples.lag if p[1] != "notifier/in_flight"]),
        "machine_cpu_percent_mean": (sum(v for t, v in r.samples.machine if r.t0 <= t <= r.load_end)
                                     / max(1, sum(1 for t, _ in r.samples.machine if r.t0 <= t <= r.load_end))),
        "stages": _stage_figures(r),
        "bursts": [_burst_figures(r, b) for b in r.bursts],
        "chaos": [{"at": round(t - r.t0, 2), "action": a, "detail": d} for t, a, d in r.chaos],
        "hops_traced": r.hops[0], "hops_s": r.hops[1],
        "burst_hops_traced": r.burst_hops[0], "burst_hops_s": r.burst_hops[1],
        "steps": _step_figures(r),
        "notes": r.notes,
    }
    return out


def _at_or_before(points: Sequence[tuple[float, str, float]], key: str, t: float) -> float:
    vals = [v for tt, k, v in points if k == key and tt <= t]
    return vals[-1] if vals else math.nan


def _step_figures(r: TargetResult) -> list[dict[str, float]]:
    """Per step of a stepped load: what was offered, what each stage processed, the latency of
    firings sent in the step, and the backlog left at its end."""
    out = []
    start = r.t0
    for rate, seconds in r.steps:
        end = start + seconds
        lat = sorted(x for a, x in r.verdict.latency["firing"] if start <= a - x < end)
        row: dict[str, float] = {
            "rate": rate, "seconds": seconds,
            "sent_per_s": sum(1 for t in r.sent_times if start <= t < end) / seconds,
            "notifications_per_s": sum(1 for t in r.arrivals if start <= t < end) / seconds,
            "firing_p50_s": percentile(lat, 50), "firing_p99_s": percentile(lat, 99),
            "slot_lag_kib_end": next((v / 1024 for t, v in reversed(r.samples.slot_lag) if t <= end), math.nan),
            "rules_lag_end": _at_or_before(r.samples.lag, "rules/events", end),
        }
        for st in ("source", "rules", "router", "filter"):
            row[f"{st}_inputs_per_s"] = r.samples.counter_delta(f"{st}/inputs", start, end) / seconds
        out.append(row)
        start = end
    return out


def _stage_figures(r: TargetResult) -> dict[str, dict[str, float]]:
    """Per stage during the load: inputs/s, commits/s, inputs per commit, mean step and commit time."""
    out: dict[str, dict[str, float]] = {}
    stages = sorted({k.split("/", 1)[0] for _, _, k, _ in r.samples.counters})
    for st in stages:
        def d(name: str, st: str = st) -> float:
            return r.samples.counter_delta(f"{st}/{name}", r.t0, r.load_end)

        span = r.load_seconds
        inputs, commits = d("inputs"), d("commits")
        if st == "notifier":
            n = d("attempt_seconds_count")
            inflight = [v for t, k, v in r.samples.lag if k == "notifier/in_flight" and r.t0 <= t <= r.load_end]
            out[st] = {"attempts_per_s": inputs / span if span > 0 else math.nan,
                       "attempt_ms": 1000 * d("attempt_seconds_sum") / n if n else math.nan,
                       "in_flight_mean": sum(inflight) / len(inflight) if inflight else math.nan}
            continue
        out[st] = {
            "inputs_per_s": inputs / span if span > 0 else math.nan,
            "commits_per_s": commits / span if span > 0 else math.nan,
            "inputs_per_commit": inputs / commits if commits else math.nan,
            # atomic batches: fewer than commits when partitions commit together (the source: = commits)
            "batches_per_s": (d("commit_batches") if st != "source" else commits) / span if span > 0 else math.nan,
            "step_ms": 1000 * d("step_seconds_sum") / d("step_seconds_count") if d("step_seconds_count") else math.nan,
            "commit_ms": 1000 * d("commit_seconds_sum") / d("commit_seconds_count")
            if d("commit_seconds_count") else math.nan,
        }
    return out


def _max_by_key(points: Sequence[tuple[float, str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for _, k, v in points:
        out[k] = max(out.get(k, 0.0), v)
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 6)
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


# ---------------------------------------------------------------------------- plots


def _plots(out: Path, results: Sequence[TargetResult]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is not installed: no plots (pip install matplotlib)"]
    notes: list[str] = []
    colors = {"tocsin": "tab:blue", "alertmanager": "tab:orange"}

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for r in results:
        end = max([r.end, *r.arrivals[-1:]])
        c = colors.get(r.target)
        s = rate_series(r.sent_times, r.t0, end)
        ax.plot([t for t, _ in s], [v for _, v in s], color=c, lw=1.2, label=f"{r.label}: events sent/s")
        a = rate_series(r.arrivals, r.t0, end)
        ax.plot([t for t, _ in a], [v for _, v in a], color=c, lw=1.0, ls="--",
                label=f"{r.label}: notifications/s")
        for t, kind, _ in r.chaos:
            ax.axvline(t - r.t0, color="red" if kind != "kill" else "grey", lw=0.6, alpha=0.6)
    ax.set_xlabel("seconds since the start of the load")
    ax.set_ylabel("per second")
    ax.set_title("Throughput" + (" (vertical lines: chaos actions)" if any(r.chaos for r in results) else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for r in results:
        c = colors.get(r.target)
        w = window_percentiles([(a, x) for a, x in r.verdict.latency["firing"] if a - x <= r.load_end], r.t0, 5.0)
        ax.plot([t for t, _ in w], [q[0] * 1000 for _, q in w], color=c, lw=1.0, ls="--", label=f"{r.label}: p50")
        ax.plot([t for t, _ in w], [q[1] * 1000 for _, q in w], color=c, lw=1.4, label=f"{r.label}: p99")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the start of the load (arrival time, 5 s windows)")
    ax.set_ylabel("firing latency, ms (commit/push -> webhook)")
    ax.set_title("End-to-end latency of firing notifications")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        for status, ls in (("firing", "-"), ("resolved", ":"), ("burst firing", "--")):
            pts = r.verdict.latency["firing" if status == "burst firing" else status]
            lat = sorted(x for a, x in pts if (a - x > r.load_end) == (status == "burst firing"))
            if lat:
                ax.plot([x * 1000 for x in lat], [(i + 1) / len(lat) for i in range(len(lat))],
                        color=colors.get(r.target), ls=ls, label=f"{r.label}: {status}")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms")
    ax.set_ylabel("fraction of notifications")
    ax.set_title("Latency distribution (resolved waits for the group_interval tick)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)

    with_lag = [r for r in results if r.samples.lag or r.samples.slot_lag]
    if with_lag:
        fig, axes = plt.subplots(len(with_lag), 1, figsize=(10, 4 * len(with_lag)), squeeze=False)
        for ax, r in zip(axes[:, 0], with_lag, strict=True):
            keys = sorted({k for _, k, _ in r.samples.lag})
            for k in keys:
                pts = [(t - r.t0, v) for t, kk, v in r.samples.lag if kk == k]
                ax.plot([t for t, _ in pts], [v for _, v in pts], lw=1.0, label=k)
            ax.set_ylabel("consumer lag, messages")
            ax.set_xlabel("seconds since the start of the load")
            ax.set_title(f"{r.label}: consumer lag per stage input")
            ax.grid(alpha=0.3)
            if r.samples.slot_lag:
                ax2 = ax.twinx()
                ax2.plot([t - r.t0 for t, _ in r.samples.slot_lag], [v / 1024 for _, v in r.samples.slot_lag],
                         color="black", lw=0.8, ls=":", label="replication slot lag (KiB)")
                ax2.set_ylabel("slot lag, KiB")
                ax2.legend(fontsize=8, loc="upper right")
            ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "lag.png", dpi=110)
        plt.close(fig)
    else:
        notes.append("no lag samples")

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 4 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        roles = sorted({role for _, role, _, _ in r.samples.cpu})
        for role in roles:
            pts = [(t - r.t0, c) for t, rr, c, _ in r.samples.cpu if rr == role]
            ax.plot([t for t, _ in pts], [c for _, c in pts], lw=1.0, label=role)
        if r.samples.machine:
            ax.plot([t - r.t0 for t, _ in r.samples.machine], [v for _, v in r.samples.machine], color="black",
                    lw=1.2, ls=":", label="machine (all processes)")
        ax.set_ylabel("CPU, % of one core")
        ax.set_xlabel("seconds since the start of the load")
        ax.set_title(f"{r.label}: CPU per process (2 cores = 200%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out / "cpu.png", dpi=110)
    plt.close(fig)
    return notes


# ---------------------------------------------------------------------------- markdown


def _target_section(r: TargetResult, s: dict[str, Any]) -> list[str]:
    f, rs = s["firing_latency_s"], s["resolved_latency_s"]
    lines = [f"## {r.label}", ""]
    lines += [
        "| figure | value |", "|---|---|",
        f"| load | {s['load_seconds']:.0f} s, {s['sent']:,} of {s['generated']:,} generated events sent "
        f"({s['sent_per_second']:,.0f}/s) |",
        f"| notifications received | {s['notifications']:,} "
        f"({s['notifications_per_second_during_load']:,.0f}/s during the load) |",
        f"| expected / delivered | {s['expected']:,} / {s['delivered']:,} |",
        f"| **missing / duplicated** | **{s['missing']} / {s['duplicated']}** |",
        f"| same-key repeats (hop C, a notifier died mid-request) | {s['same_key_repeats']} |",
        f"| unexpected / wrong labels | {s['unexpected']} / {s['label_mismatch']} |",
        f"| firing latency p50 / p90 / p99 / max (steady load) | {_ms(f['p50'])} / {_ms(f['p90'])} / "
        f"{_ms(f['p99'])} / {_ms(f['max'])} ({_num(f['count'])} notifications) |",
        f"| resolved latency p50 / p99 / max | {_ms(rs['p50'])} / {_ms(rs['p99'])} / {_ms(rs['max'])} "
        "(includes the wait for the group_interval tick) |",
        f"| last firing notification after the load ended | {s['firing_drain_s']:.2f} s |",
        f"| soonest re-fire of an alert after its resolve (commit/push time) | {s['spacing']['min_gap_s']:.2f} s "
        f"over {s['spacing']['refires']:,} re-fires; {s['spacing']['below_guard']} within group_interval "
        f"({s['spacing']['guard_s']:.0f} s) |",
    ]
    if s["model"]:
        lines.append(f"| oracle model | {s['model']} |")
    if s["sender"]:
        lines.append("| sender | " + ", ".join(f"{k} {v:,.0f}" for k, v in s["sender"].items()) + " |")
    if not r.drained:
        lines.append("| drain | **timed out before every expected notification arrived** |")
    lines.append("")
    if s["cpu_percent_mean"]:
        lines += ["| process | CPU mean (during the load) | CPU max | memory max |", "|---|---|---|---|"]
        for role in sorted(s["cpu_percent_mean"], key=lambda k: -s["cpu_percent_mean"][k]):
            lines.append(f"| {role} | {s['cpu_percent_mean'][role]:.0f}% | {s['cpu_percent_max'][role]:.0f}% | "
                         f"{s['memory_mib_max'][role]:.0f} MiB |")
        total = sum(s["cpu_percent_mean"].values())
        lines += [f"| **all sampled** | **{total:.0f}%** of 200% | | |",
                  f"| machine, every process (others' work included) | {s['machine_cpu_percent_mean']:.0f}% | | |",
                  ""]
    if s["stages"]:
        lines += ["Stage runtime during the load (from each process's /metrics):", "",
                  "| stage | inputs/s | commits/s | atomic batches/s | inputs per commit | mean batch (fetch to ack) "
                  "| mean commit |",
                  "|---|---|---|---|---|---|---|"]
        for st, f in s["stages"].items():
            if st == "notifier":
                continue
            lines.append(f"| {st} | {_num(f['inputs_per_s'])} | {_num(f['commits_per_s'])} | "
                         f"{_num(f.get('batches_per_s', math.nan))} | {f['inputs_per_commit']:.1f} | "
                         f"{f['step_ms']:.1f} ms | {f['commit_ms']:.1f} ms |")
        lines.append("")
        if "notifier" in s["stages"]:
            f = s["stages"]["notifier"]
            lines += [f"Notifier during the load: {_num(f['attempts_per_s'])} attempts/s, HTTP attempt "
                      f"{f['attempt_ms']:.1f} ms on average, {f['in_flight_mean']:.1f} requests in flight on "
                      "average (the rest of a send is its ledger writes and the fetch).", ""]
    if s["steps"]:
        lines += ["Stepped load (per step: offered rate, what each stage processed, latency of the firings "
                  "sent in the step, backlog at the step's end):", "",
                  "| offered/s | sent/s | source rows/s | rules inputs/s | router inputs/s | filter inputs/s | "
                  "notifications/s | firing p50 | firing p99 | slot lag at end | rules lag at end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for st in s["steps"]:
            lines.append(f"| {_num(st['rate'])} | {_num(st['sent_per_s'])} | {_num(st['source_inputs_per_s'])} | "
                         f"{_num(st['rules_inputs_per_s'])} | {_num(st['router_inputs_per_s'])} | "
                         f"{_num(st['filter_inputs_per_s'])} | {_num(st['notifications_per_s'])} | "
                         f"{_ms(st['firing_p50_s'])} | {_ms(st['firing_p99_s'])} | "
                         f"{_num(st['slot_lag_kib_end'])} KiB | {_num(st['rules_lag_end'])} |")
        lines.append("")
    for (traced, hops), which in ((r.hops, "sent in a window 40% into the load"),
                                  (r.burst_hops, "of the firing burst")):
        if not traced:
            continue
        lines += [f"Where the latency goes ({traced:,} firing notifications, {which}, "
                  "traced through the streams by their JetStream timestamps):", "",
                  "| hop | what | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
        for hop, q in hops.items():
            lines.append(f"| {hop} | {_HOP_WHAT.get(hop, '')} | {_ms(q['p50'])} | {_ms(q['p90'])} | "
                         f"{_ms(q['p99'])} | {_ms(q['max'])} |")
        lines.append("")
    if s["max_lag"]:
        lines.append("Largest consumer lag seen: " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                              sorted(s["max_lag"].items())) + ".")
        lines.append("")
    if s["bursts"]:
        bf = s["burst_firing_latency_s"]
        lines.append(f"Burst firing latency p50 / p99 / max: {_ms(bf['p50'])} / {_ms(bf['p99'])} / {_ms(bf['max'])}.")
    for b in s["bursts"]:
        lines.append(f"Burst ({b['status']}): {b['n']:,} alerts pushed in {b['push_s']:.2f} s "
                     f"({b['ingest_per_s']:,.0f}/s accepted); {b['delivered']:,} notifications "
                     f"{b['e2e_s']:.2f} s after the first push ({b['e2e_per_s']:,.0f}/s end to end).")
        if b.get("cpu_us_per_notification"):
            roles = sorted(b["cpu_us_per_notification"].items(), key=lambda kv: -kv[1])
            lines.append(f"CPU per notification of that wave: {b['cpu_us_per_notification_system']:,.0f} µs "
                         f"for the system under test, {b['cpu_us_per_notification_all']:,.0f} µs with the load "
                         "generator and sink (" + ", ".join(f"{k} {v:,.0f}" for k, v in roles) + ").")
    if s["bursts"]:
        lines.append("")
    if r.chaos:
        lines += ["Chaos actions:", ""]
        lines += [f"- t+{t - r.t0:.1f}s {a}: {d}" for t, a, d in r.chaos]
        lines.append("")
    if r.verdict.repeats:
        kills = [t for t, a, d in r.chaos if a == "kill" and d.startswith("notifier")]
        lines += ["Same-key repeats (arrival, key; hop C allows them only after a notifier died mid-request; a "
                  "request the dead worker held is redelivered after the notifier's ack_wait):", ""]
        for lc, st, key, at in r.verdict.repeats[:20]:
            before = [f"t+{t - r.t0:.1f}s" for t in kills if t <= at]
            why = f"notifier kills before it: {', '.join(before)}" if before else "no notifier kill before it"
            lines.append(f"- t+{at - r.t0:.1f}s `{key}` ({lc} {st}): {why}")
        lines.append("")
    if r.verdict.missing:
        lines += ["Missing (first 10): " + ", ".join(f"{lc}/{st}" for lc, st in r.verdict.missing[:10]), ""]
    if r.verdict.duplicated:
        lines += ["Duplicated (first 20; each delivery's Idempotency-Key and arrival):", ""]
        for k in r.verdict.duplicated[:20]:
            seen = "; ".join(f"`{key or '-'}` at t+{at - r.t0:.1f}s" for key, at in r.verdict.deliveries_of.get(k, []))
            lines.append(f"- {k[0]} {k[1]}: {seen}")
        lines.append("")
    for role, (samples, hots) in sorted(r.profiles.items()):
        if not hots:
            continue
        tool = "Go pprof" if role.split("-")[0] == "nats" else "py-spy"
        when = ", during the firing burst" if role.endswith("-burst") else ""
        lines += [f"Profile of `{role}` ({samples:,} samples, {tool}, on-CPU{when}): top functions by self time", "",
                  "| function | self | total |", "|---|---|---|"]
        lines += [f"| `{h.function}` | {h.self_share:.1%} | {h.total_share:.1%} |" for h in hots]
        lines.append("")
    lines += [f"- {n}" for n in r.notes]
    return lines


def write_report(out: Path, *, title: str, command: str, params: dict[str, Any], machine: dict[str, Any],
                 results: Sequence[TargetResult], verdict_lines: Sequence[str] = ()) -> Path:
    """Write report.md, summary.json and the plots into ``out``; return the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    notes = _plots(out, results)
    sums = [summary(r) for r in results]
    (out / "summary.json").write_text(json.dumps(_json_safe({"title": title, "command": command, "params": params,
                                                             "machine": machine, "targets": sums}),
                                                 indent=2) + "\n")
    lines = [f"# {title}", "", "```sh", command, "```", ""]
    lines += [f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), load average "
              f"{machine.get('loadavg_start')} at the start and {machine.get('loadavg_end')} at the end "
              "(shared with other work: expect noise).", ""]
    lines += ["Parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()), ""]
    if verdict_lines:
        lines += [*list(verdict_lines), ""]
    if len(results) == 2 and results[0].target != results[1].target:
        lines += _comparison(results, sums)
    runs: dict[str, list[dict[str, Any]]] = {}
    for s in sums:
        runs.setdefault(s["target"], []).append(s)
    if len(results) > len(runs):  # repeated runs: the figures over them, also alone in repeated.md
        rep = _repeated(runs)
        (out / "repeated.md").write_text("\n".join([f"# {title}: repeated runs", "", "```sh", command, "```", "",
                                                     *rep]) + "\n")
        lines += rep
    for r, s in zip(results, sums, strict=True):
        lines += _target_section(r, s)
    lines += ["## Plots", "", "![throughput](throughput.png)", "", "![latency](latency.png)", "",
              "![latency distribution](latency_cdf.png)", ""]
    if (out / "lag.png").exists():
        lines += ["![lag](lag.png)", ""]
    lines += ["![cpu](cpu.png)", ""]
    lines += [f"- {n}" for n in notes]
    path = out / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _repeated(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    order = ", ".join(f"{t} x{len(ss)}" for t, ss in runs.items())
    return ["## Repeated runs", "",
            f"Runs: {order}, interleaved (one of each target per round). Each figure: the median over "
            "the runs, [min..max], (runs that had it); the ratio is Tocsin's median over Alertmanager's. "
            "A difference smaller than the ranges is noise.", "", *repeated_table(runs), ""]


def _comparison(results: Sequence[TargetResult], sums: Sequence[dict[str, Any]]) -> list[str]:
    by = {s["target"]: s for s in sums}
    am, to = by.get("alertmanager"), by.get("tocsin")
    if not am or not to:
        return []
    lines = ["## Side by side", "", "| | Alertmanager | Tocsin | ratio Tocsin/AM |", "|---|---|---|---|"]

    def row(name: str, a: float, t: float) -> None:
        ratio = t / a if a and a == a and t == t else math.nan
        lines.append(f"| {name} | {_num(a)} | {_num(t)} | {ratio:.2f}x |")

    row("alerts pushed/s during the steady load", am["sent_per_second"], to["sent_per_second"])
    row("notifications/s during the steady load", am["notifications_per_second_during_load"],
        to["notifications_per_second_during_load"])
    for ab, tb in zip(am["bursts"], to["bursts"], strict=False):
        row(f"burst ({ab['status']}): alerts accepted/s", ab["ingest_per_s"], tb["ingest_per_s"])
        row(f"burst ({ab['status']}): notifications/s end to end", ab["e2e_per_s"], tb["e2e_per_s"])
        if ab["status"] == "firing":
            row("burst (firing): CPU µs per notification, system under test",
                ab.get("cpu_us_per_notification_system", math.nan), tb.get("cpu_us_per_notification_system", math.nan))
    fa, ft = am["firing_latency_s"], to["firing_latency_s"]
    for q in ("p50", "p90", "p99", "max"):
        lines.append(f"| firing latency {q}, steady load | {_ms(fa[q])} | {_ms(ft[q])} | |")
    ba, bt = am["burst_firing_latency_s"], to["burst_firing_latency_s"]
    for q in ("p50", "p99"):
        lines.append(f"| firing latency {q}, burst | {_ms(ba[q])} | {_ms(bt[q])} | |")
    lines += [f"| missing / duplicated | {am['missing']} / {am['duplicated']} | "
              f"{to['missing']} / {to['duplicated']} | |",
              "", "Throughput ratio (end to end, firing burst): "
              + (f"**{to['bursts'][0]['e2e_per_s'] / am['bursts'][0]['e2e_per_s']:.2f}x** Alertmanager's."
                 if am["bursts"] and to["bursts"] and am["bursts"][0]["e2e_per_s"] else "n/a (no burst)."), ""]
    return lines
