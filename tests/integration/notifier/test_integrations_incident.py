"""Opsgenie, VictorOps, Pushover and WeChat deliver to a real local server that checks each request
as the service would: method, path, query, headers, auth and the body's schema."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from contracts.messages import SendRequest
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from stages.notifier.classify import Outcome
from stages.notifier.delivery import Sender, attempt
from stages.notifier.integrations.pushover import PushoverSender
from stages.notifier.senders import Senders, build_senders

from .helpers import T0, alert, publish, running_notifier, send_request, wait_ledger
from .peers import Answer, HttpPeer, Recorded

pytestmark = pytest.mark.integration

EXTERNAL = "http://tocsin.test:9093"
GROUP_KEY = '{}:{alertname="Down"}'
ALIAS = hashlib.sha256(b"acme\x00" + GROUP_KEY.encode()).hexdigest()  # the group's key in every service
LINK = f"{EXTERNAL}/#/alerts?receiver=team"
JSON_OK = Answer(200, {"Content-Type": "application/json"}, b'{"result":"Request will be processed"}')


def _json(doc: object, status: int = 200) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, msgspec.json.encode(doc))


def firing(send_id: str = "acme/g1/team/x/0/1") -> SendRequest:
    return send_request(send_id, "team", alerts=[alert("Down"), alert("Down", instance="b")])


def resolved(send_id: str = "acme/g1/team/x/0/2") -> SendRequest:
    return send_request(send_id, "team", alerts=[alert("Down", ends_at=T0 - 5)], status="resolved", flush_seq=2)


# --------------------------------------------------------------------------- what each service accepts


def _schema(body: dict[str, Any], required: dict[str, type | tuple[type, ...]],
            optional: dict[str, type | tuple[type, ...]], *, extra: bool = False) -> None:
    """``body`` has every required key, only known keys (unless ``extra``), each of its type."""
    for key, tp in required.items():
        assert key in body, f"missing {key}"
        assert isinstance(body[key], tp), f"{key}: {body[key]!r}"
    for key, value in body.items():
        if key in optional:
            assert isinstance(value, optional[key]), f"{key}: {value!r}"
        else:
            assert extra or key in required, f"unknown key {key}"


def opsgenie_create(r: Recorded) -> dict[str, Any]:
    # https://docs.opsgenie.com/docs/alert-api#create-alert
    body = r.json()
    _schema(body, {"message": str}, {"alias": str, "description": str, "responders": list, "visibleTo": list,
                                     "actions": list, "tags": list, "details": dict, "entity": str, "source": str,
                                     "priority": str, "user": str, "note": str})
    assert 0 < len(body["message"]) <= 130 and len(body["alias"]) <= 512 and len(body["source"]) <= 100
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body.get("priority", "P3") in ("P1", "P2", "P3", "P4", "P5")
    for resp in body.get("responders", []):
        assert resp["type"] in ("team", "user", "escalation", "schedule")
        assert {"id", "name", "username"} & set(resp)
    return body


def opsgenie_close(r: Recorded) -> dict[str, Any]:
    body = r.json()
    _schema(body, {}, {"user": str, "source": str, "note": str})
    return body


def victorops_event(r: Recorded) -> dict[str, Any]:
    # https://help.victorops.com/knowledge-base/rest-endpoint-integration-guide/
    body = r.json()
    _schema(body, {"message_type": str, "entity_id": str},
            {"entity_display_name": str, "state_message": str, "monitoring_tool": str, "state_start_time": int},
            extra=True)
    assert body["message_type"] in ("CRITICAL", "WARNING", "INFO", "ACKNOWLEDGEMENT", "RECOVERY")
    assert all(isinstance(v, str) for v in body.values())
    return body


def pushover_message(r: Recorded) -> dict[str, str]:
    # https://pushover.net/api: a form, token/user/message required, limits on lengths
    assert r.headers["content-type"] == "application/x-www-form-urlencoded"
    assert urlsplit(r.path).query == ""  # secrets in the body, not the URL
    pairs = parse_qsl(r.body.decode(), keep_blank_values=True, strict_parsing=True)
    form = dict(pairs)
    assert len(form) == len(pairs)
    known = {"token", "user", "message", "attachment", "device", "html", "monospace", "priority", "sound",
             "timestamp", "title", "ttl", "url", "url_title", "retry", "expire", "callback", "tags"}
    assert set(form) <= known and {"token", "user", "message"} <= set(form)
    assert 0 < len(form["message"]) <= 1024 and len(form["title"]) <= 250 and len(form["url"]) <= 512
    assert form["priority"] in ("-2", "-1", "0", "1", "2")
    if form["priority"] == "2":
        assert int(form["retry"]) >= 30 and int(form["expire"]) <= 10800
    return form


def wechat_send(r: Recorded) -> dict[str, Any]:
    # https://developer.work.weixin.qq.com/document/path/90236
    body = r.json()
    _schema(body, {"msgtype": str}, {"touser": str, "toparty": str, "totag": str, "agentid": (str, int),
                                     "text": dict, "markdown": dict, "safe": str})
    assert body["msgtype"] in ("text", "markdown")
    assert body[body["msgtype"]]["content"]
    return body


# --------------------------------------------------------------------------- helpers


@dataclass
class Built:
    senders: Senders
    sender: Sender


async def _build(text: str, kind: str, peer: HttpPeer) -> Built:
    config = load_text(textwrap.dedent(text).replace("PEER", peer.url), "am.yml").config
    senders = build_senders(config, external_url=EXTERNAL)
    assert not senders.problems
    sender = senders.get(("team", kind, 0))
    assert sender is not None
    if isinstance(sender, PushoverSender):  # Pushover's endpoint is fixed, as in Alertmanager
        sender.api_url = f"{peer.url}/1/messages.json"
    return Built(senders, sender)


@pytest.fixture
async def built(http_peer: HttpPeer) -> AsyncIterator[Callable[[str, str], Any]]:
    made: list[Built] = []

    async def make(text: str, kind: str) -> Sender:
        b = await _build(text, kind, http_peer)
        made.append(b)
        return b.sender

    yield make
    for b in made:
        await b.senders.aclose()


async def _send(sender: Sender, req: SendRequest) -> Outcome:
    return await attempt(sender, req, T0)


# --------------------------------------------------------------------------- one row per kind


@dataclass
class Row:
    kind: str
    config: str
    firing: list[tuple[str, str]]  # (method, path with query) of each request
    resolved: list[tuple[str, str]]
    answers: dict[str, Answer]


WECHAT_TOKEN = "/cgi-bin/gettoken?corpid=wwcorp&corpsecret=s3cret"
WECHAT_SEND = "/cgi-bin/message/send?access_token=TOK1"

ROWS = [
    Row("opsgenie", """
        route: {receiver: team}
        receivers:
        - name: team
          opsgenie_configs:
          - api_key: genie-key
            api_url: PEER/
        """, [("POST", "/v2/alerts")], [("POST", f"/v2/alerts/{ALIAS}/close?identifierType=alias")],
        {"/v2/alerts": JSON_OK}),
    Row("victorops", """
        global: {victorops_api_key: vo-key, victorops_api_url: PEER/integrations/generic/20131114/alert}
        route: {receiver: team}
        receivers:
        - name: team
          victorops_configs:
          - routing_key: '{{ .CommonLabels.alertname | toLower }}-ops'
        """, [("POST", "/integrations/generic/20131114/alert/vo-key/down-ops")],
        [("POST", "/integrations/generic/20131114/alert/vo-key/down-ops")], {}),
    Row("pushover", """
        route: {receiver: team}
        receivers:
        - name: team
          pushover_configs:
          - user_key: uQiRzpo4DXghDmr9QzzfQu27cmVRsG
            token: azGDORePK8gMaC0QOYAMyEEuzJnyUi
        """, [("POST", "/1/messages.json")], [("POST", "/1/messages.json")], {}),
    Row("wechat", """
        global: {wechat_api_url: 'PEER/cgi-bin/', wechat_api_secret: s3cret, wechat_api_corp_id: wwcorp}
        route: {receiver: team}
        receivers:
        - name: team
          wechat_configs:
          - send_resolved: true
            to_user: '@all'
            agent_id: '1000002'
        """, [("GET", WECHAT_TOKEN), ("POST", WECHAT_SEND)], [("POST", WECHAT_SEND)],
        {WECHAT_TOKEN: _json({"errcode": 0, "errmsg": "ok", "access_token": "TOK1", "expires_in": 7200}),
         WECHAT_SEND: _json({"errcode": 0, "errmsg": "ok"})}),
]


def _check(row: Row, r: Recorded, status: str) -> None:
    assert r.headers["user-agent"].startswith("Tocsin/")
    if row.kind == "opsgenie":
        assert r.headers["authorization"] == "GenieKey genie-key"
        assert r.headers["content-type"] == "application/json"
        if status == "firing":
            body = opsgenie_create(r)
            assert body["alias"] == ALIAS and body["message"] == "[FIRING:2] Down "
            assert body["details"] == {"alertname": "Down"} and body["source"] == LINK
        else:
            assert opsgenie_close(r) == {"source": LINK}
    elif row.kind == "victorops":
        assert r.headers["content-type"] == "application/json"
        body = victorops_event(r)
        assert body["entity_id"] == ALIAS and body["monitoring_tool"] == "Alertmanager"
        assert body["message_type"] == ("CRITICAL" if status == "firing" else "RECOVERY")
    elif row.kind == "pushover":
        form = pushover_message(r)
        assert (form["token"], form["user"]) == ("azGDORePK8gMaC0QOYAMyEEuzJnyUi", "uQiRzpo4DXghDmr9QzzfQu27cmVRsG")
        assert form["priority"] == ("2" if status == "firing" else "0")
        assert form["title"].startswith(f"[{status.upper()}") and form["url"] == LINK
    elif row.kind == "wechat":
        if r.method == "GET":
            assert r.body == b"" and "content-type" not in r.headers
            return
        body = wechat_send(r)
        assert (body["touser"], body["agentid"], body["msgtype"]) == ("@all", "1000002", "text")
        assert body["text"]["content"].startswith(f"[{status.upper()}")


@pytest.mark.parametrize("row", ROWS, ids=[r.kind for r in ROWS])
async def test_firing_then_resolved(row: Row, http_peer: HttpPeer, built: Any) -> None:
    for path, answer in row.answers.items():
        http_peer.default(path, answer)
    sender = await built(row.config, row.kind)
    assert (await _send(sender, firing())).ok
    got = list(http_peer.requests)
    assert [(r.method, r.path) for r in got] == row.firing
    for r in got:
        _check(row, r, "firing")
    assert (await _send(sender, resolved())).ok
    later = http_peer.requests[len(got):]
    assert [(r.method, r.path) for r in later] == row.resolved  # WeChat: the token is reused
    for r in later:
        _check(row, r, "resolved")


@pytest.mark.parametrize(("row", "status", "retryable"), [
    (row, status, retryable) for row in ROWS
    for status, retryable in ((500, True), (503, True), (429, True), (400, row.kind == "wechat"),
                              (401, row.kind == "wechat"), (422, row.kind == "wechat"))
], ids=lambda v: getattr(v, "kind", str(v)))
async def test_status_handling(row: Row, status: int, retryable: bool, http_peer: HttpPeer, built: Any) -> None:
    for path, answer in row.answers.items():
        http_peer.default(path, answer)
    last = row.firing[-1][1]
    http_peer.reply(last, Answer(status, {}, b'{"message":"nope"}'))
    sender = await built(row.config, row.kind)
    out = await _send(sender, firing())
    assert not out.ok and out.status == status and out.verdict.retryable is retryable
    assert "genie-key" not in out.error and "vo-key" not in out.error and "s3cret" not in out.error


# --------------------------------------------------------------------------- Opsgenie


OPSGENIE = """
route: {receiver: team}
receivers:
- name: team
  opsgenie_configs:
  - api_key_file: KEYFILE
    api_url: PEER
    update_alerts: true
    priority: '{{ if eq .CommonLabels.alertname "Down" }}P1{{ else }}P3{{ end }}'
    tags: 'db,{{ .CommonLabels.alertname }}'
    responders:
    - {name: 'ops,dba', type: teams}
    - {username: alice@example.org, type: User}
    - {id: '{{ .CommonLabels.schedule }}', type: schedule}
    http_config:
      authorization: {credentials: not-for-opsgenie}
