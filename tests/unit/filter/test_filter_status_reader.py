"""``StatusReader`` and ``group_muting`` (the groups read of 10,000 groups) answer what the
one-alert-at-a-time definitions answer: silences of the organisation active at ``now`` and
matching, the first inhibiting rule's sources, the time intervals muting the alert's groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import pytest
from filter_fold import Fold, alert, change, core, flush, matcher, silence, upsert
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import Alert
from stages.filter.inhibit import inhibited_by
from stages.filter.silences import silenced_by
from stages.filter.state import SilenceValue, StateValue
from stages.filter.views import (
    FilterConfig,
    StatusReader,
    alert_statuses,
    group_muted_by,
    group_muting,
    group_mutings,
    group_record_key,
)

CRIT = {"alertname": "DiskFull", "severity": "critical", "cluster": "a"}
WARN = {"alertname": "DiskLow", "severity": "warning", "cluster": "a"}
OTHER = {"alertname": "Other", "env": "dev"}
PROD = {"alertname": "Other", "env": "prod"}
ALERTS = [alert(CRIT), alert(WARN), alert(OTHER), alert(PROD), alert({"alertname": "Lone"})]
GROUP_KEYS = ["{}:{weekend}", "{}:{weekday}", "{}:{unknown}"]
SATURDAY = 1704542400.0


def _fold() -> Fold:
    f = Fold(core())
    f.step(change("fired", alert(CRIT), 1.0))
    far = 2e9
    f.step(upsert(silence("s1", [matcher("env", "prod")], 1.0, far), 1.0))
    f.step(upsert(silence("s0", [matcher("env", "pro.*", regex=True)], 1.0, far), 1.0))
    f.step(upsert(silence("s9", [matcher("env", "prod")], 500.0, far), 1.0))  # pending until 500
    f.step(upsert(silence("s5", [matcher("alertname", "Other")], 1.0, 300.0), 1.0))  # expired at 300
    f.step(flush([alert(OTHER)], SATURDAY, group_key=GROUP_KEYS[0], mute=["weekends"]))
    f.step(flush([alert(PROD)], SATURDAY, group_key=GROUP_KEYS[1], group_id="g2"))
    return f


FOLD = _fold()


def _reference(state: Mapping[str, StateValue], config: FilterConfig, org: str, a: Alert, now: float,
               keys: Sequence[str]) -> tuple[str, list[str], list[str], list[str]]:
    """One alert's status from the definitions, every silence of the state looked at."""
    silences = [v.silence for k, v in state.items() if k.startswith(f"silence/{org}/") and isinstance(v, SilenceValue)]
    silenced = silenced_by(silences, a.labels, now)
    inhibited = inhibited_by(state, config, org, a.labels, now)
    muted = sorted({n for gk in keys for n in group_muted_by(state, org, gk)})
    return ("suppressed" if silenced or inhibited or muted else "active"), silenced, inhibited, muted


def _raw_groups(state: Mapping[str, StateValue]) -> list[tuple[str, bytes]]:
    return [(k, msgspec.json.encode(v)) for k, v in state.items() if k.startswith("group/")]


def test_group_muting_reads_what_group_muted_by_reads() -> None:
    raw = _raw_groups(FOLD.state)
    assert len(raw) == 2
    mutings = group_mutings(raw)
    assert {gk: mutings.get(group_record_key("o1", gk), []) for gk in GROUP_KEYS} == {
        gk: group_muted_by(FOLD.state, "o1", gk) for gk in GROUP_KEYS} == {
        GROUP_KEYS[0]: ["weekends"], GROUP_KEYS[1]: [], GROUP_KEYS[2]: []}
    assert all(group_muting(data) == mutings[k] for k, data in raw)


@pytest.mark.parametrize("with_mutings", [False, True], ids=["state", "mutings"])
@settings(max_examples=60, deadline=None)
@given(now=st.sampled_from([0.5, 10.0, 299.0, 300.0, 499.0, 500.0, 2e9 + 1]), org=st.sampled_from(["o1", "o2"]),
       picks=st.lists(st.tuples(st.integers(0, len(ALERTS) - 1),
                                st.lists(st.sampled_from(GROUP_KEYS), max_size=3)), max_size=8))
def test_status_reader_answers_the_reference(with_mutings: bool, now: float, org: str,
                                             picks: list[tuple[int, list[str]]]) -> None:
    state, config = FOLD.state, FOLD.core.config
    mutings = group_mutings(_raw_groups(state)) if with_mutings else None
    reader = StatusReader(state, config, org, now, mutings)
    for i, keys in picks:
        got = reader.status(ALERTS[i], keys)
        assert (got.state, got.silenced_by, got.inhibited_by, got.muted_by) == _reference(
            state, config, org, ALERTS[i], now, keys)
        assert got.fingerprint == ALERTS[i].fingerprint


def test_alert_statuses_is_the_reader_over_a_list() -> None:
    keys = {alert(OTHER).fingerprint: [GROUP_KEYS[0]]}
    statuses = alert_statuses(FOLD.state, FOLD.core.config, "o1", ALERTS, 10.0, keys)
    reader = StatusReader(FOLD.state, FOLD.core.config, "o1", 10.0)
    assert statuses == [reader.status(a, keys.get(a.fingerprint, ())) for a in ALERTS]
    assert [(s.silenced_by, s.muted_by) for s in statuses][2:4] == [([], ["weekends"]), (["s0", "s1"], [])]
