"""Time muting of whole flushes by the route's mute_time_intervals / active_time_intervals."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from filter_fold import Fold, alert, core, flush, group_of, log_entries

from pipeline.foundation.runtime.step import Reject
from stages.filter.views import group_muted_by

A = {"alertname": "A"}


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


SATURDAY_NOON = ts("2024-01-06T12:00:00")
MONDAY_0900Z = ts("2024-01-08T09:00:00")  # 10:00 in Paris (CET)
MONDAY_0730Z = ts("2024-01-08T07:30:00")  # 08:30 in Paris
MONDAY_1630Z = ts("2024-01-08T16:30:00")  # 17:30 in Paris: inside 09-17 in UTC, outside in Paris
JULY_MONDAY_1530Z = ts("2024-07-08T15:30:00")  # 17:30 in Paris (CEST)
JULY_MONDAY_0730Z = ts("2024-07-08T07:30:00")  # 09:30 in Paris (CEST)

CASES = [
    ("mute-interval-inside", ["weekends"], [], SATURDAY_NOON, ["weekends"]),
    ("mute-interval-outside", ["weekends"], [], MONDAY_0900Z, []),
    ("active-interval-inside", [], ["paris-office"], MONDAY_0900Z, []),
    ("active-interval-before-hours", [], ["paris-office"], MONDAY_0730Z, ["paris-office"]),
    ("active-interval-read-in-its-location", [], ["paris-office"], MONDAY_1630Z, ["paris-office"]),
    ("active-interval-summer-time-after-hours", [], ["paris-office"], JULY_MONDAY_1530Z, ["paris-office"]),
    ("active-interval-summer-time-in-hours", [], ["paris-office"], JULY_MONDAY_0730Z, []),
    ("active-interval-weekend", [], ["paris-office"], SATURDAY_NOON, ["paris-office"]),
    # Alertmanager's time-active stage runs first and names the active intervals.
    ("outside-active-and-inside-mute", ["weekends"], ["paris-office"], SATURDAY_NOON, ["paris-office"]),
    ("inside-active-outside-mute", ["weekends"], ["paris-office"], MONDAY_0900Z, []),
    ("none", [], [], SATURDAY_NOON, []),
]


@pytest.mark.parametrize(("mute", "active", "at", "muted_by"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_time_muting(mute: list[str], active: list[str], at: float, muted_by: list[str]) -> None:
    f = Fold(core())
    reqs = f.sends(flush([alert(A)], at, mute=mute, active=active))
    assert len(reqs) == (0 if muted_by else 1)
    assert group_muted_by(f.state, "o1", "{}:{}") == muted_by
    # A muted flush logs nothing: the first unmuted flush is a first notification.
    assert bool(log_entries(f.state)) == (not muted_by)


def test_unmuted_flush_after_muted_ones_notifies_and_clears_muted_by() -> None:
    f = Fold(core())
    assert f.sends(flush([alert(A)], SATURDAY_NOON, seq=1, mute=["weekends"])) == []
    assert f.sends(flush([alert(A)], SATURDAY_NOON + 300, seq=2, mute=["weekends"])) == []
    # the group is quiet: the filter re-evaluates it every tick while muted, and the first tick
    # of Monday (the grid continues from the last flush) notifies
    monday = ts("2024-01-08T00:00:00")
    outs = f.advance(monday + 1.0)
    assert [(o.payload.created_at, o.payload.id) for o in outs] == [  # type: ignore[attr-defined]
        (monday, f"o1/g1/team/webhook/0/2.{round((monday - SATURDAY_NOON - 300) / 300)}")]
    assert group_muted_by(f.state, "o1", "{}:{}") == []


def test_muted_group_re_evaluation_writes_only_its_next_tick() -> None:
    f = Fold(core())
    first = f.core.step(f.state, flush([alert(A)], SATURDAY_NOON, seq=1, mute=["weekends"]), SATURDAY_NOON)
    key = "group/o1/cc9772a1ec901d26ef71dae861793e4d"
    assert list(first.changes) == [key]  # the record (with muted_by) and the last flush, together
    f.step(flush([alert(A)], SATURDAY_NOON, seq=1, mute=["weekends"]))
    before = group_of(f.state)
    assert before.last is not None and before.record is not None and before.record.muted_by == ["weekends"]
    again = f.core.fire(f.state, key, SATURDAY_NOON + 301)
    assert list(again.changes) == [key] and again.outputs == []
    assert again.changes[key] == msgspec.structs.replace(
        before, last=msgspec.structs.replace(before.last, next=SATURDAY_NOON + 600))


def test_unknown_time_interval_is_rejected() -> None:
    with pytest.raises(Reject, match="time interval 'holidays'"):
        Fold(core()).step(flush([alert(A)], SATURDAY_NOON, mute=["holidays"]))
