"""Small pure statistics of a run: percentiles and per-interval series."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["Summary", "percentile", "rate_series", "summarize", "window_percentiles"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, nearest rank (NaN when empty)."""
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q is a percentage (0..100)")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Summary(dict[str, float]):
    """count, mean, p50, p90, p99, p999, max of a sample (seconds)."""


def summarize(values: Iterable[float]) -> Summary:
    vs = sorted(values)
    s = Summary(count=float(len(vs)))
    s["mean"] = sum(vs) / len(vs) if vs else math.nan
    for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
        s[name] = percentile(vs, q)
    s["max"] = vs[-1] if vs else math.nan
    return s


def rate_series(times: Iterable[float], start: float, end: float, step: float = 1.0) -> list[tuple[float, float]]:
    """Events per second in each ``step``-long interval of ``[start, end)``: ``(interval start
    relative to start, rate)``; times outside the range are ignored."""
    if step <= 0 or end < start:
        raise ValueError("need step > 0 and end >= start")
    n = max(1, math.ceil((end - start) / step))
    counts = [0] * n
    for t in times:
        i = int((t - start) // step)
        if 0 <= i < n:
            counts[i] += 1
    return [(i * step, c / step) for i, c in enumerate(counts)]


def window_percentiles(points: Iterable[tuple[float, float]], start: float, step: float,
                       qs: Sequence[float] = (50.0, 99.0)) -> list[tuple[float, list[float]]]:
    """Per ``step``-long window of ``(time, value)`` points: ``(window start relative to start,
    [percentile of each q])``, for windows holding at least one point, in time order."""
    if step <= 0:
        raise ValueError("step must be > 0")
    windows: dict[int, list[float]] = {}
    for t, v in points:
        windows.setdefault(int((t - start) // step), []).append(v)
    out = []
    for i in sorted(windows):
        vs = sorted(windows[i])
        out.append((i * step, [percentile(vs, q) for q in qs]))
    return out
