"""Slack messages: Alertmanager's defaults, custom fields, omitted empties, fallbacks."""

from __future__ import annotations

from typing import Any

import pytest
from notifier_cases import (
    EXTERNAL_URL,
    SlackActionCfg,
    SlackCfg,
    SlackConfirmCfg,
    SlackFieldCfg,
    alert,
    request,
    resolved,
)

from contracts.messages import Alert
from stages.notifier.payloads import slack_payload
from stages.notifier.templates import build_data

LINK = f"{EXTERNAL_URL}/#/alerts?receiver=team-ops"


def _payload(alerts: list[Alert], cfg: SlackCfg, errors: list[str] | None = None) -> dict[str, Any]:
    req = request(alerts, kind="slack")
    return slack_payload(req, cfg, build_data(req, EXTERNAL_URL), errors=errors)


@pytest.mark.parametrize(
    ("alerts", "title", "color"),
    [
        ([alert(), alert(instance="web-2:9100")], "[FIRING:2] HighCPU (node)", "danger"),
        ([resolved(), resolved(instance="web-2:9100")], "[RESOLVED] HighCPU (node)", "good"),
        ([alert(), resolved(instance="web-2:9100")], "[FIRING:1] HighCPU (node)", "danger"),
    ],
    ids=["firing", "resolved", "mixed"],
)
def test_default_message(alerts: list[Alert], title: str, color: str) -> None:
    assert _payload(alerts, SlackCfg()) == {
        "username": "Alertmanager",
        "attachments": [
            {
                "title": title,
                "title_link": LINK,
                "text": "",
                "fallback": f"{title} | {LINK}",
                "callback_id": "",
                "footer": "",
                "color": color,
                "mrkdwn_in": ["fallback", "pretext", "text"],
            }
        ],
    }


def test_configured_fields_are_rendered() -> None:
    cfg = SlackCfg(
        channel="#ops-{{ .CommonLabels.job }}",
        username="tocsin",
        icon_emoji=":rotating_light:",
        title="{{ .CommonLabels.alertname }} ({{ .Alerts | len }})",
        text="{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
        pretext="pre",
        footer="foot",
        color="#123456",
        image_url="http://img/{{ .Status }}.png",
        link_names=True,
        mrkdwn_in=["text"],
    )
    body = _payload([alert(), alert(instance="web-2:9100")], cfg)
    assert body["channel"] == "#ops-node"
    assert body["username"] == "tocsin"
    assert body["icon_emoji"] == ":rotating_light:"
    assert body["link_names"] is True
    att = body["attachments"][0]
    assert att["title"] == "HighCPU (2)"
    assert att["text"] == "HighCPU on web-1:9100\nHighCPU on web-2:9100\n"
    assert (att["pretext"], att["footer"], att["color"]) == ("pre", "foot", "#123456")
    assert att["image_url"] == "http://img/firing.png"
    assert att["mrkdwn_in"] == ["text"]
    assert att["fallback"] == f"[FIRING:2] HighCPU (node) | {LINK}"  # unset: default


@pytest.mark.parametrize(
    ("short", "short_fields", "expected"),
    [(None, None, False), (None, True, True), (False, True, False), (True, False, True)],
    ids=["neither", "global-only", "field-overrides-false", "field-overrides-true"],
)
def test_field_short_flag(short: bool | None, short_fields: bool | None, expected: bool) -> None:
    cfg = SlackCfg(
        fields=[SlackFieldCfg(title="Job", value="{{ .CommonLabels.job }}", short=short)], short_fields=short_fields
    )
    assert _payload([alert()], cfg)["attachments"][0]["fields"] == [
        {"title": "Job", "value": "node", "short": expected}
    ]


def test_fields_and_actions_accept_mappings_and_drop_empty_keys() -> None:
    cfg = SlackCfg(
        fields=[{"title": "Instance", "value": "{{ (index .Alerts 0).Labels.instance }}"}],
        actions=[
            SlackActionCfg(type="button", text="Runbook", url="http://rb/{{ .CommonLabels.alertname }}"),
            {"type": "button", "text": "Ack", "name": "ack", "value": "{{ .GroupKey }}",
             "confirm": SlackConfirmCfg(text="Sure?", ok_text="Yes")},
        ],
    )  # fmt: skip
    att = _payload([alert()], cfg)["attachments"][0]
    assert att["fields"] == [{"title": "Instance", "value": "web-1:9100", "short": False}]
    assert att["actions"] == [
        {"type": "button", "text": "Runbook", "url": "http://rb/HighCPU"},
        {"type": "button", "text": "Ack", "name": "ack", "value": '{}:{alertname="HighCPU"}',
         "confirm": {"text": "Sure?", "ok_text": "Yes"}},
    ]  # fmt: skip


def test_failing_custom_title_falls_back_to_the_default_and_reports() -> None:
    errors: list[str] = []
    cfg = SlackCfg(title='{{ .CommonLabels.alertname }} {{ template "x" . }}',
                   text="{{ .CommonAnnotations.summary.Nope }}")
    att = _payload([alert()], cfg, errors)["attachments"][0]
    assert att["title"] == "[FIRING:1] HighCPU (web-1:9100 node)"
    assert att["text"] == ""  # slack.default.text is empty
    assert len(errors) == 2
    assert errors[0].startswith("slack title: ") and errors[1].startswith("slack text: ")


def test_go_reference_to_the_default_title_renders_without_error() -> None:
    errors: list[str] = []
    cfg = SlackCfg(title='{{ template "slack.default.title" . }}', color='{{ template "slack.default.color" . }}')
    att = _payload([resolved()], cfg, errors)["attachments"][0]
    assert (att["title"], att["color"], errors) == ("[RESOLVED] HighCPU (web-1:9100 node)", "good", [])


@pytest.mark.parametrize(
    ("length", "expected_length", "cut"),
    [(1024, 1024, False), (1025, 1024, True), (5000, 1024, True)],
    ids=["at-limit", "one-over", "far-over"],
)
def test_title_is_cut_to_1024_characters(length: int, expected_length: int, cut: bool) -> None:
    title = _payload([alert()], SlackCfg(title="é" * length))["attachments"][0]["title"]
    assert len(title) == expected_length
    assert title.endswith("…") is cut


def test_empty_rendered_optional_fields_are_omitted() -> None:
    cfg = SlackCfg(channel="{{ .CommonLabels.missing }}", title_link="{{ .CommonLabels.missing }}")
    body = _payload([alert()], cfg)
    assert "channel" not in body and "link_names" not in body
    assert "title_link" not in body["attachments"][0]
    assert {"fields", "actions", "pretext", "image_url", "thumb_url"}.isdisjoint(body["attachments"][0])
