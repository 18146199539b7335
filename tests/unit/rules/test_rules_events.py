"""Event rules through the rules core: the default device table, groups, thresholds, timers."""

from __future__ import annotations

import pytest
from rules_fold import Fold, changes, ev, payloads

from contracts.labels import fingerprint
from contracts.messages import PushedAlerts
from pipeline.foundation.runtime.step import Reject
from stages.rules.core import RulesCore, alert_subject
from stages.rules.rules import FireRule, Override, RuleGroup, RuleSet
from stages.rules.state import AlertState, ResourceIndex

# The device platform's alert table, written out from its specification (not from DEFAULT_RULES):
# (firing reason, the reason that resolves it, its exclusive siblings, severity).
TABLE = [
    ("DeviceDisconnected", "DeviceConnected", [], "critical"),
    ("DeviceApplicationError", "DeviceApplicationHealthy", ["DeviceApplicationDegraded"], "critical"),
    ("DeviceApplicationDegraded", "DeviceApplicationHealthy", ["DeviceApplicationError"], "warning"),
    ("DeviceCPUCritical", "DeviceCPUNormal", ["DeviceCPUWarning"], "critical"),
    ("DeviceCPUWarning", "DeviceCPUNormal", ["DeviceCPUCritical"], "warning"),
    ("DeviceMemoryCritical", "DeviceMemoryNormal", ["DeviceMemoryWarning"], "critical"),
    ("DeviceMemoryWarning", "DeviceMemoryNormal", ["DeviceMemoryCritical"], "warning"),
    ("DeviceDiskCritical", "DeviceDiskNormal", ["DeviceDiskWarning"], "critical"),
    ("DeviceDiskWarning", "DeviceDiskNormal", ["DeviceDiskCritical"], "warning"),
]
RESOLVE_ALL = ["ResourceDeleted", "DeviceDecommissioned"]
ALL_RESOLVERS = sorted({row[1] for row in TABLE})
IDS = [row[0] for row in TABLE]


def default_fold() -> Fold:
    return Fold(RulesCore())


# ---------------------------------------------------------------------------- the default table


@pytest.mark.parametrize(("reason", "resolver", "siblings", "severity"), TABLE, ids=IDS)
def test_default_row_fires_and_resolves(reason: str, resolver: str, siblings: list[str], severity: str) -> None:
    f = default_fold()
    out = f.step(ev(reason, 100.0, org="acme", kind="Device", name="dev-7", message="it broke", id="e1"), 101.0)
    [fired] = payloads(out)
    assert fired.change == "fired"
    labels = {
        "alertname": reason,
        "org_id": "acme",
        "resource": "dev-7",
        "resource_kind": "Device",
        "severity": severity,
    }
    assert fired.alert.labels == labels
    assert fired.alert.annotations == {"summary": "it broke"}
    assert fired.alert.starts_at == 100.0
    assert fired.alert.ends_at is None
    assert fired.alert.org == "acme"
    assert fired.alert.fingerprint == fingerprint(labels)
    assert fired.cause.kind == "event" and fired.cause.id == "e1" and fired.cause.at == 100.0
    assert fired.trace == {"traceparent": "00-abc-def-01"}
    assert out[0].msg_id == f"rules:e1:{fingerprint(labels)}:fired"
    assert out[0].subject == f"acme.{fingerprint(labels)}"

    out = f.step(ev(resolver, 150.0, org="acme", kind="Device", name="dev-7", message="ok now"), 151.0)
    [resolved] = payloads(out)
    assert resolved.change == "resolved"
    assert resolved.alert.fingerprint == fired.alert.fingerprint
    assert resolved.alert.starts_at == 100.0 and resolved.alert.ends_at == 150.0
    assert resolved.alert.annotations == {"summary": "it broke"}  # a resolve does not rewrite the summary


@pytest.mark.parametrize(("reason", "resolver", "siblings", "severity"), TABLE, ids=IDS)
def test_default_row_other_resolvers_leave_it_alone(
    reason: str, resolver: str, siblings: list[str], severity: str
) -> None:
    f = default_fold()
    f.step(ev(reason, 100.0), 100.0)
    for other in ALL_RESOLVERS:
        if other != resolver:
            assert f.step(ev(other, 110.0), 110.0) == [], other


