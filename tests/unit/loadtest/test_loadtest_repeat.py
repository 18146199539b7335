"""Repeated, interleaved runs: the schedule and the median / range / ratio arithmetic."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from loadtest.oracle import Spacing, Verdict
from loadtest.probes import Samples
from loadtest.repeat import FIGURES, Spread, figures_of, median, ratio, repeated_table, schedule, spread
from loadtest.report import BurstResult, TargetResult, write_report
from loadtest.run import _configs, _parser

nan = math.nan


@pytest.mark.parametrize(("targets", "repeats", "want"), [
    (("alertmanager", "tocsin"), 3, [(1, "alertmanager"), (1, "tocsin"), (2, "alertmanager"), (2, "tocsin"),
                                     (3, "alertmanager"), (3, "tocsin")]),
    (("tocsin", "alertmanager"), 2, [(1, "tocsin"), (1, "alertmanager"), (2, "tocsin"), (2, "alertmanager")]),
    (("tocsin",), 3, [(1, "tocsin"), (2, "tocsin"), (3, "tocsin")]),
    (("alertmanager", "tocsin"), 1, [(1, "alertmanager"), (1, "tocsin")]),
    ((), 3, []),
], ids=["am-first-x3", "tocsin-first-x2", "one-target", "once", "none"])
def test_schedule_interleaves_targets_round_by_round(targets: tuple[str, ...], repeats: int,
                                                     want: list[tuple[int, str]]) -> None:
    assert schedule(targets, repeats) == want


@pytest.mark.parametrize(("targets", "repeats"), [(("tocsin",), 0), (("tocsin", "tocsin"), 2)],
                         ids=["zero-repeats", "duplicate-target"])
def test_schedule_refuses_nonsense(targets: tuple[str, ...], repeats: int) -> None:
    with pytest.raises(ValueError):
        schedule(targets, repeats)


@pytest.mark.parametrize(("values", "want"), [
    ([3.0], 3.0),
    ([5149.0, 1928.0, 3000.0], 3000.0),
    ([4.0, 1.0, 3.0, 2.0], 2.5),
    ([1.0, nan, 3.0], 2.0),
    ([nan], nan),
    ([], nan),
], ids=["one", "odd", "even", "nan-dropped", "only-nan", "empty"])
def test_median(values: list[float], want: float) -> None:
    got = median(values)
    assert (math.isnan(got) and math.isnan(want)) or got == want


@pytest.mark.parametrize(("values", "want"), [
    ([1928.0, 5149.0, 3000.0], Spread(3000.0, 1928.0, 5149.0, 3)),
    ([2.0, nan, 2.0], Spread(2.0, 2.0, 2.0, 2)),
    ([0.0, 0.0, 0.0], Spread(0.0, 0.0, 0.0, 3)),
], ids=["noisy", "nan-dropped", "zeros"])
def test_spread(values: list[float], want: Spread) -> None:
    assert spread(values) == want


def test_spread_of_nothing_is_nan_with_no_runs() -> None:
    s = spread([nan, nan])
    assert s.n == 0 and math.isnan(s.median) and math.isnan(s.lo) and math.isnan(s.hi)
    assert math.isnan(s.rel_range)


@pytest.mark.parametrize(("values", "want"), [([90.0, 100.0, 110.0], 0.2), ([5.0, 5.0], 0.0)],
                         ids=["band", "none"])
def test_relative_range(values: list[float], want: float) -> None:
    assert spread(values).rel_range == pytest.approx(want)


@pytest.mark.parametrize(("num", "den", "want"), [
    ([2000.0, 2500.0, 2200.0], [4000.0, 5000.0, 2000.0], 0.55),  # of medians, not of means or of pairs
    ([1.0, 1.0, 1.0], [2.0, 2.0], 0.5),
    ([1.0], [0.0], nan),
    ([1.0], [nan], nan),
    ([nan], [1.0], nan),
], ids=["medians", "uneven-counts", "zero-den", "no-den", "no-num"])
def test_ratio_of_medians(num: list[float], den: list[float], want: float) -> None:
    got = ratio(spread(num), spread(den))
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def _summary(sent: float, e2e: float, p99: float, missing: int = 0) -> dict[str, Any]:
    return {"sent_per_second": sent, "notifications_per_second_during_load": sent / 2,
            "firing_latency_s": {"p50": p99 / 10, "p99": p99}, "burst_firing_latency_s": {},
            "missing": missing, "duplicated": 0,
            "bursts": [{"status": "firing", "ingest_per_s": 2 * e2e, "e2e_per_s": e2e},
                       {"status": "resolved", "ingest_per_s": 3 * e2e, "e2e_per_s": e2e / 2}]}


def test_figures_of_a_summary() -> None:
    f = figures_of(_summary(300.0, 2000.0, 0.05, missing=2))
    assert set(f) == {fig.key for fig in FIGURES}
    assert f["steady_firing_p99"] == pytest.approx(50.0) and f["steady_firing_p50"] == pytest.approx(5.0)
    assert (f["burst_firing_e2e_per_s"], f["burst_resolved_ingest_per_s"], f["missing"]) == (2000.0, 6000.0, 2.0)
    assert math.isnan(f["burst_firing_p99"])


def test_repeated_table_shows_median_range_and_ratio() -> None:
    runs = {"alertmanager": [_summary(300, 4000, 0.002), _summary(300, 2000, 0.003), _summary(300, 5000, 0.001)],
            "tocsin": [_summary(300, 2200, 0.05), _summary(300, 2000, 0.04), _summary(300, 2500, 0.06)]}
    rows = {r.split(" | ")[0].lstrip("| "): r for r in repeated_table(runs)}
    e2e = rows["burst (firing): notifications/s end to end"]
    assert "4,000 [2,000..5,000] (3)" in e2e and "2,200 [2,000..2,500] (3)" in e2e and "**0.55x**" in e2e
    assert "**25.00x**" in rows["firing latency p99, steady load (ms)"]
    assert "firing latency p50, burst (ms)" not in rows  # no run had it
    assert rows["missing"].endswith(" |") and "x**" not in rows["missing"]  # counts get no ratio


@pytest.mark.parametrize(("argv", "want"), [
    (["--scenario", "api-vs-am"], ("chained", 50_000, 3)),
    (["--scenario", "api-vs-am", "--short"], ("chained", 2_000, 1)),
    (["--scenario", "api-vs-am", "--short", "--repeats", "3"], ("chained", 2_000, 3)),
    (["--scenario", "api-vs-am", "--deployment", "separate", "--burst", "60000"], ("separate", 60_000, 3)),
], ids=["default", "short", "short-repeated", "told"])
def test_api_vs_am_settings(argv: list[str], want: tuple[str, int, int]) -> None:
    (cfg,) = _configs(_parser().parse_args(argv))
    assert (cfg.deployment, cfg.burst, cfg.repeats) == want
    assert cfg.targets == ("alertmanager", "tocsin")


def _result(target: str, e2e: float, run_no: int) -> TargetResult:
    t0 = 1000.0
    verdict = Verdict(expected=10, delivered=10,
                      latency={"firing": [(t0 + i + 0.01, 0.01) for i in range(10)], "resolved": []})
    return TargetResult(target=target, label=f"{target}, run {run_no}", mode="api", t0=t0, load_end=t0 + 10,
                        end=t0 + 20, generated=10, sent_times=[t0 + i for i in range(10)],
                        arrivals=[t0 + i + 0.01 for i in range(10)], verdict=verdict,
                        spacing=Spacing(0, math.inf, 0, 1.0), samples=Samples(),
                        bursts=[BurstResult(n=100, status="firing", push_seconds=0.05, e2e_seconds=100 / e2e,
                                            delivered=100)])


@pytest.mark.parametrize(("runs", "repeated"), [(1, False), (3, True)], ids=["once", "thrice"])
def test_report_shows_repeated_runs(tmp_path: Path, runs: int, repeated: bool) -> None:
    results = [_result(t, e2e, k) for k in range(1, runs + 1) for t, e2e in (("alertmanager", 4000.0 + k * 500),
                                                                          ("tocsin", 2000.0))]
    report = write_report(tmp_path, title="t", command="cmd", params={}, machine={}, results=results)
    text = report.read_text()
    assert ("## Repeated runs" in text) == repeated == (tmp_path / "repeated.md").exists()
    assert ("## Side by side" in text) != repeated
    if repeated:  # AM 4,500 / 5,000 / 5,500: median 5,000; Tocsin 2,000
        assert "5,000 [4,500..5,500] (3)" in text and "**0.40x**" in text
