"""Incident integrations' pure builders: Opsgenie requests, VictorOps body, Pushover form, WeChat message."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier_cases import EXTERNAL_URL, alert, request, resolved

from contracts.messages import SendRequest
from pipeline.foundation.amconfig import ConfigError, Secret, load_config_text
from pipeline.foundation.amconfig.model import (
    OpsgenieConfig,
    OpsgenieResponder,
    PushoverConfig,
    Receiver,
    VictorOpsConfig,
    WechatConfig,
)
from stages.notifier.integrations._incident import join_url
from stages.notifier.integrations.opsgenie import opsgenie_requests
from stages.notifier.integrations.pushover import pushover_form, pushover_params
from stages.notifier.integrations.victorops import victorops_payload
from stages.notifier.integrations.wechat import wechat_message
from stages.notifier.templates import build_data

API = "https://api.opsgenie.com/"
VICTOROPS_URL = "https://alert.victorops.com/integrations/generic/20131114/alert/"
GROUP_KEY = '{}:{alertname="HighCPU"}'
ALIAS_ACME = hashlib.sha256(b"acme\x00" + GROUP_KEY.encode()).hexdigest()
ALIAS_AM = hashlib.sha256(GROUP_KEY.encode()).hexdigest()
LINK = f"{EXTERNAL_URL}/#/alerts?receiver=team-ops"


def _og(req: SendRequest, errors: list[str] | None = None, **kw: object) -> list[tuple[str, str, dict[str, object]]]:
    cfg = OpsgenieConfig(api_url=API, **kw)  # type: ignore[arg-type]
    return [tuple(r) for r in opsgenie_requests(req, cfg, build_data(req, EXTERNAL_URL), errors=errors)]  # type: ignore[misc]


# --------------------------------------------------------------------------- Opsgenie


def test_opsgenie_create_with_defaults() -> None:
    [(method, url, body)] = _og(request([alert(), alert(instance="web-2:9100")], org=""))
    assert (method, url) == ("POST", API + "v2/alerts")
    assert list(body) == ["alias", "message", "description", "details", "source"]  # Go's field order
    assert body["alias"] == ALIAS_AM  # Alertmanager's key.Hash(): its alerts are closed after a switch
    assert body["message"] == "[FIRING:2] HighCPU (node)"
    assert body["details"] == {"alertname": "HighCPU", "job": "node"}  # the common labels
    assert body["source"] == LINK
    assert str(body["description"]).startswith("\nAlerts Firing:\nLabels:\n - alertname = HighCPU\n")


def test_opsgenie_close_on_resolve() -> None:
    [(method, url, body)] = _og(request([resolved()]))
    assert method == "POST"
    assert url == f"{API}v2/alerts/{ALIAS_ACME}/close?identifierType=alias"
    assert body == {"source": LINK}


def test_opsgenie_alias_is_stable_for_the_group() -> None:
    first = _og(request([alert()], flush_seq=1))[0][2]["alias"]
    later = _og(request([alert(), alert(instance="x")], flush_seq=7, receiver="other"))[0][2]["alias"]
    close_url = _og(request([resolved()], flush_seq=9))[0][1]
    assert first == later == ALIAS_ACME and f"/{first}/close" in close_url
    assert _og(request([alert()], group_key="{}:{a=2}"))[0][2]["alias"] != first


def test_opsgenie_optional_fields_responders_tags_priority() -> None:
    responders = [
        OpsgenieResponder(name="{{ .CommonLabels.team }}", type="team"),
        OpsgenieResponder(name="{{ .CommonLabels.missing }}", type="user"),  # names nobody: left out
        OpsgenieResponder(id="{{ .CommonLabels.missing }}", type="{{ .CommonLabels.missing }}"),  # all empty: out
        OpsgenieResponder(name="ops, db,", type="teams"),  # split into teams
        OpsgenieResponder(username="alice@example.org", type="user"),
    ]
    [(_, _, body)] = _og(
        request([alert(labels={"team": "infra"})]),
        responders=responders, tags=" a,b, c ,", priority="{{ if .CommonLabels.team }}P1{{ end }}",
        note="n", entity="{{ .CommonLabels.job }}", actions="restart,ping", details={"team": "x-{{ .Status }}"},
    )
    assert body["responders"] == [
        {"name": "infra", "type": "team"},
        {"name": "ops", "type": "team"}, {"name": " db", "type": "team"},
        {"username": "alice@example.org", "type": "user"},
    ]
    assert body["tags"] == ["a", "b", " c "]  # Alertmanager's safeSplit: items are not trimmed
    assert (body["priority"], body["note"], body["entity"], body["actions"]) == ("P1", "n", "node", ["restart", "ping"])
    assert body["details"] == {"alertname": "HighCPU", "instance": "web-1:9100", "job": "node", "team": "x-firing"}
    assert list(body) == ["alias", "message", "description", "details", "source", "responders", "tags", "note",
                          "priority", "entity", "actions"]


def test_opsgenie_update_alerts_adds_two_puts() -> None:
    reqs = _og(request([alert()]), update_alerts=True, message="m", description="d")
    assert [(m, u) for m, u, _ in reqs] == [
        ("POST", API + "v2/alerts"),
        ("PUT", f"{API}v2/alerts/{ALIAS_ACME}/message?identifierType=alias"),
        ("PUT", f"{API}v2/alerts/{ALIAS_ACME}/description?identifierType=alias"),
    ]
    assert reqs[1][2] == {"message": "m"} and reqs[2][2] == {"description": "d"}
    # resolved: only the close, even with update_alerts
    assert [m for m, _, _ in _og(request([resolved()]), update_alerts=True)] == ["POST"]


@pytest.mark.parametrize(("length", "sent"), [(130, 130), (131, 130), (500, 130)])
def test_opsgenie_message_is_cut_to_130_characters(length: int, sent: int) -> None:
    body = _og(request([alert()]), message="é" * length)[0][2]
    message = str(body["message"])
    assert len(message) == sent
    assert message.endswith("…") is (length > 130)


def test_opsgenie_template_error_falls_back_to_the_default_and_is_reported() -> None:
    errors: list[str] = []
    body = _og(request([alert()]), errors=errors, message="{{ .Nope.Nope }}")[0][2]
    assert body["message"] == "[FIRING:1] HighCPU (web-1:9100 node)"
    assert errors and errors[0].startswith("opsgenie message:")


# --------------------------------------------------------------------------- VictorOps


def _vo(req: SendRequest, **kw: object) -> dict[str, str]:
    cfg = VictorOpsConfig(routing_key="rk", **kw)  # type: ignore[arg-type]
    return victorops_payload(req, cfg, build_data(req, EXTERNAL_URL))


def test_victorops_default_body() -> None:
    body = _vo(request([alert()], org=""))
    assert body == {
        "entity_display_name": "[FIRING:1] HighCPU (web-1:9100 node)",
        "entity_id": ALIAS_AM,
        "message_type": "CRITICAL",
        "monitoring_tool": "Alertmanager",
        "state_message": body["state_message"],
    }
    assert list(body) == sorted(body)  # a Go map: keys sorted
    assert body["state_message"].startswith("HighCPU on web-1:9100\nAlerts Firing:\n")


@pytest.mark.parametrize(("configured", "firing", "resolved_"), [
    ("CRITICAL", "CRITICAL", "RECOVERY"),
    ("WARNING", "WARNING", "RECOVERY"),
    ("INFO", "INFO", "RECOVERY"),
    ("{{ .CommonLabels.severity }}", "WARNING", "RECOVERY"),
    ("ACKNOWLEDGEMENT", "CRITICAL", "RECOVERY"),  # not allowed when firing
    ("bogus", "CRITICAL", "RECOVERY"),
])
def test_victorops_message_type(configured: str, firing: str, resolved_: str) -> None:
    labels = {"severity": "WARNING"}
    assert _vo(request([alert(labels=labels)]), message_type=configured)["message_type"] == firing
    assert _vo(request([resolved(labels=labels)]), message_type=configured)["message_type"] == resolved_


def test_victorops_entity_id_is_the_same_for_firing_and_recovery() -> None:
    assert _vo(request([alert()]))["entity_id"] == _vo(request([resolved()], flush_seq=8))["entity_id"] == ALIAS_ACME


def test_victorops_custom_fields_and_state_message_limit() -> None:
    body = _vo(request([alert()]), custom_fields={"team": "{{ .CommonLabels.job }}"}, state_message="x" * 30000)
    assert body["team"] == "node"
    assert len(body["state_message"]) == 20480 and body["state_message"].endswith("…")


# --------------------------------------------------------------------------- Pushover


def _po(req: SendRequest, **kw: object) -> dict[str, str]:
    cfg = PushoverConfig(**kw)  # type: ignore[arg-type]
    return pushover_params(req, cfg, build_data(req, EXTERNAL_URL), "TOKEN", "USER")


def test_pushover_default_params() -> None:
    p = _po(request([alert()]))
    assert p == {
        "token": "TOKEN", "user": "USER", "title": "[FIRING:1] HighCPU (web-1:9100 node)",
        "message": p["message"], "url": LINK, "url_title": "", "priority": "2", "retry": "60", "expire": "3600",
        "device": "", "sound": "",
    }
    assert p["message"].startswith("HighCPU on web-1:9100\n\nAlerts Firing:")
    assert _po(request([resolved()]))["priority"] == "0"  # emergency only while firing


def test_pushover_form_is_sorted_and_round_trips() -> None:
    p = _po(request([alert()]), ttl=90.0, retry=45.5, html=True, message="<b>{{ .Status }}</b> & co")
    form = pushover_form(p)
    pairs = parse_qsl(form.decode(), keep_blank_values=True)
    assert [k for k, _ in pairs] == sorted(p)
    assert dict(pairs) == p
    assert (p["ttl"], p["retry"], p["html"]) == ("90", "45", "1")
    assert p["message"] == "<b>firing</b> & co"


@pytest.mark.parametrize(("field", "limit"), [("title", 250), ("message", 1024), ("url", 512)])
def test_pushover_limits(field: str, limit: int) -> None:
    p = _po(request([alert()]), **{field: "ü" * (limit + 7)})
    assert len(p[field]) == limit and p[field].endswith("…")
    assert _po(request([alert()]), **{field: "ü" * limit})[field] == "ü" * limit


def test_pushover_empty_message() -> None:
    assert _po(request([alert()]), message="  {{ .CommonLabels.nope }} ")["message"] == "(no details)"


def test_pushover_html_escapes_values() -> None:
    req = request([alert(annotations={"summary": "<script>"})])
    assert _po(req, html=True, message="{{ .CommonAnnotations.summary }}")["message"] == "&lt;script&gt;"
    assert _po(req, html=False, message="{{ .CommonAnnotations.summary }}")["message"] == "<script>"


@given(st.text(max_size=1500))
def test_pushover_message_never_exceeds_the_limit(text: str) -> None:
    req = request([alert(annotations={"summary": text})])
    got = _po(req, message="{{ .CommonAnnotations.summary }}")["message"]
    assert 0 < len(got) <= 1024
    assert got == "(no details)" or got.strip() == got


# --------------------------------------------------------------------------- WeChat


def _wc(req: SendRequest, **kw: object) -> dict[str, object]:
    return wechat_message(WechatConfig(**kw), build_data(req, EXTERNAL_URL))  # type: ignore[arg-type]


def test_wechat_text_message() -> None:
    msg = _wc(request([alert()]), to_user="@all", agent_id="1000002")
    assert list(msg) == ["text", "touser", "agentid", "safe", "msgtype", "markdown"]
    assert msg["touser"] == "@all" and msg["agentid"] == "1000002" and msg["safe"] == "0"
    assert msg["msgtype"] == "text" and msg["markdown"] == {"content": ""}
    assert str(msg["text"]["content"]).startswith("[FIRING:1] HighCPU")  # type: ignore[index]


def test_wechat_markdown_message() -> None:
    msg = _wc(request([alert()]), message_type="markdown", message="**{{ .Status }}**", to_party="2|3", to_tag="t")
    assert msg == {"text": {"content": ""}, "toparty": "2|3", "totag": "t", "safe": "0", "msgtype": "markdown",
                   "markdown": {"content": "**firing**"}}


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(("base", "path", "query", "url"), [
    ("https://x/cgi-bin/", "gettoken", [("corpsecret", "a b&c"), ("corpid", "id")],
     "https://x/cgi-bin/gettoken?corpid=id&corpsecret=a+b%26c"),
    ("https://x/", "v2/alerts", [], "https://x/v2/alerts"),
    ("https://x/p/?keep=1", "v2/alerts/k/close", [("identifierType", "alias")],
     "https://x/p/v2/alerts/k/close?keep=1&identifierType=alias"),
])
def test_join_url(base: str, path: str, query: list[tuple[str, str]], url: str) -> None:
    assert join_url(base, path, query) == url


# --------------------------------------------------------------------------- configuration


def _load(receiver: str, global_: str = "{}") -> Receiver:
    text = f"global: {global_}\nroute: {{receiver: r}}\nreceivers:\n- name: r\n{receiver}"
    return load_config_text(text, "am.yml").receivers[0]


def _errors(receiver: str, global_: str = "{}") -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(receiver, global_)
    return info.value.errors


def test_global_defaults_fill_every_incident_kind() -> None:
    rcv = _load("  opsgenie_configs: [{}]\n  victorops_configs: [{routing_key: rk}]\n"
                "  wechat_configs: [{}]\n  pushover_configs: [{token: t, user_key: u}]\n",
                "{opsgenie_api_key: ok, opsgenie_api_url: 'http://og.example/api', victorops_api_key_file: /vo,"
                " wechat_api_secret: ws, wechat_api_corp_id: corp, wechat_api_url: 'http://wc.example/x'}")
    og, vo, wc, po = rcv.opsgenie_configs[0], rcv.victorops_configs[0], rcv.wechat_configs[0], rcv.pushover_configs[0]
    assert (og.api_key, og.api_url) == (Secret("ok"), "http://og.example/api/")  # a trailing slash, as AM adds
    assert (vo.api_key, vo.api_key_file, vo.api_url) == (None, "/vo", VICTOROPS_URL)
    assert (wc.api_secret, wc.corp_id, wc.api_url, wc.message_type) == (Secret("ws"), "corp", "http://wc.example/x/",
                                                                        "text")
    assert (po.retry, po.expire, po.ttl, po.send_resolved) == (60.0, 3600.0, 0.0, True)
    assert wc.send_resolved is False and og.send_resolved is True and vo.send_resolved is True
    for cfg in (og, vo, wc, po):
        assert cfg.http_config is not None  # the global http_config


def test_a_local_key_file_is_not_shadowed_by_the_global_key() -> None:
    og = _load("  opsgenie_configs: [{api_key_file: /mine}]\n", "{opsgenie_api_key: global}").opsgenie_configs[0]
    assert (og.api_key, og.api_key_file) == (None, "/mine")


@pytest.mark.parametrize(("receiver", "error"), [
    ("  opsgenie_configs: [{message: m}]\n",
     "am.yml:5: receivers[0].opsgenie_configs[0]: no global OpsGenie API Key set either inline or in a file"),
    ("  opsgenie_configs: [{api_key: a, api_key_file: /f}]\n",
     "am.yml:5: receivers[0].opsgenie_configs[0].api_key_file: at most one of api_key & api_key_file must be "
     "configured"),
    ("  opsgenie_configs:\n  - api_key: a\n    responders: [{type: team}]\n",
     "am.yml:7: receivers[0].opsgenie_configs[0].responders[0]: opsgenie responder has to have at least one of id, "
     "username or name specified"),
    ("  opsgenie_configs:\n  - api_key: a\n    responders: [{name: x, type: squad}]\n",
     'am.yml:7: receivers[0].opsgenie_configs[0].responders[0].type: opsgenie responder type "squad" does not match '
     "valid options ^(team|teams|user|escalation|schedule)$"),
    ("  victorops_configs: [{api_key: k}]\n", "am.yml:5: receivers[0].victorops_configs[0]: missing Routing key in "
     "VictorOps config"),
    ("  victorops_configs: [{routing_key: r}]\n",
     "am.yml:5: receivers[0].victorops_configs[0]: no global VictorOps API Key set"),
    ("  victorops_configs: [{api_key: k, routing_key: r, custom_fields: {entity_state: x}}]\n",
     "am.yml:5: receivers[0].victorops_configs[0].custom_fields: victorOps config contains custom field entity_state "
     "which cannot be used as it conflicts with the fixed/static fields"),
    ("  pushover_configs: [{token: t}]\n",
     "am.yml:5: receivers[0].pushover_configs[0]: one of user_key or user_key_file must be configured"),
    ("  pushover_configs: [{token: t, user_key: u, html: true, monospace: true}]\n",
     "am.yml:5: receivers[0].pushover_configs[0].monospace: at most one of monospace & html must be configured"),
    ("  pushover_configs: [{token: t, user_key: u, retry: 5}]\n",
     'am.yml:5: receivers[0].pushover_configs[0].retry: invalid duration "5"'),
    ("  wechat_configs: [{corp_id: c}]\n",
     "am.yml:5: receivers[0].wechat_configs[0]: no global Wechat Api Secret set either inline or in a file"),
    ("  wechat_configs: [{api_secret: s}]\n", "am.yml:5: receivers[0].wechat_configs[0].corp_id: no global Wechat "
     "CorpID set"),
    ("  wechat_configs: [{api_secret: s, corp_id: c, message_type: news}]\n",
     'am.yml:5: receivers[0].wechat_configs[0].message_type: weChat message type "news" does not match valid '
     "options ^(text|markdown)$"),
    ("  wechat_configs: [{api_secret: s, corp_id: c, agentid: 1}]\n", "agentid"),
])
def test_config_errors_name_the_line(receiver: str, error: str) -> None:
    errors = _errors(receiver)
    assert any(error in e for e in errors), errors