@pytest.mark.parametrize("resolve_all", RESOLVE_ALL)
@pytest.mark.parametrize(("reason", "resolver", "siblings", "severity"), TABLE, ids=IDS)
def test_default_row_resolved_by_resolve_all(
    reason: str, resolver: str, siblings: list[str], severity: str, resolve_all: str
) -> None:
    f = default_fold()
    f.step(ev(reason, 100.0), 100.0)
    out = f.step(ev(resolve_all, 130.0), 130.0)
    assert changes(out) == [("resolved", reason)]
    assert payloads(out)[0].alert.ends_at == 130.0


@pytest.mark.parametrize(("reason", "resolver", "siblings", "severity"), TABLE, ids=IDS)
def test_default_row_exclusive_siblings(reason: str, resolver: str, siblings: list[str], severity: str) -> None:
    for sibling in siblings:
        f = default_fold()
        f.step(ev(sibling, 100.0), 100.0)
        out = f.step(ev(reason, 120.0), 120.0)
        assert changes(out) == [("resolved", sibling), ("fired", reason)]
        old, new = payloads(out)
        assert old.alert.ends_at == 120.0 and new.alert.starts_at == 120.0
        # the group's resolver now resolves the newer alert only
        assert changes(f.step(ev(resolver, 130.0), 130.0)) == [("resolved", reason)]


def test_unknown_reasons_and_other_ops_do_nothing() -> None:
    f = default_fold()
    assert f.step(ev("DeviceUpdated", 1.0), 1.0) == []
    assert f.step(ev("DeviceDisconnected", 1.0, op="update"), 1.0) == []
    assert f.state == {}


def test_rejects_other_inputs() -> None:
    with pytest.raises(Reject):
        RulesCore().step({}, object(), 1.0)


# ---------------------------------------------------------------------------- identity and groups


def test_groups_are_independent_per_group_and_resource() -> None:
    f = default_fold()
    f.step(ev("DeviceCPUWarning", 1.0), 1.0)
    out = f.step(ev("DeviceMemoryWarning", 2.0), 2.0)
    out += f.step(ev("DeviceCPUCritical", 3.0, name="d2"), 3.0)
    assert changes(out) == [("fired", "DeviceMemoryWarning"), ("fired", "DeviceCPUCritical")]
    assert changes(f.step(ev("DeviceCPUNormal", 4.0), 4.0)) == [("resolved", "DeviceCPUWarning")]


def test_resource_kind_is_part_of_the_identity() -> None:
    f = default_fold()
    out = f.step(ev("DeviceDisconnected", 1.0, kind="Device", name="x"), 1.0)
    out += f.step(ev("DeviceDisconnected", 2.0, kind="Fleet", name="x"), 2.0)
    a, b = payloads(out)
    assert [a.change, b.change] == ["fired", "fired"]
    assert a.alert.fingerprint != b.alert.fingerprint
    out = f.step(ev("DeviceConnected", 3.0, kind="Fleet", name="x"), 3.0)
    [r] = payloads(out)
    assert r.alert.labels["resource_kind"] == "Fleet"


def test_same_resource_in_two_orgs_is_two_alerts() -> None:
    f = default_fold()
    f.step(ev("DeviceDisconnected", 1.0, org="o1"), 1.0)
    f.step(ev("DeviceDisconnected", 1.0, org="o 2"), 1.0)
    out = f.step(ev("ResourceDeleted", 2.0, org="o 2"), 2.0)
    [r] = payloads(out)
    assert r.alert.org == "o 2"
    assert out[0].subject.startswith("~")  # an org that is not subject-safe is encoded
    assert any(isinstance(v, AlertState) and v.org == "o1" and v.status == "firing" for v in f.state.values())


