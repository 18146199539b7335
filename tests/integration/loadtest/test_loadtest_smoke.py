"""The load test itself, tiny: 10 s of fleet events through `tocsin up`, every notification
accounted for (0 missing, 0 duplicated), and a report with its plots."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from loadtest.run import SCENARIOS, RunConfig, run

pytestmark = pytest.mark.integration


async def test_smoke_run_has_nothing_missing_or_duplicated(tmp_path: Path) -> None:
    cfg = RunConfig(**{**SCENARIOS["smoke"], "name": "smoke", "out": str(tmp_path / "results"),
                       "work": str(tmp_path / "work")})
    started = time.monotonic()
    ok, report = await run(cfg, "pytest smoke")
    assert time.monotonic() - started < 60
    summary = json.loads((report.parent / "summary.json").read_text())
    (target,) = summary["targets"]
    assert ok, report.read_text()
    assert target["expected"] > 50 and target["delivered"] == target["expected"]
    assert (target["missing"], target["duplicated"], target["unexpected"], target["label_mismatch"]) == (0, 0, 0, 0)
    assert target["sent"] == 1000 and target["firing_latency_s"]["count"] > 0
    for png in ("throughput.png", "latency.png", "latency_cdf.png", "cpu.png"):
        assert (report.parent / png).stat().st_size > 1000, png
    assert "Verdict: PASS" in report.read_text()
