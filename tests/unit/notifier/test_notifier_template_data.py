"""The template data built from a send request: statuses, common labels, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier_cases import EXTERNAL_URL, NOW, alert, request, resolved

from contracts.messages import Alert
from stages.notifier.templates import KV, build_data, quote_meta
from stages.notifier.templates.data import alert_status


@pytest.mark.parametrize(
    ("ends_at", "expected"),
    [(None, "firing"), (NOW + 1, "firing"), (NOW, "resolved"), (NOW - 1, "resolved")],
    ids=["no-end", "ends-later", "ends-now", "ended"],
)
def test_alert_status_is_evaluated_at_the_request_time(ends_at: float | None, expected: str) -> None:
    assert alert_status(ends_at, NOW) == expected
    data = build_data(request([alert(ends_at=ends_at)]), EXTERNAL_URL)
    assert data.Alerts[0].Status == expected
    assert data.Status == expected


@pytest.mark.parametrize(
    ("alerts", "status", "firing", "resolved_count"),
    [
        ([alert(), alert(instance="web-2:9100")], "firing", 2, 0),
        ([alert(), resolved(instance="web-2:9100")], "firing", 1, 1),
        ([resolved(), resolved(instance="web-2:9100")], "resolved", 0, 2),
    ],
    ids=["all-firing", "mixed", "all-resolved"],
)
def test_group_status_and_subsets(alerts: list[Alert], status: str, firing: int, resolved_count: int) -> None:
    data = build_data(request(alerts), EXTERNAL_URL)
    assert data.Status == status
    assert len(data.Alerts.Firing) == firing
    assert len(data.Alerts.Resolved) == resolved_count
    assert all(a.Status == "firing" for a in data.Alerts.Firing)


@pytest.mark.parametrize(
    ("alerts", "labels", "annotations"),
    [
        (
            [alert(annotations={"runbook": "r"})],
            {"alertname": "HighCPU", "instance": "web-1:9100", "job": "node"},
            {"runbook": "r"},
        ),
        (
            [alert(annotations={"runbook": "r", "x": "1"}), alert(instance="web-2:9100", annotations={"runbook": "r"})],
            {"alertname": "HighCPU", "job": "node"},
            {"runbook": "r"},
        ),
        ([alert("A"), alert("B", labels={"job": "db"})], {"instance": "web-1:9100"}, {}),
    ],
    ids=["single-alert-all-common", "differing-instance", "nothing-in-common-but-instance"],
)
def test_common_labels_and_annotations_are_the_shared_pairs(
    alerts: list[Alert], labels: dict[str, str], annotations: dict[str, str]
) -> None:
    data = build_data(request(alerts), EXTERNAL_URL)
    assert dict(data.CommonLabels) == labels
    assert dict(data.CommonAnnotations) == annotations


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("team-ops", "team-ops"), ("team.ops", "team\\.ops"), ("a(b)|c*", "a\\(b\\)\\|c\\*"), ("ops/eu", "ops/eu")],
    ids=["plain", "dot", "regex-operators", "slash"],
)
def test_receiver_is_quoted_as_alertmanager_does(name: str, quoted: str) -> None:
    assert quote_meta(name) == quoted
    assert build_data(request([alert()], receiver=name), EXTERNAL_URL).Receiver == quoted


def test_sorted_pairs_put_alertname_first_then_sort_by_name() -> None:
    kv = KV({"zone": "z", "alertname": "A", "instance": "i", "Zeta": "Z"})
    assert [p.Name for p in kv.SortedPairs] == ["alertname", "Zeta", "instance", "zone"]
    assert list(kv.Values) == ["A", "Z", "i", "z"]
    assert dict(kv.Remove(["zone", "Zeta"])) == {"alertname": "A", "instance": "i"}
    assert str(KV({"b": "2", "a": "1"})) == "a=1, b=2"


@pytest.mark.parametrize(
    ("count", "max_alerts", "kept", "truncated"),
    [(3, 0, 3, 0), (3, 1, 1, 2), (3, 3, 3, 0), (3, 5, 3, 0)],
    ids=["unlimited", "one-of-three", "exactly-max", "under-max"],
)
def test_truncation_keeps_the_first_alerts(count: int, max_alerts: int, kept: int, truncated: int) -> None:
    alerts = [alert(instance=f"web-{i}:9100") for i in range(count)]
    data = build_data(request(alerts), EXTERNAL_URL, max_alerts=max_alerts)
    assert [a.Labels["instance"] for a in data.Alerts] == [f"web-{i}:9100" for i in range(kept)]
    assert data.TruncatedAlerts == truncated


def test_truncation_happens_before_status_and_common_labels() -> None:
    # Alertmanager truncates, then derives: one resolved alert kept -> resolved, all its labels common
    data = build_data(request([resolved(), alert(instance="web-2:9100")]), EXTERNAL_URL, max_alerts=1)
    assert data.Status == "resolved"
    assert data.CommonLabels["instance"] == "web-1:9100"


_label_values = st.text(alphabet="abc", min_size=1, max_size=2)


@given(
    st.lists(
        st.tuples(st.dictionaries(st.sampled_from(["a", "b", "c"]), _label_values), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_common_labels_hold_exactly_the_pairs_every_alert_has(specs: list[tuple[dict[str, str], bool]]) -> None:
    alerts = [
        Alert(fingerprint=str(i), org="o", labels=labels, starts_at=NOW - 10, ends_at=NOW - 1 if done else None)
        for i, (labels, done) in enumerate(specs)
    ]
    data = build_data(request(alerts), EXTERNAL_URL)
    for name, value in data.CommonLabels.items():
        assert all(a.labels.get(name) == value for a in alerts)
    for name, value in alerts[0].labels.items():
        if all(a.labels.get(name) == value for a in alerts):
            assert data.CommonLabels[name] == value
    assert data.Status == ("firing" if any(not done for _, done in specs) else "resolved")
