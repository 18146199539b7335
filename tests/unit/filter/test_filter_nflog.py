"""The notification log: needsUpdate semantics, repeat_interval, send_resolved, send ids, expiry."""

from __future__ import annotations

import pytest
from filter_fold import Fold, alert, core, flush, fp, group_of, last_of, sent_fps

from pipeline.foundation.runtime.step import Reject
from stages.filter.nflog import NotifyReason, needs_update
from stages.filter.state import NflogEntry

R = NotifyReason


def entry(firing: set[str], resolved: set[str] = frozenset(), at: float = 1000.0) -> NflogEntry:  # type: ignore[assignment]
    return NflogEntry(firing=sorted(firing), resolved=sorted(resolved), at=at, expires_at=1e12)


# (id, entry, firing, resolved, send_resolved, now, expected); repeat_interval is 100, entry time 1000.
NEEDS_UPDATE = [
    ("first-notification", None, {"a"}, set(), True, 1001.0, R.FIRST_NOTIFICATION),
    ("never-notified-only-resolved", None, set(), {"a"}, True, 1001.0, R.NONE),
    ("never-notified-empty", None, set(), set(), True, 1001.0, R.NONE),
    ("unchanged-within-repeat", entry({"a", "b"}), {"a", "b"}, set(), True, 1050.0, R.NONE),
    ("unchanged-repeat-just-reached", entry({"a", "b"}), {"a", "b"}, set(), True, 1100.0, R.NONE),
    ("unchanged-repeat-elapsed", entry({"a", "b"}), {"a", "b"}, set(), True, 1100.5, R.REPEAT),
    ("new-firing-alert", entry({"a"}), {"a", "b"}, set(), True, 1001.0, R.NEW_ALERTS),
    ("new-firing-after-resolution-is-first", entry(set(), {"a"}), {"b"}, set(), True, 1001.0,
     R.FIRST_NOTIFICATION),
    ("all-resolved", entry({"a"}), set(), {"a"}, True, 1001.0, R.ALL_RESOLVED),
    ("all-resolved-without-send-resolved", entry({"a"}), set(), {"a"}, False, 1001.0, R.ALL_RESOLVED),
    ("resolved-never-notified-firing", entry(set(), {"x"}), set(), {"a"}, True, 1001.0, R.NONE),
    ("some-resolved", entry({"a", "b"}), {"a"}, {"b"}, True, 1001.0, R.NEW_RESOLVED),
    ("some-resolved-without-send-resolved", entry({"a", "b"}), {"a"}, {"b"}, False, 1001.0, R.NONE),
    ("resolved-already-notified", entry({"a"}, {"b"}), {"a"}, {"b"}, True, 1001.0, R.NONE),
    ("fewer-firing-nothing-resolved", entry({"a", "b"}), {"a"}, set(), True, 1001.0, R.NONE),
    ("new-resolved-wins-over-repeat", entry({"a", "b"}), {"a"}, {"b"}, True, 2000.0, R.NEW_RESOLVED),
    ("new-firing-wins-over-resolved", entry({"a", "b"}), {"a", "c"}, {"b"}, True, 1001.0, R.NEW_ALERTS),
    ("repeat-without-send-resolved", entry({"a", "b"}), {"a"}, {"b"}, False, 2000.0, R.REPEAT),
]


@pytest.mark.parametrize(("e", "firing", "resolved", "send_resolved", "now", "expected"),
                         [c[1:] for c in NEEDS_UPDATE], ids=[c[0] for c in NEEDS_UPDATE])
def test_needs_update(e: NflogEntry | None, firing: set[str], resolved: set[str], send_resolved: bool, now: float,
                      expected: NotifyReason) -> None:
    assert needs_update(e, firing, resolved, send_resolved=send_resolved, repeat_interval=100.0, t=now) is expected


A = {"alertname": "A", "instance": "1"}
B = {"alertname": "B", "instance": "2"}


def test_repeat_interval_on_a_group_interval_grid() -> None:
    f = Fold(core())
    sent_at = []
    for i, t in enumerate(range(0, 8400, 300)):
        if f.sends(flush([alert(A)], float(t), seq=i + 1, repeat=3600.0)):
            sent_at.append(t)
    # As Alertmanager: the first flush strictly after the repeat interval notifies again.
    assert sent_at == [0, 3900, 7800]


@pytest.mark.parametrize(
    ("receiver", "expected"),
    [
        # (fingerprints sent, status) at each of the four flushes
        ("team", [([fp(A), fp(B)], "firing"), ([fp(A), fp(B)], "firing"), ([fp(A), fp(B)], "resolved"),
                  ([fp(A)], "firing")]),
        ("quiet", [([fp(A), fp(B)], "firing"), None, None, ([fp(A)], "firing")]),
    ],
    ids=["send-resolved", "no-send-resolved"],
)
def test_send_resolved(receiver: str, expected: list[tuple[list[str], str] | None]) -> None:
    f = Fold(core())
    flushes = [
        [alert(A), alert(B)],
        [alert(A), alert(B, ends=250.0)],
        [alert(A, ends=500.0), alert(B, ends=250.0)],
        [alert(A, starts=800.0)],  # a new occurrence after everything resolved
    ]
    got = []
    for i, alerts in enumerate(flushes):
        reqs = f.sends(flush(alerts, 300.0 * i, seq=i + 1, receiver=receiver))
        assert len(reqs) <= 1
        got.append(([a.fingerprint for a in reqs[0].alerts], reqs[0].status) if reqs else None)
    assert got == expected


