"""A group's record, notification log and last flush live under one key (one write per
flush), and state kept under the keys of older builds is read and moved there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from filter_fold import Fold, ack, alert, core, flush, group_of

from stages.filter.state import GroupState, StateValue, group_record_key, legacy_nflog_key
from stages.filter.ticks import last_flush_key

A = {"alertname": "HighCPU", "instance": "web-1"}
B = {"alertname": "HighCPU", "instance": "web-2"}
GROUP = group_record_key("o1", "{}:{}")


def split_to_legacy(state: dict[str, StateValue], receiver: str) -> dict[str, StateValue]:
    """The same state as the filter kept it before 2026-11-22: a bare record at the group's key,
    each log entry and the last flush under keys of their own."""
    out: dict[str, StateValue] = {}
    for key, value in state.items():
        if not isinstance(value, GroupState):
            out[key] = value
            continue
        gid = value.last.flush.group_id if value.last is not None else "g1"
        if value.record is not None:
            out[key] = value.record
        for lkey, entry in value.log.items():
            recv, kind, index = lkey.split("/")
            assert recv == receiver
            out[legacy_nflog_key("o1", gid, recv, kind, int(index))] = entry
        if value.last is not None:
            out[last_flush_key("o1", gid)] = value.last
    return out


def legacy_keys(state: dict[str, StateValue]) -> list[str]:
    return sorted(k for k, v in state.items() if k.startswith(("nflog/", "flush/"))
                  or (k.startswith("group/") and not isinstance(v, GroupState)))


@pytest.mark.parametrize("receiver", ["team", "multi", "pager"])
def test_a_notifying_flush_writes_the_group_once(receiver: str) -> None:
    f = Fold(core())
    step = f.core.step(f.state, flush([alert(A), alert(B)], 10.0, receiver=receiver), 10.0)
    assert step.outputs and list(step.changes) == [GROUP]
    gs = step.changes[GROUP]
    assert isinstance(gs, GroupState) and gs.record is not None and gs.last is not None
    assert len(gs.log) == len(step.outputs)
    assert gs.due_at == gs.last.due_at  # the next tick comes before any expiry


def test_a_group_is_deleted_once_nothing_of_it_is_left() -> None:
    f = Fold(core(nflog_retention=1000.0))
    f.sends(flush([alert(A)], 0.0, repeat=3600.0))
    f.step(flush([], 1.0, seq=2))  # retired by the router: no last flush
    assert group_of(f.state).last is None and GROUP in f.state
    f.advance(1000.0)  # the log entry and the record expire
    assert GROUP not in f.state


def test_a_retirement_of_another_group_id_keeps_the_last_flush() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, group_id="g2"))  # the route's receiver changed: a new group id
    f.step(flush([], 1.0, seq=2, group_id="g1"))  # the old group id retired
    last = group_of(f.state).last
    assert last is not None and last.flush.group_id == "g2"


# Continuations after a first notification at t=0 (receiver, then inputs fed to the folds).
Feed = Callable[[Fold], list[Any]]
CONTINUATIONS: list[tuple[str, str, Feed]] = [
    ("same-flush-within-repeat", "team", lambda f: f.sends(flush([alert(A)], 300.0, seq=2))),
    ("quiet-group-repeats-on-its-tick", "team", lambda f: f.advance(3901.0)),
    ("new-alert", "multi", lambda f: f.sends(flush([alert(A), alert(B)], 300.0, seq=2, receiver="multi"))),
    ("resolved", "multi", lambda f: f.sends(flush([alert(A, ends=250.0)], 300.0, seq=2, receiver="multi"))),
    ("group-ack-then-repeat", "pager",
     lambda f: f.step(ack(100.0, group_key="{}:{}")) + f.advance(8000.0)),
    ("entries-expire", "team", lambda f: f.step(flush([], 1.0, seq=2)) + f.advance(8000.0)
     + f.sends(flush([alert(A)], 8001.0, seq=3))),
]


@pytest.mark.parametrize(("receiver", "feed"), [c[1:] for c in CONTINUATIONS], ids=[c[0] for c in CONTINUATIONS])
def test_pre_0_2_state_behaves_as_the_merged_state(receiver: str, feed: Feed) -> None:
    merged = Fold(core())
    merged.sends(flush([alert(A)], 0.0, receiver=receiver))
    legacy = Fold(core())
    legacy.state = split_to_legacy(merged.state, receiver)
    assert legacy_keys(legacy.state)  # (the split did something)
    expected = feed(merged)
    assert feed(legacy) == expected
    assert expected or receiver == "team"  # (most continuations send something)
    assert not legacy_keys(legacy.state)  # moved to the group's key
    assert legacy.state == merged.state


def test_a_pre_0_2_group_is_moved_by_its_first_write() -> None:
    merged = Fold(core())
    merged.sends(flush([alert(A)], 0.0))
    legacy = Fold(core())
    legacy.state = split_to_legacy(merged.state, "team")
    step = legacy.core.step(legacy.state, flush([alert(A)], 300.0, seq=2), 300.0)
    assert step.outputs == []  # its log entry was read: no second first notification
    assert step.changes[GROUP] is not None
    assert {k for k, v in step.changes.items() if v is None} == {
        legacy_nflog_key("o1", "g1", "team", "webhook", 0), last_flush_key("o1", "g1")}
