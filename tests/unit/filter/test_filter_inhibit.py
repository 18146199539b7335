"""Inhibition through the filter core: timelines of source changes and target flushes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from filter_fold import Fold, alert, change, config, core, flush, fp, sent_fps

from stages.filter.core import FilterCore
from stages.filter.inhibit import inhibited_by
from stages.filter.state import FiringAlert, InhibitSources

CRIT_A = {"alertname": "DiskFull", "severity": "critical", "cluster": "a"}
CRIT_B = {"alertname": "DiskFull", "severity": "critical", "cluster": "b"}
CRIT_NONE = {"alertname": "DiskFull", "severity": "critical"}
WARN_A = {"alertname": "DiskLow", "severity": "warning", "cluster": "a"}
WARN_A2 = {"alertname": "DiskSlow", "severity": "warning", "cluster": "a"}
WARN_NONE = {"alertname": "DiskLow", "severity": "warning"}
NODE_DOWN_1 = {"alertname": "NodeDown", "node": "n1"}
APP_DOWN_1 = {"alertname": "AppDown", "node": "n1"}
APP_DOWN_2 = {"alertname": "AppDown", "node": "n2"}
# Rule 3 (source alertname="Src", target severity="page", no equal labels):
SRC_PAGE_1 = {"alertname": "Src", "severity": "page", "id": "1"}  # both sides
SRC_PAGE_2 = {"alertname": "Src", "severity": "page", "id": "2"}  # both sides
SRC_INFO = {"alertname": "Src", "severity": "info"}  # source side only

Event = tuple[Any, ...]


def run(events: list[Event]) -> list[list[list[str]]]:
    """Replay ("fire"|"resolve", labels, at[, ends]) and ("flush", [labels...], at[, org]) events;
    return the fingerprints sent at each flush."""
    f = Fold(core())
    results = []
    seq = 0
    for ev in events:
        if ev[0] in ("fire", "resolve"):
            kind, labels, at, *rest = ev
            ends = rest[0] if rest else (at if kind == "resolve" else None)
            org = rest[1] if len(rest) > 1 else "o1"
            f.step(change("fired" if kind == "fire" else "resolved", alert(labels, ends=ends, org=org), at))
        else:
            _, alerts, at, *rest = ev
            seq += 1
            org = rest[0] if rest else "o1"
            results.append(sent_fps(f.sends(flush([alert(lb, org=org) for lb in alerts], at, seq=seq, org=org))))
    return results


CASES: list[tuple[str, list[Event], list[list[list[str]]]]] = [
    ("no-source-notifies", [("flush", [WARN_A], 10.0)], [[[fp(WARN_A)]]]),
    ("source-in-same-cluster-mutes", [("fire", CRIT_A, 0.0), ("flush", [WARN_A], 10.0)], [[]]),
    ("source-in-other-cluster-does-not-mute", [("fire", CRIT_B, 0.0), ("flush", [WARN_A], 10.0)],
     [[[fp(WARN_A)]]]),
    ("source-fires-later-mutes-new-and-old-targets",
     [("flush", [WARN_A], 0.0), ("fire", CRIT_A, 5.0), ("flush", [WARN_A, WARN_A2], 300.0)],
     [[[fp(WARN_A)]], []]),
    ("source-resolves-later-target-notified-at-next-flush",
     [("fire", CRIT_A, 0.0), ("flush", [WARN_A], 10.0), ("resolve", CRIT_A, 20.0), ("flush", [WARN_A], 310.0)],
     [[], [[fp(WARN_A)]]]),
    ("source-ends-at-passed-counts-as-resolved",
     [("fire", CRIT_A, 0.0, 15.0), ("flush", [WARN_A], 10.0), ("flush", [WARN_A], 20.0)],
     [[], [[fp(WARN_A)]]]),
    ("equal-label-missing-on-both-sides-is-equal", [("fire", CRIT_NONE, 0.0), ("flush", [WARN_NONE], 10.0)], [[]]),
    ("equal-label-missing-on-source-only-differs", [("fire", CRIT_NONE, 0.0), ("flush", [WARN_A], 10.0)],
     [[[fp(WARN_A)]]]),
    ("equal-label-missing-on-target-only-differs", [("fire", CRIT_A, 0.0), ("flush", [WARN_NONE], 10.0)],
     [[[fp(WARN_NONE)]]]),
    ("legacy-match-and-match-re-forms",
     [("fire", NODE_DOWN_1, 0.0), ("flush", [APP_DOWN_1, APP_DOWN_2], 10.0)], [[[fp(APP_DOWN_2)]]]),
    ("two-sided-alerts-do-not-inhibit-each-other",
     [("fire", SRC_PAGE_1, 0.0), ("fire", SRC_PAGE_2, 0.0), ("flush", [SRC_PAGE_1, SRC_PAGE_2], 10.0)],
     [[[fp(SRC_PAGE_1), fp(SRC_PAGE_2)]]]),
    ("two-sided-alert-is-muted-by-one-sided-source",
     [("fire", SRC_PAGE_1, 0.0), ("fire", SRC_INFO, 0.0), ("flush", [SRC_PAGE_1], 10.0)], [[]]),
    ("source-of-another-org-does-not-mute",
     [("fire", CRIT_A, 0.0, None, "o2"), ("flush", [WARN_A], 10.0)], [[[fp(WARN_A)]]]),
]


@pytest.mark.parametrize(("events", "expected"), [(e, x) for _, e, x in CASES], ids=[c[0] for c in CASES])
def test_inhibition_timeline(events: list[Event], expected: list[list[list[str]]]) -> None:
    assert run(events) == expected


def test_resolved_target_resolution_is_muted_while_source_fires() -> None:
    f = Fold(core())
    assert sent_fps(f.sends(flush([alert(WARN_A)], 0.0))) == [[fp(WARN_A)]]
    f.step(change("fired", alert(CRIT_A), 5.0))
    # The warning resolves while the critical fires: Alertmanager mutes the resolution too.
    assert f.sends(flush([alert(WARN_A, ends=200.0)], 300.0, seq=2)) == []


def test_index_holds_only_sources_and_forgets_them() -> None:
    f = Fold(core())
    f.step(change("fired", alert(WARN_A), 0.0))
    assert not [k for k in f.state if k.startswith("inhibit/")]
    f.step(change("fired", alert(CRIT_A, ends=500.0), 1.0))
    buckets = {k: v for k, v in f.state.items() if k.startswith("inhibit/o1/")}
    assert len(buckets) == 1
    (bucket,) = buckets.values()
    assert isinstance(bucket, InhibitSources) and list(bucket.sources) == [fp(CRIT_A)]
    # Every firing alert is remembered (for re-indexing and alert acknowledgements).
    assert isinstance(f.state[f"firing/o1/{fp(WARN_A)}"], FiringAlert)
    f.step(change("resolved", alert(CRIT_A, ends=100.0), 100.0))
    assert not [k for k in f.state if k.startswith("inhibit/")]
    assert f"firing/o1/{fp(CRIT_A)}" not in f.state


def test_source_timer_drops_ended_sources() -> None:
    f = Fold(core())
    f.step(change("fired", alert(CRIT_A, ends=50.0), 0.0))
    assert [k for k in f.state if k.startswith("inhibit/")]
    f.advance(50.0)
    assert not [k for k in f.state if k.startswith("inhibit/")]


def test_updated_source_extends_its_end() -> None:
    f = Fold(core())
    f.step(change("fired", alert(CRIT_A, ends=50.0), 0.0))
    f.step(change("updated", alert(CRIT_A, ends=400.0), 40.0))
    assert f.sends(flush([alert(WARN_A)], 100.0)) == []


def _state_with_sources(sources: list[Mapping[str, str]]) -> tuple[FilterCore, dict[str, Any]]:
    c = core()
    f = Fold(c)
    for labels in sources:
        f.step(change("fired", alert(labels), 0.0))
    return c, f.state


def test_inhibited_by_names_the_sources() -> None:
    c, state = _state_with_sources([CRIT_A, CRIT_B])
    assert inhibited_by(state, c.config, "o1", WARN_A, 1.0) == [fp(CRIT_A)]
    assert inhibited_by(state, c.config, "o1", {"severity": "info"}, 1.0) == []


def test_reindex_after_rule_change() -> None:
    # Sources indexed under no rule (empty config) are found once the core with rules re-indexes.
    bare = Fold(FilterCore())
    bare.step(change("fired", alert(CRIT_A), 0.0))
    assert not [k for k in bare.state if k.startswith("inhibit/")]
    ruled = FilterCore(config())
    state = dict(bare.state)
    state["inhibit/o1/stale-rule/x"] = InhibitSources(sources={})
    for st in ruled.reindex(state, max_changes=1):
        assert len(st.changes) <= 1
        for k, v in st.changes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
    assert "inhibit/o1/stale-rule/x" not in state
    assert inhibited_by(state, ruled.config, "o1", WARN_A, 1.0) == [fp(CRIT_A)]
    assert ruled.reindex(state) == []  # idempotent
