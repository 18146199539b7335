"""Properties of the router core over arbitrary interleavings of alert changes (and reloads)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_fold import Fold, change, table

from contracts.labels import fingerprint
from contracts.messages import AlertChange, GroupFlush
from pipeline.foundation.runtime.step import Step
from stages.router.config import RouteTable
from stages.router.core import RouterCore
from stages.router.groups import group_alerts
from stages.router.state import GroupHead, StateValue

CONFIG_A = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  routes:
    - matchers: [team="db"]
      receiver: db
      group_wait: 10s
      group_interval: 1m
      continue: true
    - matchers: ['team=~"db|web"']
      receiver: any
      group_by: ['...']
      group_wait: 0s
      group_interval: 2m
receivers: [{name: default}, {name: db}, {name: any}]
"""

# Another tree over the same alerts: a route added in front, group_by and a receiver changed.
CONFIG_B = """
route:
  receiver: default
  group_by: [alertname, instance]
  group_wait: 20s
  group_interval: 3m
  routes:
    - matchers: [instance="i1"]
      receiver: first
      group_wait: 5s
      group_interval: 1m
    - matchers: [team="db"]
      receiver: db2
      continue: true
receivers: [{name: default}, {name: first}, {name: db2}]
"""

LABELS = [
    {"alertname": name, "instance": inst, **({"team": team} if team else {})}
    for name in ("A", "B") for inst, team in (("i1", "db"), ("i2", "web"), ("i3", ""))
]

Op = tuple[float, int, str]
op_st = st.tuples(
    st.sampled_from([0.0, 0.5, 3.0, 10.0, 29.0, 30.0, 60.0, 125.0, 300.0, 900.0]) | st.floats(0, 700),
    st.integers(0, len(LABELS) - 1),
    st.sampled_from(["fresh", "old", "resolve", "annotate"]),
)


@dataclass
class Log:
    """Every call the fold made to the core, in order: (kind, now, step)."""

    calls: list[tuple[str, float, Step[StateValue]]] = field(default_factory=list)


class Recorder:
    """A RouterCore that remembers what each step and fire returned."""

    def __init__(self, core: RouterCore, log: Log) -> None:
        self.core, self.log, self.value_type = core, log, core.value_type

    def step(self, state: Mapping[str, StateValue], inp: AlertChange, now: float) -> Step[StateValue]:
        result = self.core.step(state, inp, now)
        self.log.calls.append(("step", now, result))
        return result

    def fire(self, state: Mapping[str, StateValue], key: str, now: float) -> Step[StateValue]:
        result = self.core.fire(state, key, now)
        self.log.calls.append(("fire", now, result))
        return result

    def deadline(self, key: str, value: StateValue) -> float | None:
        return self.core.deadline(key, value)


def _change(op: Op, t: float, last_start: dict[int, float]) -> AlertChange:
    _, idx, kind = op
    labels = LABELS[idx]
    if kind == "fresh" or idx not in last_start:
        last_start[idx] = t if kind != "old" else t - 1000.0
    elif kind == "old":
        last_start[idx] = t - 1000.0
    ends = t if kind == "resolve" else None
    notes = {"v": repr(t)} if kind == "annotate" else {}
    return change(labels, t, starts_at=last_start[idx], ends_at=ends, annotations=notes)


def _drive(ops: list[Op], tables: list[RouteTable], reloads: set[int]) -> tuple[Fold, Log, list[Any]]:
    """Run ops through a fold; before op i in ``reloads`` switch to the other table.

    Returns the fold, the call log and, per op, (time, change, table used, index of its call in the log).
    """
    log = Log()
    current = 0
    fold = Fold(Recorder(RouterCore(tables[0]), log))  # type: ignore[arg-type]
    t = 0.0
    last_start: dict[int, float] = {}
    applied = []
    for i, op in enumerate(ops):
        t += op[0]
        fold.advance(t)
        if i in reloads:
            current = 1 - current
            fold.reload(Recorder(RouterCore(tables[current], since=t), log), roundtrip=i % 2 == 0)  # type: ignore[arg-type]
            log.calls.append(("reload", t, Step()))
        ch = _change(op, t, last_start)
        fold.step(ch)
        applied.append((t, ch, tables[current], len(log.calls) - 1))
    fold.advance(t + 5000.0)
    return fold, log, applied


