"""Repeated, interleaved runs and their arithmetic: one run of each target is noise on a shared
machine (Alertmanager's burst figure ranged 1,928 to 5,149 notifications/s between two runs), so
``--repeats N`` runs every target N times, interleaved (AM, Tocsin, AM, Tocsin, ...) so that a
slow minute of the machine lands on both, and reports each figure's median and range and the
ratio of the medians. Pure functions: :mod:`loadtest.run` schedules, :mod:`loadtest.report`
prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FIGURES", "Figure", "Spread", "figures_of", "median", "ratio", "repeated_table", "schedule", "spread"]


def schedule(targets: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """``(round, target)`` in run order: every target once per round, in the given order, for
    ``repeats`` rounds (1-based). Interleaving rather than AM x3 then Tocsin x3 spreads the
    machine's drifts over both targets."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets repeat: {list(targets)}; name each once and set --repeats")
    return [(k, t) for k in range(1, repeats + 1) for t in targets]


def median(values: Iterable[float]) -> float:
    """The median of the non-NaN values (the mean of the middle two for an even count); NaN when none."""
    vs = sorted(v for v in values if v == v)
    if not vs:
        return math.nan
    mid = len(vs) // 2
    return vs[mid] if len(vs) % 2 else (vs[mid - 1] + vs[mid]) / 2


@dataclass(frozen=True)
class Spread:
    """A figure over repeated runs: median, min, max and how many runs had it (NaNs left out)."""

    median: float
    lo: float
    hi: float
    n: int

    @property
    def rel_range(self) -> float:
        """(max - min) / median: the noise band relative to the figure."""
        return (self.hi - self.lo) / self.median if self.n and self.median else math.nan


def spread(values: Iterable[float]) -> Spread:
    vs = [v for v in values if v == v]
    if not vs:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(median(vs), min(vs), max(vs), len(vs))


def ratio(num: Spread, den: Spread) -> float:
    """``num.median / den.median`` (Tocsin over Alertmanager); NaN when either is missing or den is 0."""
    if num.n == 0 or den.n == 0 or not den.median:
        return math.nan
    return num.median / den.median


@dataclass(frozen=True)
class Figure:
    key: str  # in the figures_of mapping
    label: str
    unit: str  # "/s" (higher is better), "ms" (lower is better) or "" (a count)


#: the figures compared across repeated runs, in report order
FIGURES: tuple[Figure, ...] = (
    Figure("steady_sent_per_s", "alerts pushed/s, steady load", "/s"),
    Figure("steady_notified_per_s", "notifications/s, steady load", "/s"),
    Figure("steady_firing_p50", "firing latency p50, steady load", "ms"),
    Figure("steady_firing_p99", "firing latency p99, steady load", "ms"),
    Figure("burst_firing_ingest_per_s", "burst (firing): alerts accepted/s", "/s"),
    Figure("burst_firing_e2e_per_s", "burst (firing): notifications/s end to end", "/s"),
    Figure("burst_resolved_ingest_per_s", "burst (resolved): alerts accepted/s", "/s"),
    Figure("burst_resolved_e2e_per_s", "burst (resolved): notifications/s end to end", "/s"),
    Figure("burst_firing_p50", "firing latency p50, burst", "ms"),
    Figure("burst_firing_p99", "firing latency p99, burst", "ms"),
    Figure("burst_firing_cpu_system", "burst (firing): CPU µs per notification, system under test", "µs"),
    Figure("burst_firing_cpu_all", "burst (firing): CPU µs per notification, with load generator and sink", "µs"),
    Figure("missing", "missing", ""),
    Figure("duplicated", "duplicated", ""),
)


def figures_of(s: Mapping[str, Any]) -> dict[str, float]:
    """The compared figures of one run's summary (:func:`loadtest.report.summary`); latencies in ms."""
    nan = math.nan
    f, b = s.get("firing_latency_s", {}), s.get("burst_firing_latency_s", {})
    out = {
        "steady_sent_per_s": s.get("sent_per_second", nan),
        "steady_notified_per_s": s.get("notifications_per_second_during_load", nan),
        "steady_firing_p50": f.get("p50", nan) * 1000, "steady_firing_p99": f.get("p99", nan) * 1000,
        "burst_firing_p50": b.get("p50", nan) * 1000, "burst_firing_p99": b.get("p99", nan) * 1000,
        "missing": float(s.get("missing", nan)), "duplicated": float(s.get("duplicated", nan)),
    }
    for status in ("firing", "resolved"):
        wave: Mapping[str, Any] = next((w for w in s.get("bursts", []) if w.get("status") == status), {})
        out[f"burst_{status}_ingest_per_s"] = wave.get("ingest_per_s", nan)
        out[f"burst_{status}_e2e_per_s"] = wave.get("e2e_per_s", nan)
        if status == "firing":
            out["burst_firing_cpu_system"] = wave.get("cpu_us_per_notification_system", nan)
            out["burst_firing_cpu_all"] = wave.get("cpu_us_per_notification_all", nan)
    return out


def _fmt(x: float, unit: str) -> str:
    if x != x:
        return "-"
    if unit == "ms":
        return f"{x:,.1f}" if x < 10 else f"{x:,.0f}"
    return f"{x:,.0f}"


def repeated_table(runs: Mapping[str, Sequence[Mapping[str, Any]]], num: str = "tocsin",
                   den: str = "alertmanager") -> list[str]:
    """Markdown rows: per figure, each target's median [min..max] over its runs and the ratio of
    medians ``num / den``. ``runs`` maps a target to its runs' summaries, in run order."""
    per = {t: [figures_of(s) for s in ss] for t, ss in runs.items()}
    targets = [t for t in (den, num) if t in per] + [t for t in per if t not in (den, num)]
    head = "| figure | " + " | ".join(f"{t}: median [min..max] (n)" for t in targets) + " |"
    two = num in per and den in per
    if two:
        head += f" ratio of medians {num}/{den} |"
    lines = [head, "|---" * (1 + len(targets) + two) + "|"]
    for fig in FIGURES:
        sp = {t: spread(r[fig.key] for r in per[t]) for t in targets}
        if all(x.n == 0 for x in sp.values()):
            continue
        unit = f" ({fig.unit})" if fig.unit == "ms" else ""
        cells = [f"{_fmt(x.median, fig.unit)} [{_fmt(x.lo, fig.unit)}..{_fmt(x.hi, fig.unit)}] ({x.n})"
                 for x in sp.values()]
        row = f"| {fig.label}{unit} | " + " | ".join(cells) + " |"
        if two:
            r = ratio(sp[num], sp[den])
            row += (" |" if fig.unit == "" or r != r else f" **{r:.2f}x** |")
        lines.append(row)
    return lines
