"""The load test's oracle against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from loadtest.oracle import (
    AlertModel,
    Delivery,
    Expectation,
    Lifecycle,
    check,
    deliveries_from_webhook,
    expectations,
    spacing,
)

ORG, KIND = "acme", "Device"

# (event id, resource name, reason, message, time)
Ev = tuple[str, str, str, str, float]


def run(events: list[Ev]) -> AlertModel:
    model = AlertModel()
    for eid, name, reason, message, t in events:
        model.apply(eid, ORG, KIND, name, reason, message, t, t + 0.5)
    return model


def keys(model: AlertModel) -> set[tuple[str, str]]:
    return set(expectations(model.lifecycles))


@pytest.mark.parametrize(("events", "want"), [
    ([("1", "d1", "DeviceDisconnected", "lt:1", 0.0), ("2", "d1", "DeviceConnected", "", 10.0)],
     {("1", "firing"), ("1", "resolved")}),
    # the same occurrence reported again: no new lifecycle
    ([("1", "d1", "DeviceDisconnected", "lt:1", 0.0), ("2", "d1", "DeviceDisconnected", "lt:1", 5.0)],
     {("1", "firing")}),
    # exclusive group: critical replaces warning, normal resolves critical
    ([("1", "d1", "DeviceCPUWarning", "lt:1", 0.0), ("2", "d1", "DeviceCPUCritical", "lt:2", 10.0),
      ("3", "d1", "DeviceCPUNormal", "", 20.0)],
     {("1", "firing"), ("1", "resolved"), ("2", "firing"), ("2", "resolved")}),
    # deletion resolves every alert of the resource, not another resource's
    ([("1", "d1", "DeviceDiskWarning", "lt:1", 0.0), ("2", "d1", "DeviceDisconnected", "lt:2", 1.0),
      ("3", "d2", "DeviceDisconnected", "lt:3", 2.0), ("4", "d1", "ResourceDeleted", "", 20.0)],
     {("1", "firing"), ("1", "resolved"), ("2", "firing"), ("2", "resolved"), ("3", "firing")}),
    # resolving what is not firing does nothing; another group's resolve does not touch this one
    ([("1", "d1", "DeviceConnected", "", 0.0), ("2", "d1", "DeviceApplicationError", "lt:2", 1.0),
      ("3", "d1", "DeviceMemoryNormal", "", 2.0)],
     {("2", "firing")}),
    # fires again after its resolution: a second lifecycle of the same alert
    ([("1", "d1", "DeviceDisconnected", "lt:1", 0.0), ("2", "d1", "DeviceConnected", "", 10.0),
      ("3", "d1", "DeviceDisconnected", "lt:3", 30.0)],
     {("1", "firing"), ("1", "resolved"), ("3", "firing")}),
    # unknown reasons are ignored
    ([("1", "d1", "SomethingElse", "", 0.0)], set()),
], ids=["disconnect-connect", "refresh", "exclusive-group", "delete-resolves-all", "resolve-nothing",
        "refire", "unknown-reason"])
def test_expected_notifications(events: list[Ev], want: set[tuple[str, str]]) -> None:
    assert keys(run(events)) == want


def test_labels_and_times_of_a_lifecycle() -> None:
    model = run([("7", "gw", "DeviceCPUCritical", "lt:7", 100.0), ("8", "gw", "DeviceDecommissioned", "", 130.0)])
    (lc,) = model.lifecycles
    assert lc.labels == {"alertname": "DeviceCPUCritical", "org_id": ORG, "resource": "gw",
                         "resource_kind": KIND, "severity": "critical"}
    assert (lc.starts_at, lc.fire_sent, lc.resolve_id, lc.ends_at, lc.resolve_sent) == (100.0, 100.5, "8", 130.0,
                                                                                         130.5)


def test_same_name_in_two_orgs_is_two_alerts() -> None:
    model = AlertModel()
    model.apply("1", "a", KIND, "d1", "DeviceDisconnected", "lt:1", 0.0, 0.0)
    model.apply("2", "b", KIND, "d1", "DeviceDisconnected", "lt:2", 1.0, 1.0)
    model.apply("3", "a", KIND, "d1", "DeviceConnected", "", 2.0, 2.0)
    assert set(expectations(model.lifecycles)) == {("1", "firing"), ("1", "resolved"), ("2", "firing")}


@pytest.mark.parametrize(("events", "mismatch", "out_of_order"), [
    ([("1", "d1", "DeviceDisconnected", "lt:1", 0.0), ("2", "d1", "DeviceDisconnected", "lt:9", 1.0)], 1, 0),
    ([("1", "d1", "DeviceDisconnected", "oops", 0.0)], 1, 0),
    ([("1", "d1", "DeviceConnected", "", 5.0), ("2", "d1", "DeviceConnected", "", 4.0)], 0, 1),
], ids=["refresh-names-another", "fire-without-its-id", "older-event"])
def test_consistency_counters(events: list[Ev], mismatch: int, out_of_order: int) -> None:
    model = run(events)
    assert (model.message_mismatch, model.out_of_order) == (mismatch, out_of_order)


LABELS = {"alertname": "DeviceDisconnected", "org_id": ORG, "resource": "d1", "resource_kind": KIND,
          "severity": "critical"}


def expected_two() -> dict[tuple[str, str], Expectation]:
    lc = Lifecycle(id="1", labels=LABELS, starts_at=0.0, fire_sent=10.0, resolve_id="2", ends_at=5.0,
                   resolve_sent=20.0)
    return expectations([lc])


def d(lc: str, status: str, at: float, key: str = "", labels: dict[str, str] | None = None) -> Delivery:
    return Delivery(at=at, key=key, lifecycle=lc, status=status, labels=LABELS if labels is None else labels)


@pytest.mark.parametrize(("deliveries", "want"), [
    ([d("1", "firing", 10.2, "k1"), d("1", "resolved", 25.0, "k2")], (0, 0, 0, 0, 0)),
    ([d("1", "firing", 10.2, "k1")], (1, 0, 0, 0, 0)),
    ([d("1", "firing", 10.2, "k1"), d("1", "firing", 11.0, "k3"), d("1", "resolved", 25.0, "k2")], (0, 1, 0, 0, 0)),
    ([d("1", "firing", 10.2, "k1"), d("1", "firing", 11.0, "k1"), d("1", "resolved", 25.0, "k2")], (0, 0, 1, 0, 0)),
    ([d("1", "firing", 10.2), d("1", "firing", 10.3), d("1", "resolved", 25.0)], (0, 1, 0, 0, 0)),
    ([d("1", "firing", 10.2, "k1"), d("1", "resolved", 25.0, "k2"), d("9", "firing", 12.0, "k9")], (0, 0, 0, 1, 0)),
    ([d("1", "firing", 10.2, "k1", {"alertname": "X"}), d("1", "resolved", 25.0, "k2")], (0, 0, 0, 0, 1)),
], ids=["exact", "missing-resolved", "duplicated-new-key", "same-key-repeat", "duplicated-no-keys", "unexpected",
        "wrong-labels"])
def test_check(deliveries: list[Delivery], want: tuple[int, int, int, int, int]) -> None:
    v = check(expected_two(), deliveries)
    got = (len(v.missing), len(v.duplicated), len(v.repeats), len(v.unexpected), len(v.label_mismatch))
    assert got == want
    assert set(v.deliveries_of) == set(v.duplicated)
    assert v.ok == (want[0] == want[1] == want[3] == want[4] == 0)


def test_latency_is_first_arrival_minus_sent_time() -> None:
    v = check(expected_two(), [d("1", "firing", 10.5, "a"), d("1", "firing", 10.2, "b"),
                               d("1", "resolved", 25.0, "c")])
    assert v.latency["firing"] == [(10.2, pytest.approx(0.2))]
    assert v.latency["resolved"] == [(25.0, pytest.approx(5.0))]
    assert v.delivered == 2 and v.expected == 2


def test_deliveries_from_a_webhook_payload() -> None:
    body = {"version": "4", "status": "resolved", "alerts": [
        {"status": "resolved", "labels": {"a": "b"}, "annotations": {"summary": "lt:42"}},
        {"status": "firing", "labels": {}, "annotations": {"summary": "no id"}},
    ]}
    got = deliveries_from_webhook(body, 5.0, "key")
    assert [(x.lifecycle, x.status, x.key, x.at) for x in got] == [("42", "resolved", "key", 5.0),
                                                                  ("", "firing", "key", 5.0)]


def test_spacing_measures_resolve_to_next_fire() -> None:
    a = dict(LABELS)
    b = {**LABELS, "resource": "d2"}
    lcs = [
        Lifecycle(id="1", labels=a, starts_at=0, fire_sent=0.0, resolve_id="2", ends_at=1, resolve_sent=10.0),
        Lifecycle(id="3", labels=b, starts_at=0, fire_sent=11.0),  # another alert: no pair with the above
        Lifecycle(id="4", labels=a, starts_at=0, fire_sent=13.0, resolve_id="5", ends_at=1, resolve_sent=14.0),
        Lifecycle(id="6", labels=a, starts_at=0, fire_sent=30.0),
    ]
    s = spacing(lcs, guard=5.0)
    assert (s.refires, s.min_gap, s.below) == (2, 3.0, 1)
    assert math.isinf(spacing([], 1.0).min_gap)