def test_all_resolved_without_send_resolved_is_logged_not_sent() -> None:
    f = Fold(core())
    f.sends(flush([alert(A)], 0.0, seq=1, receiver="quiet"))
    assert f.sends(flush([alert(A, ends=100.0)], 300.0, seq=2, receiver="quiet")) == []
    logged = group_of(f.state).log["quiet/webhook/0"]
    assert isinstance(logged, NflogEntry) and (logged.firing, logged.resolved, logged.at) == ([], [fp(A)], 300.0)


def test_one_request_per_integration_with_deterministic_ids() -> None:
    f = Fold(core())
    trace = {"traceparent": "00-abc-01"}
    outs = f.step(flush([alert(A), alert(B, ends=5.0)], 10.0, seq=7, receiver="multi", trace=trace))
    ids = [o.msg_id for o in outs]
    assert ids == [f"o1/g1/multi/{k}/7" for k in ("webhook/0", "webhook/1", "email/0", "pagerduty/0", "slack/0")]
    for o in outs:
        req = o.payload
        assert req.id == o.msg_id and o.subject == "g1"  # type: ignore[attr-defined]
        assert (req.org, req.group_id, req.receiver, req.flush_seq, req.created_at) == (  # type: ignore[attr-defined]
            "o1", "g1", "multi", 7, 10.0)
        assert req.trace == trace and req.status == "firing" and not req.acknowledged  # type: ignore[attr-defined]
        assert f"{req.integration.kind}/{req.integration.index}" in req.id  # type: ignore[attr-defined]
    # Resolved alerts only go to integrations with send_resolved.
    assert sent_fps([o.payload for o in outs]) == [  # type: ignore[misc]
        [fp(A), fp(B)], [fp(A)], [fp(A)], [fp(A), fp(B)], [fp(A), fp(B)]]
    # The same flush replayed on the same state gives the same requests.
    again = Fold(core()).step(flush([alert(A), alert(B, ends=5.0)], 10.0, seq=7, receiver="multi", trace=trace))
    assert [o.payload for o in again] == [o.payload for o in outs]


@pytest.mark.parametrize(("retention", "expires"), [(None, 7200.0), (1000.0, 1000.0)],
                         ids=["twice-repeat-interval", "retention-bound"])
def test_entry_expiry_timer(retention: float | None, expires: float) -> None:
    f = Fold(core() if retention is None else core(nflog_retention=retention))
    f.sends(flush([alert(A)], 0.0, repeat=3600.0))
    f.step(flush([], 1.0, seq=2))  # the router retired the group: no re-evaluations any more
    key = "team/webhook/0"
    f.advance(expires - 1.0)
    assert key in group_of(f.state).log
    f.advance(expires)
    assert key not in group_of(f.state).log
    # Without its entry the group starts over: a first notification.
    assert len(f.sends(flush([alert(A)], expires + 1.0, seq=3))) == 1


def test_quiet_group_repeats_at_the_first_tick_after_repeat_interval() -> None:
    f = Fold(core())
    (first,) = f.sends(flush([alert(A)], 0.0, repeat=3600.0, interval=300.0))
    last = last_of(f.state)
    assert last is not None and last.due_at == 3900.0 + 1.0  # no timer at the ticks before
    assert f.advance(3900.0) == []  # (the re-evaluation waits a moment for a router flush)
    outs = f.advance(3901.0)
    (repeat,) = [o.payload for o in outs]
    assert repeat.id == "o1/g1/team/webhook/0/1.13" and repeat.created_at == 3900.0  # type: ignore[attr-defined]
    assert repeat.alerts == first.alerts  # type: ignore[attr-defined]
    assert (last := last_of(f.state)) is not None and last.next == 7800.0  # the next repeat
    # a router flush at a tick replaces the stored one; its re-evaluations follow its own grid
    f.step(flush([alert(A), alert(B)], 4200.0, seq=2))
    assert (last := last_of(f.state)) is not None and last.next == 4200.0 + 3600.0 + 300.0


def test_unknown_receiver_is_rejected() -> None:
    with pytest.raises(Reject, match="receiver 'ghost'"):
        Fold(core()).step(flush([alert(A)], 0.0, receiver="ghost"))


def test_receiver_without_integrations_sends_nothing() -> None:
    f = Fold(core())
    assert f.step(flush([alert(A)], 0.0, receiver="nobody")) == []
    assert f.state == {}
