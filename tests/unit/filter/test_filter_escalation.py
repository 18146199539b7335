"""Escalation policies: their configuration, the pure step decisions, and the filter core's
escalation of a group (steps on time, acknowledged, resolved, restarted, replayed)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from filter_fold import CONFIG_YAML, Fold, ack, alert, change, flush, fp, sends

from contracts.messages import SendRequest
from pipeline.foundation.amconfig import load_config_text
from pipeline.foundation.runtime.step import Out
from stages.filter.config import FilterOptions, filter_config
from stages.filter.core import FilterCore
from stages.filter.escalation import Decision, decide, escalation_policies, start
from stages.filter.state import GroupState, group_record_key

CRIT = {"alertname": "ApiDown", "severity": "critical"}
CRIT2 = {"alertname": "DbDown", "severity": "critical"}
SEC = {"alertname": "Intrusion", "severity": "security"}
WARN = {"alertname": "Disk", "severity": "warning"}
GK = "{}:{}"

POLICIES: dict[str, Any] = {"policies": [
    {"name": "critical", "matchers": ['severity="critical"'],
     "steps": [{"after": "2s", "receivers": ["quiet"]}, {"after": "4s", "receivers": ["pager", "multi"]}]},
    {"name": "security", "matchers": ['severity="security"'], "ack": "forbidden",
     "steps": [{"after": "2s", "receivers": ["quiet"]}, {"after": "4s", "receivers": ["pager"]}]},
    {"name": "looping", "matchers": ['severity="loop"'], "repeat": 2,
     "steps": [{"after": 10, "receivers": ["quiet"]}, {"after": 30, "receivers": ["pager"]}]},
]}


def esc_core(policies: dict[str, Any] | None = None) -> FilterCore:
    cfg = load_config_text(CONFIG_YAML)
    receivers = {r.name for r in cfg.receivers}
    return FilterCore(filter_config(cfg, FilterOptions(), escalation_policies(policies or POLICIES, receivers)))


def levels(reqs: list[SendRequest]) -> list[tuple[int, str, str]]:
    return [(r.escalation_level, r.receiver, r.integration.kind) for r in reqs]


def run_to(f: Fold, t: float) -> list[SendRequest]:
    return sends(f.advance(t))


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("raw", "message"), [
    ({"policies": [{"name": "x", "steps": []}]}, r"policies\[0\] \(x\).steps: a policy needs at least one step"),
    ({"policies": [{"name": "x", "steps": [{"after": "5m", "receivers": ["ghost"]}]}]},
     "receiver 'ghost' is not in the configuration"),
    ({"policies": [{"name": "x", "ack": "maybe", "steps": [{"after": "5m", "receivers": ["team"]}]}]},
     "ack: expected allowed or forbidden"),
    ({"policies": [{"name": "x", "matchers": ["{{oops"], "steps": [{"after": "5m", "receivers": ["team"]}]}]},
     "matchers"),
    ({"policies": [{"name": "x", "steps": [{"after": "5m", "receivers": ["team"]},
                                          {"after": "1m", "receivers": ["team"]}]}]}, "later and later"),
    ({"policies": [{"name": "x", "steps": [{"after": "soon", "receivers": ["team"]}]}]}, r"steps\[0\].after"),
    ({"policies": [{"name": "x", "repeat": -1, "steps": [{"after": "5m", "receivers": ["team"]}]}]}, "repeat"),
    ({"policies": [{"name": "x", "typo": 1, "steps": [{"after": "5m", "receivers": ["team"]}]}]},
     "unknown field 'typo'"),
    ({"policies": [{"name": "x", "steps": [{"after": "5m", "receivers": ["team"]}]},
                   {"name": "x", "steps": [{"after": "5m", "receivers": ["team"]}]}]}, "used twice"),
    ({"rules": []}, "unknown field 'rules'"),
], ids=["no-steps", "unknown-receiver", "bad-ack", "bad-matcher", "not-increasing", "bad-duration",
        "negative-repeat", "unknown-field", "duplicate-name", "unknown-top-field"])
def test_invalid_policies_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        escalation_policies(raw, {"team"})


def test_policy_shape() -> None:
    (p,) = escalation_policies({"policies": [{"name": "critical", "matchers": ['severity="critical"'],
                                              "steps": [{"after": "5m", "receivers": ["a", "b"]},
                                                        {"after": "1h", "receivers": ["c"]}], "repeat": 1}]})
    assert (p.name, p.ack, p.repeat) == ("critical", "allowed", 1)
    assert [(s.after, s.receivers) for s in p.steps] == [(300.0, ("a", "b")), (3600.0, ("c",))]
    assert p.matches({"severity": "critical"}) and not p.matches({"severity": "warning"})


def test_settings_section_errors_name_file_and_line(tmp_path: Any) -> None:
    from pipeline.application.settings import load_text
    from pipeline.foundation.amconfig import ConfigError

    text = CONFIG_YAML + "tocsin:\n  escalation:\n    policies:\n      - name: p\n        steps:\n" \
                         "          - {after: 1m, receivers: [ghost]}\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, "am.yml")
    (err,) = info.value.errors
    line = text.splitlines().index("  escalation:") + 1
    assert err.startswith(f"am.yml:{line}: tocsin.escalation: ") and "'ghost'" in err
    ok = load_text(text.replace("ghost", "pager"), "am.yml")
    assert [p.name for p in filter_config(ok.config).escalation] == ["p"]


# ---------------------------------------------------------------- pure decisions

_P = escalation_policies(POLICIES)
_E = start(_P[0], 100.0, "1")  # steps at 102 and 104
_FORBIDDEN = start(_P[1], 100.0, "1")


@pytest.mark.parametrize(("esc", "now", "firing", "notifiable", "acked", "expected"), [
    (_E, 101.9, True, True, False, Decision.WAIT),
    (_E, 102.0, True, True, False, Decision.NOTIFY),
    (_E, 102.0, True, True, True, Decision.PAUSE),
    (_E, 102.0, False, False, False, Decision.END),
    (_E, 102.0, True, False, False, Decision.SKIP),
    (_FORBIDDEN, 102.0, True, True, True, Decision.NOTIFY),
    (msgspec.structs.replace(_E, paused=True), 103.0, True, True, False, Decision.WAIT),
    (msgspec.structs.replace(_E, next=1), 103.0, True, True, False, Decision.WAIT),
    (msgspec.structs.replace(_E, next=1), 104.0, True, True, False, Decision.NOTIFY),
    (msgspec.structs.replace(_E, next=2), 1e9, True, True, False, Decision.END),
], ids=["before-step", "due", "acked-pauses", "resolved-ends", "all-muted-skips", "forbidden-ignores-ack",
        "paused-waits", "second-not-due", "second-due", "no-step-left"])
def test_decide(esc: Any, now: float, firing: bool, notifiable: bool, acked: bool, expected: Decision) -> None:
    assert decide(esc, now, firing=firing, notifiable=notifiable, acked=acked) is expected


def test_repeat_runs_the_steps_again_from_the_last_step() -> None:
    e = start(_P[2], 0.0, "1")
    assert e.total == 6
    assert [(e.step_at(n), e.level_of(n)) for n in range(6)] == [
        (10.0, 1), (30.0, 2), (40.0, 1), (60.0, 2), (70.0, 1), (90.0, 2)]
    assert msgspec.structs.replace(e, next=6).due_at is None


# ---------------------------------------------------------------- the core


def _fire(f: Fold, labels: dict[str, str], t: float, seq: int = 1, *alerts: Any) -> list[SendRequest]:
    a = [alert(labels, starts=t), *alerts]
    for x in a:
        f.step(change("fired", x, t))
    return f.sends(flush(a, t, seq=seq, interval=60.0, repeat=3600.0))


def test_every_level_on_time_with_its_own_ids() -> None:
    f = Fold(esc_core())
    assert levels(_fire(f, CRIT, 100.0)) == [(0, "team", "webhook")]
    assert run_to(f, 101.99) == []
    l1 = run_to(f, 102.0)
    assert levels(l1) == [(1, "quiet", "webhook")]
    assert f.now == 102.0 and l1[0].created_at == 102.0
    assert l1[0].id == "o1/g1/quiet/webhook/0/esc1.0" and l1[0].escalation_policy == "critical"
    assert [a.fingerprint for a in l1[0].alerts] == [fp(CRIT)]
    l2 = run_to(f, 104.0)
    assert sorted(levels(l2)) == sorted([(2, "pager", "pagerduty"), (2, "pager", "webhook"),
                                         (2, "multi", "slack"), (2, "multi", "pagerduty"), (2, "multi", "email"),
                                         (2, "multi", "webhook"), (2, "multi", "webhook")])
    assert len({r.id for r in l2}) == len(l2)
    assert run_to(f, 3000.0) == []  # no step left (and the repeat is an hour later)


def test_no_policy_no_escalation() -> None:
    f = Fold(esc_core())
    _fire(f, WARN, 0.0)
    assert run_to(f, 1000.0) == []


def test_ack_between_steps_stops_then_unack_resumes_at_once() -> None:
    for by in ({"group_key": GK}, {"fingerprint": fp(CRIT)}):
        f = Fold(esc_core())
        _fire(f, CRIT, 100.0)
        assert levels(run_to(f, 102.0)) == [(1, "quiet", "webhook")]
        f.step(ack(103.0, **by))
        assert run_to(f, 500.0) == []
        g = f.state[group_record_key("o1", GK)]
        assert isinstance(g, GroupState) and g.esc is not None and g.esc.paused
        outs = f.step(ack(600.0, action="unack", **by))
        assert outs == []
        assert {lv for lv, _, _ in levels(run_to(f, 600.0))} == {2}  # the overdue step, at once


def test_resolution_ends_escalation_and_is_notified() -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    f.step(ack(101.0, group_key=GK))
    resolved = f.sends(flush([alert(CRIT, starts=100.0, ends=103.0)], 103.0, seq=2, interval=60.0))
    assert [(r.receiver, r.status) for r in resolved] == [("team", "resolved")]
    g = f.state.get(group_record_key("o1", GK))
    assert not isinstance(g, GroupState) or g.esc is None
    assert run_to(f, 1000.0) == []


def test_forbidden_ack_does_not_stop_escalation() -> None:
    f = Fold(esc_core())
    _fire(f, SEC, 100.0)
    f.step(ack(101.0, group_key=GK))
    assert levels(run_to(f, 102.0)) == [(1, "quiet", "webhook")]
    assert {lv for lv, _, _ in levels(run_to(f, 104.0))} == {2}


def test_new_alert_joining_an_acknowledged_group_restarts_at_level_0() -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    f.step(ack(101.0, group_key=GK))
    assert run_to(f, 150.0) == []
    f.step(change("fired", alert(CRIT2, starts=150.0), 150.0))
    lvl0 = f.sends(flush([alert(CRIT, starts=100.0), alert(CRIT2, starts=150.0)], 150.0, seq=2, interval=60.0))
    assert levels(lvl0) == [(0, "team", "webhook")]
    l1 = run_to(f, 152.0)
    assert levels(l1) == [(1, "quiet", "webhook")]
    assert l1[0].id == "o1/g1/quiet/webhook/0/esc2.0"  # a new run: new ids
    assert {lv for lv, _, _ in levels(run_to(f, 154.0))} == {2}


def test_new_alert_while_not_acknowledged_keeps_the_running_escalation() -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    f.step(change("fired", alert(CRIT2, starts=101.0), 101.0))
    f.sends(flush([alert(CRIT, starts=100.0), alert(CRIT2, starts=101.0)], 101.0, seq=2, interval=60.0))
    l1 = run_to(f, 102.0)
    assert levels(l1) == [(1, "quiet", "webhook")] and l1[0].id.endswith("/esc1.0")
    assert len(l1[0].alerts) == 2


def test_config_change_never_restarts_or_reshapes_a_running_escalation() -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    assert run_to(f, 102.0) != []
    other = {"policies": [{"name": "critical", "matchers": ['severity="critical"'],
                           "steps": [{"after": "1s", "receivers": ["team"]},
                                     {"after": "100s", "receivers": ["team"]}]}]}
    f.core = esc_core(other)
    assert levels(run_to(f, 104.0))[0][0] == 2  # the steps it started with


def test_a_replayed_step_has_the_same_ids() -> None:
    """What a crash does: the same timer fires again on the same state (the notifier's ledger
    then drops the copy by id)."""
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    state = dict(f.state)
    key = group_record_key("o1", GK)
    first = f.core.fire(state, key, 102.0)
    again = f.core.fire(state, key, 102.0)
    assert [o.msg_id for o in first.outputs] == [o.msg_id for o in again.outputs] != []
    assert first.changes == again.changes


@pytest.mark.parametrize("by", ["group", "fingerprint", "matchers"])
def test_pagerduty_acknowledge_whatever_the_ack_is_keyed_by(by: str) -> None:
    f = Fold(esc_core())
    a = alert(WARN, starts=0.0)  # (no policy: only the acknowledgement sends)
    f.step(change("fired", a, 0.0))
    f.sends(flush([a], 0.0, receiver="pager", interval=60.0))
    target: dict[str, Any] = {"group": {"group_key": GK}, "fingerprint": {"fingerprint": fp(WARN)},
                              "matchers": {}}[by]
    cmd = ack(10.0, **target)
    if by == "matchers":
        cmd = msgspec.structs.replace(cmd, matchers=['alertname="Disk"'])
    outs: list[Out] = f.step(cmd)
    reqs = sends(outs)
    assert [(r.integration.kind, r.acknowledged) for r in reqs] == [("pagerduty", True)]
    assert f.step(msgspec.structs.replace(cmd, at=11.0)) == []  # once


def test_ack_by_matchers_acks_each_matching_firing_alert() -> None:
    f = Fold(esc_core())
    for labels in (CRIT, CRIT2, WARN):
        f.step(change("fired", alert(labels), 0.0))
    f.step(msgspec.structs.replace(ack(5.0), matchers=['severity="critical"']))
    assert sorted(k for k in f.state if k.startswith("ack/")) == sorted(
        f"ack/o1/alert/{fp(x)}" for x in (CRIT, CRIT2))
    f.step(msgspec.structs.replace(ack(6.0, action="unack"), matchers=['alertname="DbDown"']))
    assert [k for k in f.state if k.startswith("ack/")] == [f"ack/o1/alert/{fp(CRIT)}"]


def test_a_test_alert_may_speed_its_escalation_up() -> None:
    f = Fold(esc_core())
    _fire(f, {**CRIT, "tocsin_escalation_speed": "4"}, 100.0)
    assert levels(run_to(f, 100.5)) == [(1, "quiet", "webhook")]  # 2 s / 4
    assert {lv for lv, _, _ in levels(run_to(f, 101.0))} == {2}


@pytest.mark.parametrize(("value", "speed"), [("4", 4.0), ("0.5", 1.0), ("1e9", 1.0), ("fast", 1.0)])
def test_speed_label_bounds(value: str, speed: float) -> None:
    from stages.filter.escalation import TEST_SPEED_LABEL, speed_of

    assert speed_of([{TEST_SPEED_LABEL: value}]) == speed


def test_ack_expiry_resumes_a_paused_escalation() -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    f.step(ack(101.0, group_key=GK, expires=300.0))
    assert run_to(f, 299.0) == []
    resumed = run_to(f, 300.0)  # the ack's timer deletes it: the overdue level 1 at once, level 2 next
    assert [lv for lv, _, _ in levels(resumed)][:1] == [1]
    assert {lv for lv, _, _ in levels(resumed + run_to(f, 301.0))} == {1, 2}


@pytest.mark.parametrize(("until", "expected"), [
    (101.0, []),  # resolved before any step: only the route's receiver (the flush) hears it
    (102.0, []),  # level 1 paged "quiet", whose only integration sends no resolution
    (104.0, [("multi", "pagerduty"), ("multi", "slack"), ("multi", "webhook"),
             ("pager", "pagerduty"), ("pager", "webhook")]),
], ids=["no-step", "level-1-no-send-resolved", "level-2"])
def test_resolution_reaches_every_receiver_an_escalation_paged(until: float, expected: list[tuple[str, str]]) -> None:
    f = Fold(esc_core())
    _fire(f, CRIT, 100.0)
    run_to(f, until)
    resolved = f.sends(flush([alert(CRIT, starts=100.0, ends=until + 0.5)], until + 0.5, seq=2, interval=60.0))
    assert ("team", "webhook") in [(r.receiver, r.integration.kind) for r in resolved]
    paged = sorted((r.receiver, r.integration.kind) for r in resolved if r.receiver != "team")
    assert paged == expected  # "multi"'s email and m1 webhook (send_resolved false) hear nothing
    assert all(r.status == "resolved" for r in resolved)
    assert len({r.id for r in resolved}) == len(resolved)
    assert run_to(f, 5000.0) == []  # once
