"""A push that resolves a firing alert, its endsAt in the past, now or in the future (issue #20):
the rules core announces the resolution at the push, or at the end by its timer."""

from __future__ import annotations

import pytest
from rules_fold import Fold, pa, payloads, push

from stages.rules.core import RulesCore

L = {"alertname": "Repro"}

# (id, startsAt given, endsAt, expected (time, change, starts_at, ends_at) outputs after the push at 3.5)
CASES = [
    ("past", None, 3.0, [(3.5, "resolved", 0.0, 3.0)]),
    ("past-with-starts", 0.0, 3.0, [(3.5, "resolved", 0.0, 3.0)]),
    ("now", None, 3.5, [(3.5, "resolved", 0.0, 3.5)]),
    ("now-with-starts", 0.0, 3.5, [(3.5, "resolved", 0.0, 3.5)]),
    ("future", None, 4.7, [(3.5, "updated", 0.0, 4.7), (4.7, "resolved", 0.0, 4.7)]),
    ("future-with-starts", 0.0, 4.7, [(3.5, "updated", 0.0, 4.7), (4.7, "resolved", 0.0, 4.7)]),
    # no overlap with the stored [0, 300]: as in Alertmanager the push replaces it (still a resolution)
    ("ends-before-the-start", None, -1.0, [(3.5, "resolved", -1.0, -1.0)]),
]


@pytest.mark.parametrize(("starts", "ends", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_resolving_push(starts: float | None, ends: float, expected: list[tuple[float, str, float, float]]) -> None:
    f = Fold(RulesCore(resolve_timeout=300.0))
    (fired,) = payloads(f.step(push(pa(L), at=0.0), 0.0))
    assert (fired.change, fired.alert.starts_at, fired.alert.ends_at) == ("fired", 0.0, 300.0)
    got = [(3.5, p.change, p.alert.starts_at, p.alert.ends_at)
           for p in payloads(f.step(push(pa(L, starts=starts, ends=ends), at=3.5), 3.5))]
    got += [(p.cause.at, p.change, p.alert.starts_at, p.alert.ends_at) for p in payloads(f.advance(600.0))
            if p.change != "resolved" or p.cause.at < 300.0]
    assert got == expected