def test_resolve_all_resolves_every_group_and_clears_the_index() -> None:
    f = default_fold()
    for i, reason in enumerate(["DeviceDisconnected", "DeviceCPUCritical", "DeviceDiskWarning"]):
        f.step(ev(reason, float(i)), float(i))
    f.step(ev("DeviceCPUCritical", 5.0, name="other"), 5.0)
    out = f.step(ev("DeviceDecommissioned", 10.0), 10.0)
    assert sorted(changes(out)) == [
        ("resolved", "DeviceCPUCritical"),
        ("resolved", "DeviceDisconnected"),
        ("resolved", "DeviceDiskWarning"),
    ]
    assert all(p.alert.ends_at == 10.0 for p in payloads(out))
    indexes = [k for k, v in f.state.items() if isinstance(v, ResourceIndex)]
    assert indexes == ["res/o1/Device/other"]
    assert f.step(ev("ResourceDeleted", 11.0), 11.0) == []  # nothing left to resolve


def test_refire_keeps_start_and_updates_summary() -> None:
    f = default_fold()
    f.step(ev("DeviceCPUWarning", 10.0, message="cpu at 85%"), 10.0)
    assert f.step(ev("DeviceCPUWarning", 20.0, message="cpu at 85%"), 20.0) == []
    out = f.step(ev("DeviceCPUWarning", 30.0, message="cpu at 88%"), 30.0)
    [u] = payloads(out)
    assert u.change == "updated" and u.alert.starts_at == 10.0
    assert u.alert.annotations == {"summary": "cpu at 88%"}


def test_fires_again_after_resolve_as_a_new_occurrence() -> None:
    f = default_fold()
    f.step(ev("DeviceDisconnected", 10.0), 10.0)
    f.step(ev("DeviceConnected", 20.0), 20.0)
    out = f.step(ev("DeviceDisconnected", 30.0), 30.0)
    [again] = payloads(out)
    assert again.change == "fired" and again.alert.starts_at == 30.0 and again.alert.ends_at is None


def test_duplicate_resolve_does_nothing() -> None:
    f = default_fold()
    f.step(ev("DeviceDisconnected", 10.0), 10.0)
    assert changes(f.step(ev("DeviceConnected", 20.0), 20.0)) == [("resolved", "DeviceDisconnected")]
    assert f.step(ev("DeviceConnected", 21.0), 21.0) == []


@pytest.mark.parametrize(
    ("first", "late"),
    [
        (("DeviceDisconnected", 20.0), ("DeviceConnected", 10.0)),  # a resolve from before the alert
        (("DeviceCPUCritical", 20.0), ("DeviceCPUWarning", 10.0)),  # an older sibling
    ],
    ids=["late-resolve", "late-sibling"],
)
def test_stale_events_are_ignored(first: tuple[str, float], late: tuple[str, float]) -> None:
    f = default_fold()
    f.step(ev(first[0], first[1]), first[1])
    assert f.step(ev(late[0], late[1]), 30.0) == []


def test_stale_fire_after_resolve_is_ignored() -> None:
    f = default_fold()
    f.step(ev("DeviceDisconnected", 10.0), 10.0)
    f.step(ev("DeviceConnected", 30.0), 30.0)
    assert f.step(ev("DeviceDisconnected", 25.0), 31.0) == []  # committed late: it happened before the resolve


def test_field_labels_and_event_severity() -> None:
    rules = RuleSet(
        groups=[RuleGroup(name="g", fire=[FireRule(reason="Boom")], resolve=["Calm"])],
        field_labels={"environment": "env", "rack": "rack"},
    )
    f = Fold(RulesCore(rules))
    out = f.step(ev("Boom", 1.0, severity="page", fields={"env": "prod", "rack": 7, "x": "y"}), 1.0)
    [p] = payloads(out)
    assert p.alert.labels == {
        "alertname": "Boom",
        "org_id": "o1",
        "resource": "d1",
        "resource_kind": "Device",
        "severity": "page",
        "environment": "prod",
        "rack": "7",
    }
    # The resolving event carries different fields: it still finds the alert through the index.
    assert changes(f.step(ev("Calm", 2.0, fields={"env": "staging"}), 2.0)) == [("resolved", "Boom")]


