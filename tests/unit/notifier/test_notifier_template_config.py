"""Go templates from an unchanged alertmanager.yml: checked at load, loaded with the config, rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
from notifier_cases import EXTERNAL_URL, alert, request

from pipeline.foundation.amconfig import ConfigError, load_config, load_config_text
from stages.notifier.payloads import pagerduty_payload, slack_payload
from stages.notifier.senders import build_senders
from stages.notifier.templates import TEMPLATE_CHECK, build_data

ISSUE = """
route: {receiver: team}
receivers:
  - name: team
    slack_configs:
      - api_url: http://slack.example/hook
        channel: '#ops'
        title: '{{ .CommonLabels.alertname }} [{{ .Status | toUpper }}]'
        text: '{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}'
    pagerduty_configs: [{routing_key: k}]
"""


def test_the_issues_slack_and_pagerduty_receivers_render() -> None:
    config = load_config_text(ISSUE, "alertmanager.yml", templates=TEMPLATE_CHECK)
    rcv = config.receivers[0]
    req = request([alert(annotations={"summary": "a"}), alert(instance="web-2:9100", annotations={"summary": "b"})])
    data = build_data(req, EXTERNAL_URL)
    errors: list[str] = []
    att = slack_payload(req, rcv.slack_configs[0], data, errors=errors)["attachments"][0]
    assert (att["title"], att["text"], errors) == ("HighCPU [FIRING]", "ab", [])
    details = pagerduty_payload(req, rcv.pagerduty_configs[0], data, "k", errors=errors)["payload"]["custom_details"]
    assert errors == []
    assert [a["labels"]["instance"] for a in details["firing"]] == ["web-1:9100", "web-2:9100"]
    assert details["resolved"] == [] and details["num_firing"] == 2


def test_a_field_template_that_does_not_parse_fails_the_load_with_line_and_field() -> None:
    text = ISSUE.replace("{{ .Status | toUpper }}", "{{ .Status | toUpper }").replace(
        "[{routing_key: k}]", "[{routing_key: k, details: {x: '{{ nosuch . }}'}}]")
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, "alertmanager.yml", templates=TEMPLATE_CHECK)
    assert exc.value.errors == [
        "alertmanager.yml:8: receivers[0].slack_configs[0].title: template: line 1: unclosed action",
        "alertmanager.yml:10: receivers[0].pagerduty_configs[0].details: x: template: line 1: "
        "function 'nosuch' not defined",
    ]


def test_a_template_file_that_does_not_parse_fails_the_load_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tmpl").mkdir()
    (tmp_path / "tmpl" / "good.tmpl").write_text('{{ define "team.title" }}{{ .Status }}{{ end }}\n')
    (tmp_path / "tmpl" / "bad.tmpl").write_text('{{ define "a" }}ok{{ end }}\n\n{{ define "b" }}{{ range }}{{ end }}\n')
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(ISSUE + "templates: ['tmpl/*.tmpl']\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, templates=TEMPLATE_CHECK)
    assert exc.value.errors == [f"{tmp_path}/tmpl/bad.tmpl:3: missing value for range (templates)"]
    (tmp_path / "tmpl" / "bad.tmpl").unlink()
    assert load_config(cfg, templates=TEMPLATE_CHECK).templates == [f"{tmp_path}/tmpl/*.tmpl"]


def test_senders_render_with_the_configs_template_files(tmp_path: Path) -> None:
    (tmp_path / "team.tmpl").write_text(
        '{{ define "__alertmanager" }}Tocsin{{ end }}{{ define "team.title" }}T: {{ .Status }}{{ end }}')
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(ISSUE.replace("title: '{{ .CommonLabels.alertname }} [{{ .Status | toUpper }}]'",
                                 "title: '{{ template \"team.title\" . }}'") + "templates: ['*.tmpl']\n")
    config = load_config(cfg, templates=TEMPLATE_CHECK)
    senders = build_senders(config, external_url=EXTERNAL_URL)
    slack = next(s for key, s in senders.by_key.items() if key[1] == "slack")
    req = request([alert()])
    att = slack_payload(req, config.receivers[0].slack_configs[0], build_data(req, EXTERNAL_URL),
                        templates=slack.templates)["attachments"][0]  # type: ignore[attr-defined]
    body = slack_payload(req, config.receivers[0].slack_configs[0], build_data(req, EXTERNAL_URL),
                         templates=slack.templates)  # type: ignore[attr-defined]
    assert att["title"] == "T: firing"
    assert body["username"] == "Tocsin"  # the file's define replaces Alertmanager's default