def _flushes(log: Log) -> list[tuple[GroupFlush, int]]:
    """Flushes with the index of the call that made them."""
    return [(o.payload, i) for i, (_, _, s) in enumerate(log.calls) for o in s.outputs
            if isinstance(o.payload, GroupFlush)]


def _check_common(log: Log) -> None:
    by_group: dict[str, list[GroupFlush]] = defaultdict(list)
    for f, _ in _flushes(log):
        by_group[f.group_id].append(f)
        for a in f.alerts:  # firing alerts go out without an end, resolved ones with theirs
            assert a.ends_at is None or a.ends_at <= f.flushed_at
    for fs in by_group.values():
        assert [f.flush_seq for f in fs] == list(range(1, len(fs) + 1))
        assert all(a.flushed_at <= b.flushed_at for a, b in itertools.pairwise(fs))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=40))
def test_timers_follow_alertmanager(ops: list[Op]) -> None:
    routes = table(CONFIG_A)
    fold, log, applied = _drive(ops, [routes], set())
    _check_common(log)

    # Incarnations of each group from the heads the calls created and deleted (a retired
    # group's head is deleted or replaced by its RetiredMark).
    present: set[str] = set()
    incarnations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for index, (kind, now, step) in enumerate(log.calls):
        for key, value in step.changes.items():
            if key.count("/") != 2:
                continue
            gid = key.rsplit("/", 1)[1]
            if isinstance(value, GroupHead) and key not in present:
                present.add(key)
                assert kind == "step"
                incarnations[gid].append({"created": now, "index": index, "flushes": [], "ended": None})
            elif not isinstance(value, GroupHead) and key in present:
                present.discard(key)
                incarnations[gid][-1]["ended"] = now
        for out in step.outputs:
            f = out.payload
            assert isinstance(f, GroupFlush)
            inc = incarnations[f.group_id][-1]
            assert inc["ended"] is None or inc["ended"] == f.flushed_at
            inc["flushes"].append((f, index))

    # Inserts per group: (call index, time, old?, change); old: starts_at + group_wait < now.
    inserts: dict[str, list[tuple[int, float, bool, AlertChange]]] = defaultdict(list)
    for t, ch, tbl, index in applied:
        for target in tbl.targets("o1", ch.alert.labels):
            inserts[target.group_id].append((index, t, ch.alert.starts_at + target.route.group_wait < t, ch))

    for gid, incs in incarnations.items():
        route = next(tr.route for _, ch, tbl, _ in applied for tr in tbl.targets("o1", ch.alert.labels)
                     if tr.group_id == gid)
        for n, inc in enumerate(incs):
            until = incs[n + 1]["index"] if n + 1 < len(incs) else len(log.calls)
            olds = [t for index, t, old, _ in inserts[gid] if old and inc["index"] <= index < until]
            fs = [f for f, _ in inc["flushes"]]
            assert fs, "every group flushes at least once"
            expect_first = min([inc["created"] + route.group_wait, *olds])
            assert fs[0].flushed_at == expect_first
            # then on the group_interval grid, and only at a tick after something happened to
            # the group (an alert inserted, or an alert's end passed): quiet groups do not flush
            grid = route.group_interval
            for (a, ia), (b, ib) in itertools.pairwise(inc["flushes"]):
                ticks = (b.flushed_at - a.flushed_at) / grid
                assert ticks >= 1 - 1e-9 and ticks == pytest.approx(round(ticks)), (a.flushed_at, b.flushed_at)
                inserted = [t for index, t, _, _ in inserts[gid] if ia < index <= ib]
                ended = [x.ends_at for x in a.alerts if x.ends_at is not None and a.flushed_at < x.ends_at]
                assert inserted or ended or b.alerts == [], "a quiet group flushed"
                if inserted:  # not before the tick at or after the first insert
                    assert b.flushed_at >= min(inserted) - 1e-9 or ended
            # a group ends only with a flush in which every alert was resolved
            assert inc["ended"] is not None or n == len(incs) - 1
            if inc["ended"] is not None:
                assert all(a.ends_at is not None for a in fs[-1].alerts)

    # Resolved alerts leave after the flush that carried them, unless changed again.
    for gid in incarnations:
        fs = [f for inc in incarnations[gid] for f in inc["flushes"]]
        for (a, ia), (b, ib) in itertools.pairwise(fs):
            again = {ch.alert.fingerprint for index, _, _, ch in inserts[gid] if ia < index < ib}
            for alert in a.alerts:
                if alert.ends_at is not None:
                    later = {x.fingerprint for x in b.alerts}
                    assert alert.fingerprint not in later or alert.fingerprint in again

    _check_liveness(fold, log, applied, routes)