# ---------------------------------------------------------------------------- thresholds per group


def usage_rules() -> RuleSet:
    rule = FireRule(
        reason="DeviceCPUUsage",
        severity="warning",
        value_field="cpu_percent",
        threshold=90,
        overrides=[
            Override(org="acme", threshold=70),
            Override(match={"environment": "production"}, threshold=80),
            Override(match={"environment": "development"}, threshold=95),
            Override(match={"site": "lab"}, threshold=99),  # an event field that is not a label
        ],
    )
    return RuleSet(groups=[RuleGroup(name="cpu_usage", fire=[rule])], field_labels={"environment": "env"})


@pytest.mark.parametrize(
    ("org", "fields", "fires"),
    [
        ("o1", {"env": "production", "cpu_percent": 85}, True),
        ("o1", {"env": "production", "cpu_percent": 80}, False),  # at the threshold: not above
        ("o1", {"env": "development", "cpu_percent": 85}, False),
        ("o1", {"env": "development", "cpu_percent": 96}, True),
        ("o1", {"env": "staging", "cpu_percent": 85}, False),  # the rule's default, 90
        ("o1", {"env": "staging", "cpu_percent": 90.5}, True),
        ("o1", {"cpu_percent": "91"}, True),  # numbers as text are numbers
        ("acme", {"env": "development", "cpu_percent": 75}, True),  # the org's override comes first
        ("o1", {"site": "lab", "cpu_percent": 95}, False),
        ("o1", {"site": "lab", "cpu_percent": 99.5}, True),
    ],
    ids=["prod-85", "prod-80", "dev-85", "dev-96", "default-85", "default-90.5", "text", "org", "lab-95", "lab-99.5"],
)
def test_threshold_per_group(org: str, fields: dict[str, object], fires: bool) -> None:
    f = Fold(RulesCore(usage_rules()))
    out = f.step(ev("DeviceCPUUsage", 1.0, org=org, fields=fields), 1.0)
    assert changes(out) == ([("fired", "DeviceCPUUsage")] if fires else [])


@pytest.mark.parametrize("value", [80, 42.0], ids=["at", "below"])
def test_threshold_at_or_below_resolves(value: float) -> None:
    f = Fold(RulesCore(usage_rules()))
    f.step(ev("DeviceCPUUsage", 1.0, fields={"env": "production", "cpu_percent": 95}), 1.0)
    f.step(ev("DeviceCPUUsage", 2.0, fields={"env": "production", "cpu_percent": 97}), 2.0)
    out = f.step(ev("DeviceCPUUsage", 3.0, fields={"env": "production", "cpu_percent": value}), 3.0)
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.starts_at == 1.0 and r.alert.ends_at == 3.0


@pytest.mark.parametrize(
    "fields", [{}, {"cpu_percent": "lots"}, {"cpu_percent": True}, {"cpu_percent": float("nan")}],
    ids=["missing", "text", "bool", "nan"],
)
def test_threshold_rule_rejects_events_without_a_number(fields: dict[str, object]) -> None:
    with pytest.raises(Reject, match="cpu_percent"):
        RulesCore(usage_rules()).step({}, ev("DeviceCPUUsage", 1.0, fields=fields), 1.0)


# ---------------------------------------------------------------------------- for / keep_firing_for


def timed_rules(for_: float = 60.0, keep: float = 0.0, overrides: list[Override] | None = None) -> RuleSet:
    return RuleSet(
        groups=[
            RuleGroup(
                name="cpu",
                fire=[
                    FireRule(reason="Critical", severity="critical", for_=for_, keep_firing_for=keep,
                             overrides=overrides or []),
                    FireRule(reason="Warning", severity="warning"),
                ],
                resolve=["Normal"],
            )
        ],
        resolve_all=["Deleted"],
        field_labels={"environment": "env"},
    )


