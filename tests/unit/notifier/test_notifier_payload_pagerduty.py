"""PagerDuty events: actions, dedup keys, summary, details, size limit, v1."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from notifier_cases import EXTERNAL_URL, NOW_RFC3339, PagerdutyCfg, alert, request, resolved

from contracts.messages import Alert, SendRequest
from stages.notifier.payloads import pagerduty_dedup_key, pagerduty_payload
from stages.notifier.templates import build_data

LINK = f"{EXTERNAL_URL}/#/alerts?receiver=team-ops"


def _event(
    req: SendRequest, cfg: PagerdutyCfg | None = None, key: str = "R0UT1NG", errors: list[str] | None = None
) -> dict[str, Any]:
    return pagerduty_payload(req, cfg or PagerdutyCfg(), build_data(req, EXTERNAL_URL), key, errors=errors)


@pytest.mark.parametrize(
    ("alerts", "acknowledged", "action"),
    [
        ([alert()], False, "trigger"),
        ([alert()], True, "acknowledge"),
        ([alert(), resolved(instance="web-2:9100")], True, "acknowledge"),
        ([resolved()], False, "resolve"),
        ([resolved()], True, "resolve"),
    ],
    ids=["firing", "acknowledged", "mixed-acknowledged", "resolved", "resolved-wins-over-ack"],
)
def test_event_action(alerts: list[Alert], acknowledged: bool, action: str) -> None:
    assert _event(request(alerts, acknowledged=acknowledged))["event_action"] == action


def test_default_trigger_event() -> None:
    event = _event(request([alert(), alert(instance="web-2:9100")], org=""))
    details = event["payload"].pop("custom_details")
    assert event == {
        "routing_key": "R0UT1NG",
        "dedup_key": hashlib.sha256(b'{}:{alertname="HighCPU"}').hexdigest(),
        "event_action": "trigger",
        "payload": {
            "summary": "[FIRING:2] HighCPU (node)",
            "source": "Alertmanager",
            "severity": "error",
            "timestamp": NOW_RFC3339,
        },
        "client": "Alertmanager",
        "client_url": LINK,
    }
    assert list(details) == ["firing", "num_firing", "num_resolved", "resolved"]
    assert (details["num_firing"], details["num_resolved"], details["resolved"]) == (2, 0, [])
    assert [a["labels"]["instance"] for a in details["firing"]] == ["web-1:9100", "web-2:9100"]
    assert details["firing"][0]["endsAt"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (request([alert()], flush_seq=1), request([resolved()], flush_seq=9, created_at=1), True),
        (request([alert()], receiver="a"), request([alert()], receiver="b"), True),
        (request([alert()], org="acme"), request([alert()], org="globex"), False),
        (request([alert()], group_key="{}:{a=1}"), request([alert()], group_key="{}:{a=2}"), False),
    ],
    ids=["stable-across-flushes", "same-group-other-receiver", "other-org", "other-group"],
)
def test_dedup_key_identifies_the_group(a: SendRequest, b: SendRequest, same: bool) -> None:
    assert (_event(a)["dedup_key"] == _event(b)["dedup_key"]) is same
    assert _event(a)["dedup_key"] == pagerduty_dedup_key(a.org, a.group_key)


def test_dedup_key_without_org_is_alertmanagers() -> None:
    assert pagerduty_dedup_key("", "{}:{x}") == hashlib.sha256(b"{}:{x}").hexdigest()
    assert pagerduty_dedup_key("acme", "{}:{x}") != pagerduty_dedup_key("", "{}:{x}")


@pytest.mark.parametrize(
    ("length", "cut"), [(1024, False), (1025, True), (3000, True)], ids=["at-limit", "one-over", "far-over"]
)
def test_summary_is_cut_to_1024_characters(length: int, cut: bool) -> None:
    summary = _event(request([alert()]), PagerdutyCfg(description="x" * length))["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…") is cut


def test_configured_payload_fields() -> None:
    cfg = PagerdutyCfg(
        client="tocsin-{{ .CommonLabels.job }}",
        client_url="http://t/{{ .GroupKey | urlquery }}",
        severity="{{ .CommonLabels.severity }}",
        class_="cpu",
        component="{{ .CommonLabels.job }}",
        group="prod",
        images=[{"src": "http://i/1.png", "alt": "graph"}, {"src": "{{ .CommonLabels.missing }}", "alt": "dropped"}],
        links=[{"href": "http://rb/{{ .CommonLabels.alertname }}", "text": "runbook"}, {"href": "", "text": "x"}],
    )
    event = _event(request([alert(labels={"severity": "critical"})]), cfg)
    payload = event["payload"]
    assert payload["source"] == "tocsin-node"  # source defaults to the client
    assert (payload["severity"], payload["class"], payload["component"], payload["group"]) == (
        "critical", "cpu", "node", "prod",
    )  # fmt: skip
    assert event["client_url"] == "http://t/%7B%7D%3A%7Balertname%3D%22HighCPU%22%7D"
    assert event["images"] == [{"src": "http://i/1.png", "alt": "graph", "href": ""}]
    assert event["links"] == [{"href": "http://rb/HighCPU", "text": "runbook"}]


def test_custom_details_render_and_read_back_as_yaml_data() -> None:
    errors: list[str] = []
    cfg = PagerdutyCfg(
        details={
            "count": "{{ .Alerts | len }}",
            "note": "{{ .CommonAnnotations.summary }}",
            "owner": {"team": "{{ .CommonLabels.job }}", "tags": ["a", "{{ .Status }}"]},
            "pair": "team: {{ .CommonLabels.job }}",
            "broken": "{{ .Nope }}",
            "num_firing": "overridden",
        }
    )
    details = _event(request([alert()]), cfg, errors=errors)["payload"]["custom_details"]
    assert details["count"] == 1
    assert details["note"] == "HighCPU on web-1:9100"
    assert details["owner"] == {"tags": ["a", "firing"], "team": "node"}
    assert details["pair"] == {"team": "node"}  # Alertmanager parses rendered text as YAML, too
    assert details["broken"] == "{{ .Nope }}"  # kept as written, and reported
    assert details["num_firing"] == "overridden"
    assert details["num_resolved"] == 0
    assert list(details) == sorted(details)
    assert len(errors) == 1 and errors[0].startswith("pagerduty details.broken: ")


def test_timestamp_like_detail_stays_a_string() -> None:
    cfg = PagerdutyCfg(details={"since": "{{ (index .Alerts 0).StartsAt.Format \"2006-01-02T15:04:05Z07:00\" }}"})
    assert _event(request([alert()]), cfg)["payload"]["custom_details"]["since"] == "2023-11-14T22:03:20Z"


def test_oversized_event_loses_its_custom_details() -> None:
    big = [alert(instance=f"web-{i}:9100", annotations={"description": "x" * 2000}) for i in range(300)]
    event = _event(request(big))
    assert event["payload"]["custom_details"] == {
        "error": "Custom details have been removed because the original event exceeds the maximum size of 512KB"
    }
    assert event["payload"]["summary"].startswith("[FIRING:300]")


def test_v1_event_for_service_key_configs() -> None:
    cfg = PagerdutyCfg(routing_key=None, service_key="S3RV1CE")
    trigger = _event(request([alert()], org=""), cfg, key="S3RV1CE")
    assert trigger["service_key"] == "S3RV1CE"
    assert trigger["event_type"] == "trigger"
    assert trigger["incident_key"] == hashlib.sha256(b'{}:{alertname="HighCPU"}').hexdigest()
    assert trigger["description"] == "[FIRING:1] HighCPU (web-1:9100 node)"
    assert (trigger["client"], trigger["client_url"]) == ("Alertmanager", LINK)
    assert trigger["details"]["num_firing"] == 1
    assert "payload" not in trigger and "routing_key" not in trigger
    resolve = _event(request([resolved()]), cfg, key="S3RV1CE")
    assert resolve["event_type"] == "resolve"
    assert "client" not in resolve and "client_url" not in resolve