"""


async def test_opsgenie_update_alerts_responders_and_key_file(http_peer: HttpPeer, built: Any,
                                                              tmp_path: Path) -> None:
    (tmp_path / "key").write_text("file-key\n")
    sender = await built(OPSGENIE.replace("KEYFILE", str(tmp_path / "key")), "opsgenie")
    assert (await _send(sender, firing())).ok
    create, message, description = http_peer.requests
    assert [(r.method, r.path) for r in http_peer.requests] == [
        ("POST", "/v2/alerts"),  # the api_url got its trailing slash
        ("PUT", f"/v2/alerts/{ALIAS}/message?identifierType=alias"),
        ("PUT", f"/v2/alerts/{ALIAS}/description?identifierType=alias"),
    ]
    for r in http_peer.requests:  # its own Authorization wins over http_config's, as in Alertmanager
        assert r.headers["authorization"] == "GenieKey file-key"
    body = opsgenie_create(create)
    assert body["priority"] == "P1" and body["tags"] == ["db", "Down"]
    assert body["responders"] == [{"name": "ops", "type": "team"}, {"name": "dba", "type": "team"},
                                  {"username": "alice@example.org", "type": "user"}]  # the empty schedule left out
    assert message.json() == {"message": body["message"]}
    assert description.json() == {"description": body["description"]}


async def test_opsgenie_create_failure_stops_before_the_updates(http_peer: HttpPeer, built: Any,
                                                                tmp_path: Path) -> None:
    (tmp_path / "key").write_text("file-key")
    http_peer.reply("/v2/alerts", Answer(429, {"Retry-After": "7"}, b""))
    sender = await built(OPSGENIE.replace("KEYFILE", str(tmp_path / "key")), "opsgenie")
    out = await _send(sender, firing())
    assert (out.ok, out.verdict.retryable, out.verdict.reason, out.retry_after) == (False, True, "rateLimited", 7.0)
    assert len(http_peer.requests) == 1
    assert (await _send(sender, firing())).ok  # the retry posts the create again: Opsgenie dedupes by alias
    assert [r.json()["alias"] for r in http_peer.on("/v2/alerts")] == [ALIAS, ALIAS]


async def test_opsgenie_through_the_notifier_worker(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    config = load_text(textwrap.dedent(f"""
    global: {{opsgenie_api_key: genie-key, opsgenie_api_url: '{http_peer.url}/'}}
    route: {{receiver: team}}
    receivers:
    - name: team
      opsgenie_configs:
      - priority: P2
    """), "am.yml").config
    http_peer.reply("/v2/alerts", Answer(503))  # retried by the worker, then created
    async with running_notifier(nats_server.url, config, external_url=EXTERNAL) as r:
        await publish(r.js, send_request("acme/g1/team/opsgenie/0/1", "team", "opsgenie"))
        await wait_ledger(r.ledger, "acme/g1/team/opsgenie/0/1", {"sent"}, timeout=30)
        await publish(r.js, send_request("acme/g1/team/opsgenie/0/2", "team", "opsgenie", flush_seq=2,
                                         alerts=[alert("Down", ends_at=T0 - 1)], status="resolved"))
        await wait_ledger(r.ledger, "acme/g1/team/opsgenie/0/2", {"sent"}, timeout=30)
    creates = http_peer.on("/v2/alerts")
    assert len(creates) == 2 and creates[0].body == creates[1].body
    assert opsgenie_create(creates[1])["priority"] == "P2"
    [close] = http_peer.on(f"/v2/alerts/{ALIAS}/close?identifierType=alias")
    assert close.headers["authorization"] == "GenieKey genie-key" and opsgenie_close(close) == {"source": LINK}


# --------------------------------------------------------------------------- VictorOps


async def test_victorops_key_file_custom_fields_and_message_type(http_peer: HttpPeer, built: Any,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "vo").write_text("file-vo-key\n")
    sender = await built(f"""
        route: {{receiver: team}}
        receivers:
        - name: team
          victorops_configs:
          - api_key_file: {tmp_path / "vo"}
            api_url: PEER/alert/
            routing_key: 'team a/b'
            message_type: '{{{{ if .CommonLabels.sev }}}}{{{{ .CommonLabels.sev }}}}{{{{ else }}}}WARNING{{{{ end }}}}'
            custom_fields: {{runbook: 'https://runbooks/{{{{ .CommonLabels.alertname }}}}'}}
        """, "victorops")
    assert (await _send(sender, firing())).ok
    [r] = http_peer.requests
    assert r.path == "/alert/file-vo-key/team%20a/b"  # escaped as Go escapes a path
    body = victorops_event(r)
    assert body["message_type"] == "WARNING" and body["runbook"] == "https://runbooks/Down"
    assert body["entity_display_name"] == "[FIRING:2] Down "


# --------------------------------------------------------------------------- Pushover


async def test_pushover_secrets_from_files_limits_and_options(http_peer: HttpPeer, built: Any,
                                                              tmp_path: Path) -> None:
    (tmp_path / "token").write_text("azGDORePK8gMaC0QOYAMyEEuzJnyUi\n")
    (tmp_path / "user").write_text("uQiRzpo4DXghDmr9QzzfQu27cmVRsG\n")
    sender = await built(f"""
        route: {{receiver: team}}
        receivers:
        - name: team
          pushover_configs:
          - token_file: {tmp_path / "token"}
            user_key_file: {tmp_path / "user"}
            title: '{{{{ range .Alerts }}}}{{{{ .Labels.instance }}}}-{{{{ end }}}}{{{{ "x" | printf "%0300s" }}}}'
            message: '{{{{ .Status }}}} é{{{{ printf "%2000s" "!" }}}}'
            html: true
            priority: '1'
            retry: 45s
            expire: 2h
            ttl: 1h30m
            sound: siren
            device: phone
            url_title: Alerts
        """, "pushover")
    assert (await _send(sender, firing())).ok
    [r] = http_peer.requests
    form = pushover_message(r)
    assert form["token"] == "azGDORePK8gMaC0QOYAMyEEuzJnyUi" and form["user"] == "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
    assert len(form["title"]) == 250 and form["title"].startswith("a-b-") and form["title"].endswith("…")
    assert len(form["message"]) == 1024 and form["message"].startswith("firing é") and form["message"][-1] == "…"
    assert (form["html"], form["priority"], form["retry"], form["expire"], form["ttl"]) == ("1", "1", "45", "7200",
                                                                                           "5400")
    assert (form["sound"], form["device"], form["url_title"]) == ("siren", "phone", "Alerts")


# --------------------------------------------------------------------------- WeChat

WECHAT = ROWS[3]


async def test_wechat_token_is_fetched_once_and_refreshed_when_expired(http_peer: HttpPeer, built: Any) -> None:
    http_peer.default(WECHAT_TOKEN, WECHAT.answers[WECHAT_TOKEN])
    http_peer.reply(WECHAT_SEND, _json({"errcode": 0, "errmsg": "ok"}), _json({"errcode": 0, "errmsg": "ok"}),
                    _json({"errcode": 42001, "errmsg": "access_token expired"}))
    http_peer.default(WECHAT_SEND, _json({"errcode": 0, "errmsg": "ok"}))
    sender = await built(WECHAT.config, "wechat")
    assert (await _send(sender, firing("a"))).ok
    assert (await _send(sender, firing("b"))).ok
    assert len(http_peer.on(WECHAT_TOKEN)) == 1  # cached
    out = await _send(sender, firing("c"))
    assert (out.ok, out.verdict.retryable) == (False, True) and "42001" in out.error
    assert (await _send(sender, firing("c"))).ok  # the retry fetched a new token
    assert len(http_peer.on(WECHAT_TOKEN)) == 2
    # and after its lifetime, as Alertmanager (2 hours; here WeChat's expires_in less a margin)
    assert (await attempt(sender, firing("d"), T0 + 7200)).ok
    assert len(http_peer.on(WECHAT_TOKEN)) == 3


@pytest.mark.parametrize(("answer", "retryable", "error"), [
    (_json({"errcode": 60020, "errmsg": "not allow to access from your ip"}), False, "errcode 60020"),
    (_json({"errcode": -1, "errmsg": "system busy"}), True, "errcode -1"),
    (Answer(200, {}, b"<html>gateway</html>"), True, "not JSON"),
])
async def test_wechat_errcodes(answer: Answer, retryable: bool, error: str, http_peer: HttpPeer,
                               built: Any) -> None:
    http_peer.default(WECHAT_TOKEN, WECHAT.answers[WECHAT_TOKEN])
    http_peer.reply(WECHAT_SEND, answer)
    sender = await built(WECHAT.config, "wechat")
    out = await _send(sender, firing())
    assert (out.ok, out.verdict.retryable) == (False, retryable)
    assert error in out.error.replace("something else than JSON", "not JSON")


async def test_wechat_bad_secret_is_final_and_never_quoted(http_peer: HttpPeer, built: Any) -> None:
    http_peer.default(WECHAT_TOKEN, _json({"errcode": 40001, "errmsg": "invalid credential"}))
    sender = await built(WECHAT.config, "wechat")
    out = await _send(sender, firing())
    assert (out.ok, out.verdict.retryable) == (False, False)
    assert "invalid APISecret for CorpID: wwcorp" in out.error and "40001" in out.error and "s3cret" not in out.error
    assert http_peer.on(WECHAT_SEND) == []


async def test_wechat_markdown(http_peer: HttpPeer, built: Any) -> None:
    for path, answer in WECHAT.answers.items():
        http_peer.default(path, answer)
    sender = await built(WECHAT.config.replace("to_user: '@all'", "message_type: markdown\n"
                                               "            message: '**{{ .Status }}**'"), "wechat")
    assert (await _send(sender, firing())).ok
    body = wechat_send(http_peer.on(WECHAT_SEND)[0])
    assert body["msgtype"] == "markdown" and body["markdown"] == {"content": "**firing**"}
    assert body["text"] == {"content": ""}  # as Alertmanager sends it


async def test_opsgenie_through_a_proxy(http_peer: HttpPeer, built: Any) -> None:
    # the proxy path (httpx) sends the PUTs too; the peer plays the forward proxy
    sender = await built("""
        route: {receiver: team}
        receivers:
        - name: team
          opsgenie_configs:
          - api_key: genie-key
            api_url: http://opsgenie.invalid/
            update_alerts: true
            http_config: {proxy_url: PEER}
        """, "opsgenie")
    assert (await _send(sender, firing())).ok
    assert (await _send(sender, resolved())).ok
    assert [(r.method, r.path) for r in http_peer.requests] == [
        ("POST", "http://opsgenie.invalid/v2/alerts"),
        ("PUT", f"http://opsgenie.invalid/v2/alerts/{ALIAS}/message?identifierType=alias"),
        ("PUT", f"http://opsgenie.invalid/v2/alerts/{ALIAS}/description?identifierType=alias"),
        ("POST", f"http://opsgenie.invalid/v2/alerts/{ALIAS}/close?identifierType=alias"),
    ]
    assert {r.headers["authorization"] for r in http_peer.requests} == {"GenieKey genie-key"}


async def test_wechat_through_a_proxy(http_peer: HttpPeer, built: Any) -> None:
    http_peer.default("http://wechat.invalid" + WECHAT_TOKEN, WECHAT.answers[WECHAT_TOKEN])
    http_peer.default("http://wechat.invalid" + WECHAT_SEND, WECHAT.answers[WECHAT_SEND])
    sender = await built(WECHAT.config.replace("PEER/cgi-bin/", "http://wechat.invalid/cgi-bin/").replace(
        "to_user: '@all'", "http_config: {proxy_url: PEER}"), "wechat")
    assert (await _send(sender, firing())).ok
    assert [r.method for r in http_peer.requests] == ["GET", "POST"]
