"""Acknowledgements: no repeats while acknowledged, resolutions, changes, expiry, PagerDuty acknowledge."""

from __future__ import annotations

from typing import Any

import pytest
from filter_fold import Fold, ack, alert, change, core, flush, fp, sent_fps

from contracts.messages import Alert, SendRequest
from pipeline.foundation.runtime.step import Out, Reject
from stages.filter.state import AckValue, ack_alert_key, ack_group_key
from stages.filter.views import acks_view

A = {"alertname": "A", "instance": "1"}
B = {"alertname": "B", "instance": "2"}
GK = "{}:{}"
REPEAT = 3600.0


def flushes(f: Fold, alerts_at: list[tuple[float, list[Alert]]], receiver: str = "team",
            start_seq: int = 1) -> list[float]:
    """Flush each (time, alerts); return the times at which something was sent."""
    sent = []
    for i, (t, alerts) in enumerate(alerts_at):
        if f.sends(flush(alerts, t, seq=start_seq + i, receiver=receiver, repeat=REPEAT)):
            sent.append(t)
    return sent


def grid(start: float, stop: float, alerts: list[Alert]) -> list[tuple[float, list[Alert]]]:
    return [(float(t), alerts) for t in range(int(start), int(stop), 300)]


@pytest.mark.parametrize(
    "by",
    ["group", "fingerprint"],
)
def test_no_repeat_while_acknowledged_then_expiry_notifies(by: str) -> None:
    f = Fold(core())
    f.step(change("fired", alert(A), 0.0))
    assert flushes(f, [(0.0, [alert(A)])]) == [0.0]
    target = {"group_key": GK} if by == "group" else {"fingerprint": fp(A)}
    f.step(ack(100.0, expires=20000.0, **target))
    # Far beyond the repeat interval and the entry's own expiry (2 x repeat): silent.
    assert flushes(f, grid(300.0, 19800.0, [alert(A)]), start_seq=2) == []
    # Expiry deletes the acknowledgement; the next flush repeats at once.
    assert flushes(f, [(20100.0, [alert(A)])], start_seq=200) == [20100.0]
    assert not [k for k in f.state if k.startswith("ack/")]


def test_unack_resumes_repeats() -> None:
    f = Fold(core())
    assert flushes(f, [(0.0, [alert(A)])]) == [0.0]
    f.step(ack(100.0, group_key=GK))
    assert flushes(f, grid(300.0, 5000.0, [alert(A)]), start_seq=2) == []
    f.step(ack(5000.0, group_key=GK, action="unack"))
    assert ack_group_key("o1", GK) not in f.state
    assert flushes(f, [(5100.0, [alert(A)])], start_seq=100) == [5100.0]


@pytest.mark.parametrize(("notify_acked_resolved", "expected"), [(True, [[fp(A)]]), (False, [])],
                         ids=["resolution-notified-by-default", "option-off"])
def test_resolution_of_acknowledged_alert(notify_acked_resolved: bool, expected: list[list[str]]) -> None:
    f = Fold(core(notify_acked_resolved=notify_acked_resolved))
    f.sends(flush([alert(A)], 0.0, seq=1))
    f.step(ack(100.0, group_key=GK))
    reqs = f.sends(flush([alert(A, ends=250.0)], 300.0, seq=2))
    assert sent_fps(reqs) == expected
    if reqs:
        assert reqs[0].status == "resolved"


def test_new_alert_in_acknowledged_group_notifies_the_whole_group() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, seq=1))
    f.step(ack(100.0, group_key=GK))
    assert sent_fps(f.sends(flush([alert(A), alert(B, starts=200.0)], 300.0, seq=2))) == [[fp(A), fp(B)]]
    # B is not acknowledged: repeats come back for the group.
    assert flushes(f, grid(600.0, 4500.0, [alert(A), alert(B, starts=200.0)]), start_seq=3) == [4200.0]


def test_new_occurrence_is_not_acknowledged() -> None:
    f = Fold(core())
    f.step(change("fired", alert(A, starts=0.0), 0.0))
    f.sends(flush([alert(A)], 0.0, seq=1))
    f.step(ack(100.0, fingerprint=fp(A)))
    f.step(change("resolved", alert(A, ends=150.0), 150.0))
    f.sends(flush([alert(A, ends=150.0)], 300.0, seq=2))  # the resolution
    f.step(change("fired", alert(A, starts=500.0), 500.0))
    assert ack_alert_key("o1", fp(A)) not in f.state  # it was for the first occurrence
    assert sent_fps(f.sends(flush([alert(A, starts=500.0)], 600.0, seq=3))) == [[fp(A)]]


def test_group_ack_covers_what_was_notified_only() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, seq=1))
    f.step(ack(100.0, group_key=GK))
    value = f.state[ack_group_key("o1", GK)]
    assert isinstance(value, AckValue) and value.covers == {fp(A): 0.0}
    # B started before the ack but was never notified: not covered, so it is notified.
    assert sent_fps(f.sends(flush([alert(A), alert(B, starts=50.0)], 300.0, seq=2))) == [[fp(A), fp(B)]]


