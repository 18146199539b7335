"""Alertmanager's webhook message v4, field for field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier_cases import EXTERNAL_URL, NOW, WebhookCfg, alert, request, resolved

from contracts.messages import Alert
from stages.notifier.payloads import select_alerts, webhook_payload

TOP_LEVEL = {
    "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
    "commonLabels", "commonAnnotations", "externalURL", "alerts",
}  # fmt: skip
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def test_firing_payload_is_exactly_alertmanagers() -> None:
    a = alert(annotations={"summary": "CPU hot"}, starts_at=NOW - 90.25, fingerprint="a1b2c3d4e5f60718")
    body = webhook_payload(request([a]), WebhookCfg(), EXTERNAL_URL)
    assert body == {
        "receiver": "team-ops",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighCPU", "instance": "web-1:9100", "job": "node"},
                "annotations": {"summary": "CPU hot"},
                "startsAt": "2023-11-14T22:11:49.75Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom.example/graph",
                "fingerprint": "a1b2c3d4e5f60718",
            }
        ],
        "groupLabels": {"alertname": "HighCPU"},
        "commonLabels": {"alertname": "HighCPU", "instance": "web-1:9100", "job": "node"},
        "commonAnnotations": {"summary": "CPU hot"},
        "externalURL": EXTERNAL_URL,
        "version": "4",
        "groupKey": '{}:{alertname="HighCPU"}',
        "truncatedAlerts": 0,
    }


@pytest.mark.parametrize(
    ("alerts", "max_alerts", "status", "statuses", "truncated", "common_instance"),
    [
        ([alert(), alert(instance="web-2:9100")], 0, "firing", ["firing", "firing"], 0, None),
        ([resolved(), resolved(instance="web-2:9100")], None, "resolved", ["resolved", "resolved"], 0, None),
        ([alert(), resolved(instance="web-2:9100")], 0, "firing", ["firing", "resolved"], 0, None),
        ([resolved(), alert(instance="web-2:9100"), alert(instance="web-3:9100")], 1, "resolved", ["resolved"], 2,
         "web-1:9100"),
        ([alert(), alert(instance="web-2:9100")], 2, "firing", ["firing", "firing"], 0, None),
    ],
    ids=["firing", "resolved", "mixed", "truncated", "at-limit"],
)  # fmt: skip
def test_status_truncation_and_common_labels(
    alerts: list[Alert],
    max_alerts: int | None,
    status: str,
    statuses: list[str],
    truncated: int,
    common_instance: str | None,
) -> None:
    body = webhook_payload(request(alerts), WebhookCfg(max_alerts=max_alerts), EXTERNAL_URL)
    assert set(body) == TOP_LEVEL
    assert all(set(a) == ALERT_KEYS for a in body["alerts"])
    assert body["status"] == status
    assert [a["status"] for a in body["alerts"]] == statuses
    assert body["truncatedAlerts"] == truncated
    assert body["commonLabels"].get("instance") == common_instance
    json.dumps(body)  # plain JSON data


def test_resolved_alert_carries_its_end_time() -> None:
    body = webhook_payload(request([resolved()]), WebhookCfg(), EXTERNAL_URL)
    assert body["alerts"][0]["endsAt"] == "2023-11-14T22:12:20Z"


def test_maps_are_written_with_sorted_keys_like_go() -> None:
    a = alert(labels={"zone": "z", "app": "a"}, annotations={"z": "1", "a": "2"})
    body = webhook_payload(request([a]), WebhookCfg(), EXTERNAL_URL)
    assert list(body["alerts"][0]["labels"]) == sorted(body["alerts"][0]["labels"])
    assert list(body["alerts"][0]["annotations"]) == ["a", "z"]


@pytest.mark.parametrize(
    ("alerts", "send_resolved", "kept"),
    [
        ([alert(), resolved(instance="web-2:9100")], True, ["web-1:9100", "web-2:9100"]),
        ([alert(), resolved(instance="web-2:9100")], False, ["web-1:9100"]),
        ([resolved()], False, None),
        ([resolved()], True, ["web-1:9100"]),
        ([], True, None),
    ],
    ids=["send-resolved", "firing-only", "nothing-firing", "resolved-sent", "empty"],
)
def test_select_alerts_applies_send_resolved(alerts: list[Alert], send_resolved: bool, kept: list[str] | None) -> None:
    selected = select_alerts(request(alerts), send_resolved)
    if kept is None:
        assert selected is None
    else:
        assert selected is not None
        assert [a.labels["instance"] for a in selected.alerts] == kept
        if not send_resolved:
            assert selected.status == "firing"


_alert_specs = st.lists(st.booleans(), min_size=1, max_size=12)


@given(_alert_specs, st.integers(min_value=0, max_value=15))
def test_truncation_accounts_for_every_alert(done: list[bool], max_alerts: int) -> None:
    alerts = [alert(instance=f"i{i}", ends_at=NOW - 1 if d else None) for i, d in enumerate(done)]
    body: dict[str, Any] = webhook_payload(request(alerts), WebhookCfg(max_alerts=max_alerts), EXTERNAL_URL)
    sent = body["alerts"]
    assert len(sent) + body["truncatedAlerts"] == len(alerts)
    assert len(sent) == (min(max_alerts, len(alerts)) if max_alerts else len(alerts))
    assert [a["labels"]["instance"] for a in sent] == [f"i{i}" for i in range(len(sent))]
    assert body["status"] == ("firing" if any(a["status"] == "firing" for a in sent) else "resolved")