def test_for_pending_then_fires_at_the_deadline() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    assert f.step(ev("Critical", 0.0), 0.0) == []
    assert f.step(ev("Critical", 30.0, message="again"), 30.0) == []  # does not restart the timer
    assert f.advance(59.0) == []
    out = f.advance(60.0)
    [p] = payloads(out)
    assert p.change == "fired" and p.alert.starts_at == 60.0  # startsAt is when it fired, as Prometheus
    assert p.alert.annotations == {"summary": "again"}
    assert p.cause.kind == "timer" and p.trace == {}
    assert out[0].msg_id == f"rules:t:{alert_subject('o1', p.alert.fingerprint)}:60.0"


def test_for_cancelled_by_a_resolve_while_pending() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    f.step(ev("Critical", 0.0), 0.0)
    assert f.step(ev("Normal", 30.0), 30.0) == []
    assert f.advance(1000.0) == []
    assert f.state == {}


def test_for_already_over_when_the_event_arrives() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    out = f.step(ev("Critical", 0.0), 100.0)  # committed 100 s late
    [p] = payloads(out)
    assert p.change == "fired" and p.alert.starts_at == 60.0 and p.cause.kind == "timer"


def test_for_keeps_the_older_sibling_until_it_fires() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    f.step(ev("Warning", 0.0), 0.0)
    assert f.step(ev("Critical", 10.0), 10.0) == []
    out = f.advance(70.0)
    assert changes(out) == [("resolved", "Warning"), ("fired", "Critical")]
    assert [p.alert.ends_at for p in payloads(out)] == [70.0, None]


def test_sibling_refire_cancels_pending() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    f.step(ev("Warning", 0.0), 0.0)
    f.step(ev("Critical", 10.0), 10.0)
    assert f.step(ev("Warning", 20.0), 20.0) == []
    assert f.advance(1000.0) == []
    assert changes(f.outputs) == [("fired", "Warning")]


def test_for_per_group_override() -> None:
    f = Fold(RulesCore(timed_rules(for_=60, overrides=[Override(match={"environment": "prod"}, for_=0)])))
    out = f.step(ev("Critical", 5.0, fields={"env": "prod"}), 5.0)
    assert changes(out) == [("fired", "Critical")]
    assert f.step(ev("Critical", 5.0, name="d2", fields={"env": "dev"}), 5.0) == []


def test_keep_firing_for_delays_the_resolve() -> None:
    f = Fold(RulesCore(timed_rules(for_=0, keep=120)))
    f.step(ev("Critical", 0.0), 0.0)
    assert f.step(ev("Normal", 10.0), 10.0) == []
    assert f.step(ev("Normal", 20.0), 20.0) == []  # a second resolve does not push the end out
    assert f.advance(129.0) == []
    out = f.advance(130.0)
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.ends_at == 130.0 and r.cause.kind == "timer"


def test_keep_firing_for_cancelled_by_firing_again() -> None:
    f = Fold(RulesCore(timed_rules(for_=0, keep=120)))
    f.step(ev("Critical", 0.0), 0.0)
    f.step(ev("Normal", 10.0), 10.0)
    assert f.step(ev("Critical", 50.0), 50.0) == []  # still the same occurrence, nothing visible changed
    assert f.advance(10_000.0) == []
    assert changes(f.outputs) == [("fired", "Critical")]


def test_keep_firing_for_does_not_delay_resolve_all() -> None:
    f = Fold(RulesCore(timed_rules(for_=0, keep=120)))
    f.step(ev("Critical", 0.0), 0.0)
    f.step(ev("Normal", 10.0), 10.0)
    out = f.step(ev("Deleted", 20.0), 20.0)
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.ends_at == 20.0
    assert f.advance(10_000.0) == []


def test_late_resolve_after_pending_fired_still_resolves() -> None:
    f = Fold(RulesCore(timed_rules(for_=60)))
    f.step(ev("Critical", 0.0), 0.0)
    f.advance(60.0)  # fired at 60
    out = f.step(ev("Normal", 30.0), 70.0)  # happened while pending, committed late
    [r] = payloads(out)
    assert r.change == "resolved" and r.alert.ends_at == 60.0  # never before startsAt