def test_alert_ack_garbage_collected_after_resolution() -> None:
    f = Fold(core(nflog_retention=1000.0))
    f.step(change("fired", alert(A), 0.0))
    f.step(ack(10.0, fingerprint=fp(A)))
    f.step(change("resolved", alert(A, ends=50.0), 50.0))
    f.advance(1049.0)
    assert ack_alert_key("o1", fp(A)) in f.state
    f.advance(1050.0)
    assert ack_alert_key("o1", fp(A)) not in f.state


def test_group_ack_deleted_when_it_covers_nothing() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, seq=1))
    f.step(ack(100.0, group_key=GK))
    f.sends(flush([alert(A, ends=200.0)], 300.0, seq=2))
    assert ack_group_key("o1", GK) in f.state
    f.sends(flush([alert(B, starts=400.0)], 600.0, seq=3))
    assert ack_group_key("o1", GK) not in f.state


def _pagerduty_acks(outs: list[Out]) -> list[SendRequest]:
    return [o.payload for o in outs if isinstance(o.payload, SendRequest) and o.payload.acknowledged]


def test_pagerduty_acknowledge_on_newly_acknowledged_group() -> None:
    f = Fold(core())
    outs = f.step(flush([alert(A), alert(B)], 0.0, seq=3, receiver="pager", trace={"traceparent": "00-f-01"}))
    assert sorted(o.payload.integration.kind for o in outs) == ["pagerduty", "webhook"]  # type: ignore[attr-defined]
    acks = _pagerduty_acks(f.step(ack(100.0, group_key=GK)))
    assert len(acks) == 1
    (req,) = acks
    assert req.id == "o1/g1/pager/pagerduty/0/3/ack" and req.status == "firing"
    assert (req.integration.kind, req.integration.index, req.created_at) == ("pagerduty", 0, 100.0)
    assert [a.fingerprint for a in req.alerts] == [fp(A), fp(B)]
    # Acknowledging again is not new: nothing more is sent.
    assert _pagerduty_acks(f.step(ack(200.0, group_key=GK, expires=9000.0))) == []


def test_pagerduty_acknowledge_after_a_repeat_by_re_evaluation_names_that_send() -> None:
    f = Fold(core())
    f.step(flush([alert(A)], 0.0, seq=3, receiver="pager", repeat=3600.0, interval=300.0))
    repeats = f.advance(3901.0)  # the quiet group's repeat at the first tick after an hour
    assert sorted(o.payload.id for o in repeats) == [  # type: ignore[attr-defined]
        "o1/g1/pager/pagerduty/0/3.13", "o1/g1/pager/webhook/0/3.13"]
    (req,) = _pagerduty_acks(f.step(ack(4000.0, group_key=GK)))
    assert req.id == "o1/g1/pager/pagerduty/0/3.13/ack"  # not the first notification's ack id


def test_pagerduty_sends_of_acknowledged_group_carry_the_flag() -> None:
    f = Fold(core())
    f.sends(flush([alert(A), alert(B)], 0.0, seq=1, receiver="pager"))
    f.step(ack(100.0, group_key=GK))
    reqs = f.sends(flush([alert(A), alert(B, ends=250.0)], 300.0, seq=2, receiver="pager"))
    flags = {r.integration.kind: r.acknowledged for r in reqs}
    assert flags == {"webhook": False, "pagerduty": True}


def test_no_pagerduty_acknowledge_without_open_incident() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, seq=1, receiver="pager"))
    f.sends(flush([alert(A, ends=100.0)], 300.0, seq=2, receiver="pager"))  # incident resolved
    assert _pagerduty_acks(f.step(ack(400.0, group_key=GK))) == []
    assert _pagerduty_acks(Fold(core()).step(ack(400.0, group_key="{}:{never}"))) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of group_key, fingerprint and matchers"),
        ({"group_key": GK, "fingerprint": "abc"}, "exactly one of group_key, fingerprint and matchers"),
        ({"group_key": GK, "expires": 50.0}, "expire before"),
    ],
    ids=["neither", "both", "expires-in-past"],
)
def test_invalid_acks_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(Reject, match=message):
        Fold(core()).step(ack(100.0, **kwargs))


def test_acks_view() -> None:
    f = Fold(core())
    f.step(ack(10.0, fingerprint=fp(A), expires=50.0))
    f.step(ack(20.0, group_key=GK))
    f.step(ack(30.0, group_key=GK, org="o2"))
    view = acks_view(f.state, "o1", 40.0)
    assert [(v.kind, v.target, v.active, v.by) for v in view] == [("group", GK, True, "bob"),
                                                                  ("alert", fp(A), True, "bob")]
    assert [v.active for v in acks_view(f.state, "o1", 60.0)] == [True, False]
