"""Pushed alerts through the rules core: Alertmanager timelines, timers, ids and organisations."""

from __future__ import annotations

import pytest
from rules_fold import Fold, changes, pa, payloads, push

from contracts.labels import fingerprint
from pipeline.foundation.runtime.step import Reject
from pipeline.foundation.runtime.subjects import token as subject_token
from stages.rules.core import RulesCore, alert_key
from stages.rules.state import AlertState

L = {"alertname": "HighCPU", "instance": "web-1"}
FP = fingerprint(L)


def fold(resolve_timeout: float = 300.0, retention: float = 3600.0) -> Fold:
    return Fold(RulesCore(resolve_timeout=resolve_timeout, retention=retention))


def stored(f: Fold, org: str = "o1", fp: str = FP) -> AlertState:
    v = f.state[alert_key(org, fp)]
    assert isinstance(v, AlertState)
    return v


def test_first_push_fires_with_resolve_timeout_end() -> None:
    f = fold()
    out = f.step(push(pa(L, starts=90.0, ann={"summary": "hot"}, url="http://prom/g"), at=100.0,
                      request_id="req-1"), 100.0)
    [p] = payloads(out)
    assert p.change == "fired"
    assert p.alert.labels == L and p.alert.fingerprint == FP and p.alert.org == "o1"
    assert (p.alert.starts_at, p.alert.ends_at) == (90.0, 400.0)
    assert p.alert.annotations == {"summary": "hot"} and p.alert.generator_url == "http://prom/g"
    assert p.cause.kind == "push" and p.cause.id == "req-1" and p.cause.at == 100.0
    assert p.trace == {"traceparent": "00-push-01"}
    assert out[0].msg_id == f"rules:req-1:{FP}:fired"
    assert out[0].subject == f"o1.{FP}"
    assert stored(f).deadline == 400.0


def test_identical_repush_outputs_nothing() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0, ends=1000.0, ann={"s": "x"}), at=100.0), 100.0)
    before = dict(f.state)
    assert f.step(push(pa(L, starts=90.0, ends=1000.0, ann={"s": "x"}), at=160.0), 160.0) == []
    assert f.state == before


def test_repush_without_end_moves_the_timeout() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0), at=100.0), 100.0)
    out = f.step(push(pa(L, starts=90.0), at=160.0), 160.0)
    [p] = payloads(out)
    assert p.change == "updated" and p.alert.ends_at == 460.0
    assert f.advance(459.0) == []
    assert changes(f.advance(460.0)) == [("resolved", "HighCPU")]


@pytest.mark.parametrize(
    ("second_start", "want_start", "want_change"),
    [(50.0, 50.0, "updated"), (95.0, 90.0, None)],
    ids=["earlier-start-wins", "later-start-keeps-first"],
)
def test_repush_start(second_start: float, want_start: float, want_change: str | None) -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0, ends=1000.0), at=100.0), 100.0)
    out = f.step(push(pa(L, starts=second_start, ends=1000.0), at=110.0), 110.0)
    assert [p.change for p in payloads(out)] == ([want_change] if want_change else [])
    assert stored(f).starts_at == want_start


def test_annotations_follow_the_latest_push() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0, ends=1000.0, ann={"summary": "a", "x": "1"}), at=100.0), 100.0)
    out = f.step(push(pa(L, starts=90.0, ends=1000.0, ann={"summary": "b"}), at=110.0), 110.0)
    [p] = payloads(out)
    assert p.change == "updated" and p.alert.annotations == {"summary": "b"}


def test_explicit_later_end_survives_a_push_without_end() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0, ends=5000.0), at=100.0), 100.0)
    assert f.step(push(pa(L, starts=90.0), at=110.0), 110.0) == []
    v = stored(f)
    assert v.ends_at == 5000.0 and v.timeout is True  # Alertmanager keeps the younger's timeout flag


def test_resolve_then_double_resolve() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0), at=100.0), 100.0)
    out = f.step(push(pa(L, starts=90.0, ends=120.0), at=120.0), 120.0)
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.ends_at == 120.0
    # the same resolve again, and an earlier one: the latest resolve time is kept, nothing to say
    assert f.step(push(pa(L, starts=90.0, ends=120.0), at=130.0), 130.0) == []
    assert f.step(push(pa(L, starts=90.0, ends=110.0), at=140.0), 140.0) == []
    assert stored(f).ends_at == 120.0
    # a later resolve time replaces it: visible, so "updated" (still resolved)
    out = f.step(push(pa(L, starts=90.0, ends=135.0), at=150.0), 150.0)
    [u] = payloads(out)
    assert u.change == "updated" and u.alert.ends_at == 135.0