def _check_liveness(fold: Fold, log: Log, applied: list[Any], final: RouteTable) -> None:
    """The last version of every alert reaches a flush of each group it belongs to (finally)."""
    last: dict[str, tuple[float, AlertChange]] = {}
    for t, ch, _, _ in applied:
        last[ch.alert.fingerprint] = (t, ch)
    flushed = [f for f, _ in _flushes(log)]
    for fp, (t, ch) in last.items():
        for target in final.targets("o1", ch.alert.labels):
            assert any(
                f.group_id == target.group_id and f.flushed_at >= t
                and any(a.fingerprint == fp and a.updated_at == ch.alert.updated_at for a in f.alerts)
                for f in flushed
            ), f"{ch.alert.labels} last changed at {t} never flushed in {target.group_key}"
    _check_leftovers(fold)


def _check_leftovers(fold: Fold) -> None:
    """Long after the last input only groups with firing alerts are left, each with a timer."""
    for key, head in fold.state.items():
        if isinstance(head, GroupHead):
            alerts = group_alerts(fold.state, key.rsplit("/", 1)[1], head)
            assert alerts and any(a.ends_at is None for a in alerts.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=40), reloads=st.sets(st.integers(0, 39), max_size=4))
def test_reloads_keep_counts_and_lose_nothing(ops: list[Op], reloads: set[int]) -> None:
    tables = [table(CONFIG_A), table(CONFIG_B)]
    fold, log, applied = _drive(ops, tables, reloads)
    _check_common(log)
    # Every flushed alert belongs to the flushed group under the configuration active then.
    current = 0
    for kind, _, step in log.calls:
        if kind == "reload":
            current = 1 - current
        for out in step.outputs:
            f = out.payload
            assert isinstance(f, GroupFlush)
            if not f.alerts:  # a group whose route is gone says goodbye under its old route
                continue
            route = tables[current].route("o1", f.route_id)
            assert route is not None and route.receiver == f.receiver
            for a in f.alerts:
                assert f.group_id in {t.group_id for t in tables[current].targets("o1", a.labels)}
    final = tables[sum(1 for i in reloads if i < len(ops)) % 2]
    # Firing alerts must reach their groups under the final configuration.
    last: dict[str, tuple[float, AlertChange]] = {}
    for t, ch, _, _ in applied:
        last[ch.alert.fingerprint] = (t, ch)
    flushed = [f for f, _ in _flushes(log)]
    for fp, (t, ch) in last.items():
        if ch.alert.ends_at is not None:
            continue
        for target in final.targets("o1", ch.alert.labels):
            assert any(f.group_id == target.group_id and f.flushed_at >= t and
                       any(a.fingerprint == fp and a.updated_at == ch.alert.updated_at for a in f.alerts)
                       for f in flushed), f"{ch.alert.labels} lost in {target.group_key}"
    _check_leftovers(fold)


def test_labels_pool_is_what_the_properties_assume() -> None:
    assert len({fingerprint(ls) for ls in LABELS}) == len(LABELS)
    routes = table(CONFIG_A)
    assert {len(routes.targets("o1", ls)) for ls in LABELS} == {1, 2}
