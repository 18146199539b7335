"""Aggregation group timelines through the router core, in virtual time (router_fold.Fold)."""

from __future__ import annotations

import msgspec
import pytest
from router_fold import Fold, change, flushes, heads, table

from contracts.labels import fingerprint
from contracts.messages import Event, GroupFlush
from pipeline.foundation.runtime.step import Reject
from stages.router.config import group_id_of
from stages.router.core import RouterCore
from stages.router.groups import groups_view
from stages.router.state import INLINE, AlertShard, GroupHead, RetiredMark, StateValue

CONFIG = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: [team="db"]
      receiver: db
      group_wait: 10s
      group_interval: 1m
      mute_time_intervals: [nights]
      active_time_intervals: [office]
    - matchers: [team="web"]
      receiver: web
      continue: true
    - matchers: [team="web"]
      receiver: web-audit
      group_by: [alertname, instance]
      group_wait: 1m
time_intervals:
  - name: nights
    time_intervals: [{times: [{start_time: "00:00", end_time: "06:00"}]}]
  - name: office
    time_intervals: [{weekdays: ["monday:friday"]}]
receivers: [{name: default}, {name: db}, {name: web}, {name: web-audit}]
"""

A = {"alertname": "A", "instance": "i1"}
A2 = {"alertname": "A", "instance": "i2"}
A3 = {"alertname": "A", "instance": "i3"}
DB = {"alertname": "X", "team": "db"}


def new_fold(config: str = CONFIG, **kw: float) -> Fold:
    return Fold(RouterCore(table(config), **kw))


def times(fs: list[GroupFlush]) -> list[float]:
    return [f.flushed_at for f in fs]


def members(f: GroupFlush) -> list[str]:
    return [a.labels["instance"] for a in f.alerts]


def gid(labels: dict[str, str], receiver: str = "default", org: str = "o1", key: str = "") -> str:
    return group_id_of(org, receiver, key or f'{{}}:{{alertname="{labels["alertname"]}"}}')


def test_first_flush_after_group_wait_then_only_ticks_with_news() -> None:
    fold = new_fold()
    assert fold.step(change(A, 0.0)) == []
    assert fold.advance(29.999) == []
    fs = flushes(fold.advance(700.0))
    assert times(fs) == [30.0]  # then quiet: nothing changed, no timer (the filter ticks it)
    assert fold.core.deadline(f"group/o1/{gid(A)}", fold.state[f"group/o1/{gid(A)}"]) is None
    fold.step(change(A2, 700.0))  # wakes it for its next tick on the grid 30 + k * 300
    assert fold.advance(929.0) == []
    fs += flushes(fold.advance(2000.0))
    assert times(fs) == [30.0, 930.0]
    assert [f.flush_seq for f in fs] == [1, 2]
    assert [members(f) for f in fs] == [["i1"], ["i1", "i2"]]


@pytest.mark.parametrize(("starts_at", "first"), [
    (-100.0, 0.0),
    (-30.001, 0.0),
    (-30.0, 30.0),  # Alertmanager: starts_at + group_wait strictly before now
    (-10.0, 30.0),
], ids=["old", "just-older-than-group-wait", "exactly-group-wait", "recent"])
def test_old_alert_flushes_at_once(starts_at: float, first: float) -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, starts_at=starts_at))
    assert times(flushes(fold.advance(400.0))) == [first]


def test_old_alert_joining_before_first_flush_brings_it_forward_once() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A2, 10.0, starts_at=-100.0))
    fs = flushes(fold.advance(15.0))
    assert times(fs) == [10.0] and members(fs[0]) == ["i1", "i2"]
    fold.step(change(A3, 20.0, starts_at=-100.0))  # the group has flushed: no early flush any more
    assert fold.advance(309.0) == []
    fs = flushes(fold.advance(310.0))
    assert times(fs) == [310.0] and members(fs[0]) == ["i1", "i2", "i3"]


def test_second_alert_joins_without_an_early_flush() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A2, 10.0))
    fs = flushes(fold.advance(30.0))
    assert times(fs) == [30.0] and members(fs[0]) == ["i1", "i2"]
    fold.step(change(A3, 40.0))
    assert fold.advance(329.0) == []
    fs = flushes(fold.advance(330.0))
    assert [f.flush_seq for f in fs] == [2] and members(fs[0]) == ["i1", "i2", "i3"]


def test_update_waits_for_the_next_tick() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, annotations={"summary": "v1"}))
    fold.advance(30.0)
    fold.step(change(A, 100.0, starts_at=0.0, annotations={"summary": "v2"}))
    assert fold.advance(329.0) == []
    (f,) = flushes(fold.advance(330.0))
    assert f.alerts[0].annotations == {"summary": "v2"} and f.alerts[0].updated_at == 100.0


def test_older_version_is_ignored() -> None:
    fold = new_fold()
    fold.step(change(A, 10.0, starts_at=0.0, annotations={"summary": "new"}))
    fold.step(change(A, 12.0, starts_at=0.0, updated_at=5.0, annotations={"summary": "old"}), now=12.0)
    (f,) = flushes(fold.advance(40.0))
    assert f.alerts[0].annotations == {"summary": "new"}


def test_resolved_alert_is_flushed_once_then_leaves() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A2, 0.0))
    fold.advance(30.0)
    fold.step(change(A, 100.0, starts_at=0.0, ends_at=100.0))
    (f330,) = flushes(fold.advance(630.0))
    assert [(a.labels["instance"], a.ends_at) for a in f330.alerts] == [("i1", 100.0), ("i2", None)]
    fold.step(change(A2, 700.0, starts_at=0.0, annotations={"summary": "v2"}))
    (f930,) = flushes(fold.advance(930.0))
    assert members(f930) == ["i2"]


def test_firing_alert_hides_its_expected_end_until_it_passes() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, ends_at=200.0))  # a pushed alert's resolve_timeout end
    f30, f330 = flushes(fold.advance(1000.0))
    assert f30.alerts[0].ends_at is None
    assert f330.alerts[0].ends_at == 200.0  # resolved by then: flushed as resolved, and the group ends
    assert heads(fold.state) == {}


def test_alert_ending_exactly_at_the_flush_is_resolved_in_it() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, ends_at=30.0))
    (f,) = flushes(fold.advance(1000.0))
    assert (f.flushed_at, f.alerts[0].ends_at) == (30.0, 30.0)  # Alertmanager: endsAt not after now
    assert heads(fold.state) == {}


def test_empty_group_is_deleted_and_stops() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.advance(30.0)
    fold.step(change(A, 100.0, starts_at=0.0, ends_at=100.0))
    group = gid(A)
    head_key = f"group/o1/{group}"
    step = fold.core.fire(fold.state, head_key, 330.0)
    assert isinstance(step.changes[head_key], RetiredMark)  # in place of the head: one write
    assert [k for k, v in step.changes.items() if v is None] == [
        k for k in fold.state if k.startswith(head_key + "/")]
    fold.advance(330.0)
    assert not any(isinstance(v, (GroupHead, AlertShard)) for v in fold.state.values())
    assert list(fold.state) == [head_key]
    assert fold.advance(100_000.0) == []


def test_recreated_group_continues_its_flush_count() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A, 100.0, starts_at=0.0, ends_at=100.0))
    fold.advance(330.0)
    assert [(f.flush_seq, f.flushed_at) for f in flushes(fold.outputs)] == [(1, 30.0), (2, 330.0)]
    fold.step(change(A, 400.0))
    (again,) = flushes(fold.advance(430.0))
    assert again.flush_seq == 3 and again.flushed_at == 430.0
    ids = [o.msg_id for o in fold.outputs]
    assert ids == [f"router:o1:{gid(A)}:{n}" for n in (1, 2, 3)]


def test_a_mark_kept_by_an_older_build_is_read_and_moved() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, ends_at=10.0))
    fold.advance(30.0)
    key = f"group/o1/{gid(A)}"
    (mark,) = fold.state.values()
    assert isinstance(mark, RetiredMark) and mark.seq == 1
    fold.state = {f"{key}/n": mark}  # where builds before 2026-11-22 kept it
    step = fold.core.step(fold.state, change(A, 100.0), 100.0)
    assert step.changes[f"{key}/n"] is None and isinstance(step.changes[key], GroupHead)
    fold.step(change(A, 100.0))
    (f,) = flushes(fold.advance(130.0))
    assert f.flush_seq == 2  # continued, not reused


def test_retired_mark_expires_after_retention() -> None:
    fold = new_fold(retention=1000.0)
    fold.step(change(A, 0.0, ends_at=10.0))
    fold.advance(30.0)
    (mark,) = fold.state.values()
    assert isinstance(mark, RetiredMark) and mark.seq == 1 and mark.expires == 1030.0
    fold.advance(1030.0)
    assert fold.state == {}
    fold.step(change(A, 2000.0))
    (f,) = flushes(fold.advance(2030.0))
    assert f.flush_seq == 1


def test_flush_carries_route_options_and_ids() -> None:
    fold = new_fold()
    fold.step(change(DB, 0.0, trace={"traceparent": "00-aa-01"}))
    (out,) = fold.advance(10.0)
    f = out.payload
    assert isinstance(f, GroupFlush)
    key = '{}/{team="db"}:{alertname="X"}'
    group = group_id_of("o1", "db", key)
    assert (f.org, f.group_key, f.group_id, f.route_id, f.receiver) == ("o1", key, group, "0.0", "db")
    assert (f.group_labels, f.flush_seq, f.flushed_at) == ({"alertname": "X"}, 1, 10.0)
    assert (f.group_interval, f.repeat_interval) == (60.0, 4 * 3600.0)
    assert (f.mute_time_intervals, f.active_time_intervals) == (["nights"], ["office"])
    assert f.trace == {"traceparent": "00-aa-01"}
    assert [a.fingerprint for a in f.alerts] == [fingerprint(DB)]
    assert (out.subject, out.msg_id) == (group, f"router:o1:{group}:1")


def test_trace_comes_from_the_last_change() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, trace={"traceparent": "t1"}))
    fold.step(change(A2, 5.0, trace={"traceparent": "t2"}))
    fold.step(change(A, 8.0, starts_at=0.0, annotations={"x": "y"}, trace={"traceparent": "t3"}))
    (f,) = flushes(fold.advance(30.0))
    assert f.trace == {"traceparent": "t3"}


def test_alerts_are_ordered_like_alertmanager() -> None:
    fold = new_fold()
    labels = [
        {"alertname": "A", "zone": "b"},
        {"alertname": "A", "instance": "i2", "job": "api"},
        {"alertname": "A", "instance": "i1"},
        {"alertname": "A", "instance": "i1", "job": "api"},
        {"alertname": "A", "zone": "a"},
        {"alertname": "A", "job": "db"},
        {"alertname": "A", "instance": "i0"},
        {"alertname": "A"},
    ]
    for i, ls in enumerate(labels):
        fold.step(change(ls, float(i)))
    (f,) = flushes(fold.advance(60.0))
    # job first (having one before not), then instance, then fewer labels, then label by label
    assert [a.labels for a in f.alerts] == [labels[i] for i in (3, 1, 5, 6, 2, 7, 4, 0)]


def test_organisations_are_kept_apart() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0, org="o1"))
    fold.step(change(A, 0.0, org="o.2/x"))
    fs = flushes(fold.advance(30.0))
    assert sorted((f.org, f.group_id) for f in fs) == sorted([("o1", gid(A)), ("o.2/x", gid(A, org="o.2/x"))])
    assert all(f.alerts[0].org == f.org for f in fs)
    assert len({k.split("/")[1] for k in fold.state}) == 2


def test_continue_gives_independent_groups() -> None:
    fold = new_fold()
    web = {"alertname": "W", "team": "web", "instance": "i1"}
    fold.step(change(web, 0.0))
    fs = flushes(fold.advance(400.0))
    assert [(f.receiver, f.flushed_at) for f in fs] == [("web", 30.0), ("web-audit", 60.0)]
    assert [f.flush_seq for f in fs] == [1, 1]
    assert fs[1].group_labels == {"alertname": "W", "instance": "i1"}


def test_alert_arriving_before_a_pending_flush_is_fired_joins_it() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    late = fold.core.step(fold.state, change(A2, 40.0), 40.0)  # the runtime has not fired t=30 yet
    for k, v in late.changes.items():
        assert v is not None
        fold.state[k] = v
    assert late.outputs == []
    (f,) = flushes(fold.advance(40.0))
    assert (f.flushed_at, members(f)) == (30.0, ["i1", "i2"])


def _big_group(fold: Fold, n: int = INLINE + 1, at: float = 0.0) -> list[dict[str, str]]:
    """Alerts of one group (by alertname), more than a head keeps inline."""
    labels = [{"alertname": "A", "instance": f"i{i:03d}"} for i in range(n)]
    for i, ls in enumerate(labels):
        fold.step(change(ls, at + i / 100))
    return labels


def test_stale_or_unknown_timers_do_nothing() -> None:
    fold = new_fold()
    (a, *_) = _big_group(fold)
    head_key = f"group/o1/{gid(a)}"
    assert fold.core.fire(fold.state, head_key, 29.0).changes == {}
    assert fold.core.fire(fold.state, "group/o1/ffff", 29.0).changes == {}
    shard = next(k for k in fold.state if k != head_key)
    assert fold.core.deadline(shard, fold.state[shard]) is None
    assert fold.core.fire(fold.state, shard, 29.0).outputs == []


def test_rejects_other_inputs() -> None:
    core = RouterCore(table(CONFIG))
    ev = Event(id="1", org="o1", reason="R", resource_kind="device", resource_name="d", occurred_at=0.0)
    with pytest.raises(Reject):
        core.step({}, ev, 0.0)  # type: ignore[arg-type]


def test_a_small_group_keeps_its_alerts_in_its_head() -> None:
    fold = new_fold()
    key = f"group/o1/{gid(A)}"
    step = fold.core.step(fold.state, change(A, 0.0), 0.0)
    assert list(step.changes) == [key]  # one write: the head, with the alert in it
    fold.step(change(A, 0.0))
    fold.advance(30.0)
    step = fold.core.step(fold.state, change(A, 40.0, starts_at=0.0, ends_at=40.0), 40.0)
    assert list(step.changes) == [key]  # an update: one write
    head = step.changes[key]
    assert isinstance(head, GroupHead) and head.shards == 0 and list(head.inline) == [fingerprint(A)]


def test_a_group_grown_past_inline_moves_to_shards_for_good() -> None:
    fold = new_fold()
    labels = _big_group(fold, INLINE)
    key = f"group/o1/{gid(labels[0])}"
    head = fold.state[key]
    assert isinstance(head, GroupHead) and len(head.inline) == INLINE and list(fold.state) == [key]
    _big_group(fold, INLINE + 1, at=1.0)  # one more alert (and the others again)
    head = fold.state[key]
    assert isinstance(head, GroupHead) and head.inline == {} and head.shards != 0
    assert sum(len(v.alerts) for v in fold.state.values() if isinstance(v, AlertShard)) == INLINE + 1
    (f,) = flushes(fold.advance(31.0))
    assert len(f.alerts) == INLINE + 1
    # resolving all but one leaves it sharded (no moving back and forth)
    for ls in labels[1:]:
        fold.step(change(ls, 40.0, starts_at=1.0, ends_at=40.0))
    (f,) = flushes(fold.advance(331.0))  # the next tick (group_interval 300 s)
    assert sum(a.ends_at is not None for a in f.alerts) == INLINE - 1
    head = fold.state[key]
    assert isinstance(head, GroupHead) and head.inline == {} and head.shards != 0
    assert sum(len(v.alerts) for v in fold.state.values() if isinstance(v, AlertShard)) == 2


def test_large_group_is_sharded_into_small_values() -> None:
    fold = new_fold()
    for i in range(400):
        fold.step(change({"alertname": "A", "instance": f"i{i:03d}", "pad": "x" * 100}, float(i) / 100))
    (f,) = flushes(fold.advance(60.0))
    assert len(f.alerts) == 400
    shards = [v for v in fold.state.values() if isinstance(v, AlertShard)]
    assert 8 < len(shards) <= 16 and sum(len(s.alerts) for s in shards) == 400
    biggest = max(len(msgspec.json.encode(s)) for s in shards)
    assert biggest < len(msgspec.json.encode(f)) / 4


# --------------------------------------------------------------------------- reload and restart

NEW_FIRST = '  routes:\n    - {matchers: [team="new"], receiver: default}\n'
RELOADED = CONFIG.replace("  routes:\n", NEW_FIRST, 1)


def test_config_reload_mid_wait_keeps_the_deadline() -> None:
    fold = new_fold()
    fold.step(change(DB, 0.0))  # db route: group_wait 10s
    slower = RELOADED.replace("group_wait: 10s", "group_wait: 2m").replace("group_interval: 1m",
                                                                           "group_interval: 2m")
    fold.reload(RouterCore(table(slower)))
    assert fold.advance(9.0) == []
    fs = flushes(fold.advance(200.0))
    assert times(fs) == [10.0]  # the old deadline (then quiet)
    assert {f.route_id for f in fs} == {"0.1"}  # the route moved down one place
    assert {f.group_id for f in fs} == {group_id_of("o1", "db", '{}/{team="db"}:{alertname="X"}')}


@pytest.mark.parametrize("roundtrip", [False, True], ids=["same-objects", "rebuilt-from-wire"])
def test_restart_mid_wait_keeps_the_deadline(roundtrip: bool) -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A2, 5.0))
    fold.reload(RouterCore(table(CONFIG)), roundtrip=roundtrip)
    assert fold.advance(29.0) == []
    fs = flushes(fold.advance(330.0))
    assert times(fs) == [30.0] and [f.flush_seq for f in fs] == [1]
    assert members(fs[0]) == ["i1", "i2"]


def test_reload_renamed_receiver_moves_alerts_at_the_old_groups_next_tick() -> None:
    fold = new_fold()
    fold.step(change(DB, 0.0))
    fold.advance(10.0)
    renamed = CONFIG.replace("receiver: db\n", "receiver: dba\n").replace("{name: db}", "{name: dba}")
    fold.reload(RouterCore(table(renamed)))
    fs = flushes(fold.advance(200.0))
    # t=70: the old group is retired with an empty flush (the filter forgets it); the alert
    # (older than group_wait) flushes at once in its new group, which is then quiet.
    assert [(f.receiver, f.flushed_at, f.flush_seq, len(f.alerts)) for f in fs] == [
        ("db", 70.0, 2, 0), ("dba", 70.0, 1, 1)]
    old = group_id_of("o1", "db", '{}/{team="db"}:{alertname="X"}')
    mark = fold.state[f"group/o1/{old}"]  # the mark replaced the head
    assert isinstance(mark, RetiredMark) and mark.seq == 2
    assert not [k for k in fold.state if k.startswith(f"group/o1/{old}/")]


def test_reload_moves_only_the_alerts_that_route_elsewhere() -> None:
    fold = new_fold()
    web_ops = {"alertname": "A", "instance": "i9", "team": "ops"}
    fold.step(change(A, 0.0))
    fold.step(change(web_ops, 0.0))
    (first,) = flushes(fold.advance(30.0))
    assert members(first) == ["i1", "i9"]
    with_ops = CONFIG.replace("  routes:\n", '  routes:\n    - {matchers: [team="ops"], receiver: ops}\n', 1)
    fold.reload(RouterCore(table(with_ops.replace("receivers: [", "receivers: [{name: ops}, "))))
    fs = flushes(fold.advance(330.0))
    # the default group's tick moves i9 to a new ops group, which flushes at once (i9 is old)
    assert [(f.receiver, f.flushed_at, members(f), f.flush_seq) for f in fs] == [
        ("default", 330.0, ["i1"], 2), ("ops", 330.0, ["i9"], 1)]


def test_reload_group_by_change_regroups() -> None:
    fold = new_fold()
    fold.step(change(A, 0.0))
    fold.step(change(A2, 0.0))
    fold.advance(30.0)
    fold.reload(RouterCore(table(CONFIG.replace("group_by: [alertname]\n  group_wait",
                                                "group_by: [alertname, instance]\n  group_wait"))))
    fs = flushes(fold.advance(330.0))
    assert sorted((f.group_key, f.flushed_at, f.flush_seq, len(f.alerts)) for f in fs) == [
        ('{}:{alertname="A", instance="i1"}', 330.0, 1, 1), ('{}:{alertname="A", instance="i2"}', 330.0, 1, 1),
        ('{}:{alertname="A"}', 330.0, 2, 0)]  # the old group's goodbye


# --------------------------------------------------------------------------- read view


def _fill(fold: Fold) -> None:
    fold.step(change({"alertname": "B", "instance": "i1"}, 0.0))
    fold.step(change(A2, 1.0))
    fold.step(change(A, 2.0, ends_at=50.0))
    fold.step(change({"alertname": "W", "team": "web", "instance": "i1"}, 3.0))
    fold.step(change(A, 4.0, org="o2"))


def test_groups_view() -> None:
    fold = new_fold()
    _fill(fold)
    fold.advance(35.0)
    view = groups_view(fold.state, "o1")
    assert [(g.labels, g.receiver) for g in view] == [
        ({"alertname": "A"}, "default"), ({"alertname": "B"}, "default"), ({"alertname": "W"}, "web"),
        ({"alertname": "W", "instance": "i1"}, "web-audit")]
    a = view[0]
    assert [x.labels["instance"] for x in a.alerts] == ["i1", "i2"]
    assert (a.group_id, a.flush_seq, a.next_flush, a.route_id) == (gid(A), 1, 331.0, "0")
    assert view[3].flush_seq == 0 and view[3].next_flush == 63.0
    assert [g.org for g in groups_view(fold.state, "o2")] == ["o2"]
    hidden = groups_view(fold.state, "o1", now=60.0)
    assert [x.labels["instance"] for x in hidden[0].alerts] == ["i2"]


def test_groups_view_skips_groups_with_only_resolved_alerts() -> None:
    state: dict[str, StateValue] = {}
    core = RouterCore(table(CONFIG))
    step = core.step(state, change(A, 0.0, ends_at=1.0), 0.0)
    state.update({k: v for k, v in step.changes.items() if v is not None})
    assert len(groups_view(state, "o1")) == 1
    assert groups_view(state, "o1", now=5.0) == []


def test_value_type_decodes_every_state_value() -> None:
    fold = new_fold()
    _fill(fold)
    fold.step(change({"alertname": "Z"}, 5.0, ends_at=6.0))
    _big_group(fold, at=6.0)
    fold.advance(40.0)
    decoder = msgspec.json.Decoder(fold.core.value_type)
    kinds = set()
    for value in fold.state.values():
        assert decoder.decode(msgspec.json.encode(value)) == value
        kinds.add(type(value))
    assert kinds == {GroupHead, AlertShard, RetiredMark}