def test_resolved_alerts_are_retained_then_deleted() -> None:
    f = Fold(RulesCore(retention=100.0))
    f.step(ev("DeviceDisconnected", 0.0), 0.0)
    f.step(ev("DeviceConnected", 10.0), 10.0)
    [value] = [v for v in f.state.values() if isinstance(v, AlertState)]
    assert value.status == "resolved" and value.deadline == 110.0
    assert f.advance(110.0) == []
    assert f.state == {}


def test_push_with_event_alert_labels_is_the_same_alert() -> None:
    f = default_fold()
    out = f.step(ev("DeviceDisconnected", 0.0), 0.0)
    labels = dict(payloads(out)[0].alert.labels)
    from contracts.messages import PushedAlert

    resolve = PushedAlerts(request_id="r1", org="o1", received_at=5.0,
                           alerts=[PushedAlert(labels=labels, starts_at=0.0, ends_at=5.0)])
    assert changes(f.step(resolve, 5.0)) == [("resolved", "DeviceDisconnected")]
    assert f.step(ev("DeviceConnected", 6.0), 6.0) == []  # the group's slot holds nothing firing
    # its index entry stays, stale, for as long as the resolved alert is kept; then both go
    assert any(isinstance(v, ResourceIndex) for v in f.state.values())
    assert f.advance(5.0 + RulesCore().retention) == []
    assert f.state == {}


# An index write is a state write like any other (a JetStream rollup): an alert that flaps
# must not rewrite its resource's index on every fire and resolve.
@pytest.mark.parametrize("steps,index_written", [
    ([("DeviceDisconnected", 0.0)], [True]),
    ([("DeviceDisconnected", 0.0), ("DeviceConnected", 10.0)], [True, False]),
    ([("DeviceDisconnected", 0.0), ("DeviceConnected", 10.0), ("DeviceDisconnected", 20.0),
      ("DeviceConnected", 30.0)], [True, False, False, False]),
    ([("DeviceCPUWarning", 0.0), ("DeviceCPUCritical", 10.0), ("DeviceCPUWarning", 20.0)], [True, True, True]),
    ([("DeviceDisconnected", 0.0), ("DeviceDecommissioned", 20.0)], [True, True]),
    ([("DeviceDisconnected", 0.0), ("DeviceConnected", 10.0), ("DeviceDecommissioned", 20.0)], [True, False, True]),
], ids=["first-fire", "resolve", "flap", "siblings-take-turns", "resource-deleted", "deleted-after-resolve"])
def test_index_is_written_only_when_a_group_changes_alert(
    steps: list[tuple[str, float]], index_written: list[bool]
) -> None:
    f = default_fold()
    written = []
    for reason, at in steps:
        before = {k: v for k, v in f.state.items() if isinstance(v, ResourceIndex)}
        f.step(ev(reason, at), at)
        written.append(before != {k: v for k, v in f.state.items() if isinstance(v, ResourceIndex)})
    assert written == index_written


def test_a_resolved_alert_pushed_back_to_firing_is_not_in_its_group() -> None:
    """Its index entry stays, but it now belongs to the pusher: events of its group leave it be."""
    f = Fold(RulesCore(timed_rules(for_=60)))
    [fired] = payloads(f.step(ev("Warning", 0.0), 0.0))
    f.step(ev("Normal", 10.0), 10.0)
    labels = dict(fired.alert.labels)
    from contracts.messages import PushedAlert

    push = PushedAlerts(request_id="r1", org="o1", received_at=20.0,
                        alerts=[PushedAlert(labels=labels, starts_at=20.0)])
    assert changes(f.step(push, 20.0)) == [("fired", "Warning")]
    assert f.step(ev("Normal", 30.0), 30.0) == []  # not the group's alert any more
    f.step(ev("Critical", 40.0), 40.0)  # pending for 60 s, then takes the group's slot
    assert changes(f.advance(100.0)) == [("fired", "Critical")]  # the pushed alert is not resolved
    [pushed] = [v for v in f.state.values() if isinstance(v, AlertState) and v.fingerprint == fired.alert.fingerprint]
    assert pushed.status == "firing"