def test_reactivation_is_a_new_occurrence() -> None:
    f = fold()
    f.step(push(pa(L, starts=90.0), at=100.0), 100.0)
    f.step(push(pa(L, starts=90.0, ends=120.0), at=120.0), 120.0)
    out = f.step(push(pa(L), at=200.0), 200.0)
    [p] = payloads(out)
    assert p.change == "fired" and p.alert.starts_at == 200.0 and p.alert.ends_at == 500.0


def test_resolve_timeout_fires_then_retention_deletes() -> None:
    f = fold(resolve_timeout=60.0, retention=600.0)
    f.step(push(pa(L), at=100.0), 100.0)
    out = f.advance(160.0)
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.ends_at == 160.0
    assert r.cause.kind == "timer" and r.cause.at == 160.0 and r.trace == {}
    assert out[0].msg_id == f"rules:t:o1.{FP}:160.0"
    assert stored(f).deadline == 760.0
    # a late duplicate resolve within retention is recognised
    assert f.step(push(pa(L, starts=100.0, ends=160.0), at=300.0), 300.0) == []
    assert f.advance(760.0) == []
    assert f.state == {}


def test_resolved_push_of_an_unknown_alert_is_announced_once() -> None:
    f = fold()
    out = f.step(push(pa(L, starts=10.0, ends=20.0), at=100.0), 100.0)
    assert changes(out) == [("resolved", "HighCPU")]
    assert f.step(push(pa(L, starts=10.0, ends=20.0), at=101.0), 101.0) == []


def test_lagging_timer_is_applied_before_the_input() -> None:
    # The runtime has not fired the timeout yet when the next push arrives: the core does it first.
    f = Fold(RulesCore(resolve_timeout=300.0), eager=False)
    f.step(push(pa(L), at=0.0), 0.0)
    out = f.step(push(pa(L), at=400.0, request_id="late"), 400.0)
    assert [(o.payload.change, o.msg_id) for o in out] == [  # type: ignore[attr-defined]
        ("resolved", f"rules:t:o1.{FP}:300.0"),
        ("fired", f"rules:late:{FP}:fired"),
    ]
    assert payloads(out)[1].alert.starts_at == 400.0


def test_org_is_the_pushs_whatever_the_label() -> None:
    """The API splits a request by org_id label before it publishes (parse_push): a push's org
    is its alerts' org. A label that disagrees does not move the alert out of the partition
    it was published to (tests/unit/rules/test_rules_org_subjects.py checks the whole path)."""
    f = fold()
    labelled = {"alertname": "X", "org_id": "tenant a"}
    out = f.step(push(pa(labelled), pa(L), at=1.0, org="o1"), 1.0)
    a, b = payloads(out)
    assert a.alert.org == "o1" and out[0].subject == f"{subject_token('o1')}.{fingerprint(labelled)}"
    assert b.alert.org == "o1"


def test_same_labels_in_two_orgs_are_two_alerts() -> None:
    f = fold()
    f.step(push(pa(L), at=1.0, org="o1"), 1.0)
    out = f.step(push(pa(L), at=2.0, org="o2"), 2.0)
    assert changes(out) == [("fired", "HighCPU")]
    assert stored(f, "o1").fingerprint == stored(f, "o2").fingerprint
    timers = sorted(o.msg_id for o in f.advance(1000.0))
    assert len(set(timers)) == 2  # timer ids carry the org


def test_one_push_repeating_an_alert_gets_distinct_ids() -> None:
    f = fold()
    out = f.step(push(pa(L, starts=1.0, ann={"v": "1"}), pa(L, starts=1.0, ann={"v": "2"}),
                      pa(L, starts=1.0, ann={"v": "3"}), at=1.0, request_id="r"), 1.0)
    assert [o.msg_id for o in out] == [f"rules:r:{FP}:fired", f"rules:r:{FP}:updated", f"rules:r:{FP}:updated:2"]


@pytest.mark.parametrize(
    "alert",
    [pa({}), pa({"job": ""}), pa(L, starts=10.0, ends=5.0)],
    ids=["no-labels", "empty-values", "end-before-start"],
)
def test_invalid_alert_rejects_the_push(alert: object) -> None:
    with pytest.raises(Reject, match="alert 1"):
        RulesCore().step({}, push(pa(L), alert, at=100.0), 100.0)  # type: ignore[arg-type]


def test_subject_token() -> None:
    assert subject_token("acme-01_x") == "acme-01_x"
    for org in ["a.b", "a b", "", "ü", "~", "x" * 65, "a*b>"]:
        tok = subject_token(org)
        assert tok.startswith("~")
        assert all(c.isalnum() or c in "-_~" for c in tok)
    # injective even against orgs that look like an encoding
    assert subject_token("~YS5i") != subject_token("a.b")
    assert len({subject_token(o) for o in ["a.b", "YS5i", "~YS5i", "a b"]}) == 4
