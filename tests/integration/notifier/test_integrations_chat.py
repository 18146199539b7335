"""The chat integrations (Discord, Mattermost, Teams v1/v2, Rocket.Chat, Webex, Telegram)
against a real local HTTP server: each request is checked as the service would read it
(method, path, headers, auth, the JSON body), firing and resolved; then the kind-specific
rules (Telegram's parse_mode and length limits, Discord's truncation, errors answered in
the body) and one send through the notifier worker.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.messages import SendRequest
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from stages.notifier.classify import Outcome
from stages.notifier.delivery import attempt
from stages.notifier.integrations.telegram import TOO_LONG_HTML
from stages.notifier.senders import Senders, build_senders

from .helpers import T0, alert, am_config, publish, running_notifier, send_request, wait_ledger
from .peers import Answer, HttpPeer

pytestmark = pytest.mark.integration

EXTERNAL = "http://tocsin.test:9093"
AM_URL = f"{EXTERNAL}/#/alerts?receiver=team"
SUBJECT = {"firing": "[FIRING:1] Down (a)", "resolved": "[RESOLVED] Down (a)"}
# Alertmanager's default texts for the one alert of ``helpers.alert("Down")``
TEXT_LIST = ("Labels:\n - alertname = Down\n - instance = a\nAnnotations:\n - summary = Down on a\n"
             "Source: http://prom/graph\n")
MARKDOWN_LIST = ("\nLabels:\n  - alertname = Down\n  - instance = a\n\nAnnotations:\n  - summary = Down on a\n\n"
                 "Source: http://prom/graph\n\n")
JSON_OK = {"Content-Type": "application/json"}


def plain_message(status: str) -> str:
    """telegram.default.message and discord.default.message."""
    if status == "firing":
        return f"\n\nAlerts Firing:\n{TEXT_LIST}\n\n\n"
    return f"\n\n\nAlerts Resolved:\n{TEXT_LIST}\n\n"


def markdown_text(status: str) -> str:
    """msteams.default.text, msteamsv2.default.text and mattermost.default.text."""
    if status == "firing":
        return f"\n\n# Alerts Firing:\n{MARKDOWN_LIST}\n\n\n"
    return f"\n\n\n# Alerts Resolved:\n{MARKDOWN_LIST}\n\n"


def request(kind: str, status: str = "firing", *, index: int = 0, **labels: str) -> SendRequest:
    a = alert("Down", ends_at=T0 - 10 if status == "resolved" else None)
    if labels:
        a = msgspec.structs.replace(a, labels={**a.labels, **labels})
    return send_request(f"org/acme/g1/team/{kind}/{index}/1", "team", kind, index, alerts=[a], status=status)


@contextlib.asynccontextmanager
async def senders_for(integrations: str, global_: str = "{}") -> AsyncIterator[Senders]:
    """The senders of receiver "team", loaded as ``tocsin up`` loads (templates checked)."""
    text = (f"global: {global_}\nroute: {{receiver: team}}\nreceivers:\n- name: team\n"
            + textwrap.indent(textwrap.dedent(integrations).strip() + "\n", "  "))
    senders = build_senders(load_text(text, "alertmanager.yml").config, external_url=EXTERNAL)
    assert senders.problems == []
    try:
        yield senders
    finally:
        await senders.aclose()


async def send(senders: Senders, req: SendRequest) -> Outcome:
    sender = senders.get((req.receiver, req.integration.kind, req.integration.index))
    assert sender is not None
    return await attempt(sender, req, T0)


# --------------------------------------------------------------------------- one row per kind


@dataclass(frozen=True)
class Case:
    kind: str
    config: str  # the receiver's integration; {url} is the peer's URL
    path: str  # request target as the service receives it
    answer: Answer  # what the service answers on success
    headers: dict[str, str]  # headers the service checks (auth), lower-case names
    body: Callable[[str], dict[str, Any]]  # the JSON body for a status


CASES = [
    Case("discord", "discord_configs: [{webhook_url: '{url}/api/webhooks/42/tok'}]", "/api/webhooks/42/tok",
         Answer(204, body=b""), {},
         lambda s: {"content": "", "embeds": [{"title": SUBJECT[s], "description": plain_message(s),
                                               "color": 0x992D22 if s == "firing" else 0x2ECC71}]}),
    Case("mattermost", "mattermost_configs: [{webhook_url: '{url}/hooks/xyz', channel: ops}]", "/hooks/xyz",
         Answer(200, body=b"ok"), {},
         lambda s: {"channel": "ops", "username": "Alertmanager", "attachments": [{
             "fallback": f"{SUBJECT[s]} | {AM_URL}", "color": "danger" if s == "firing" else "good",
             "text": markdown_text(s), "title": SUBJECT[s], "title_link": AM_URL}]}),
    Case("msteams", "msteams_configs: [{webhook_url: '{url}/webhookb2/abc/IncomingWebhook/def'}]",
         "/webhookb2/abc/IncomingWebhook/def", Answer(200, body=b"1"), {},
         lambda s: {"@context": "http://schema.org/extensions", "type": "MessageCard", "title": SUBJECT[s],
                    "summary": SUBJECT[s], "text": markdown_text(s),
                    "themeColor": "8C1A1A" if s == "firing" else "2DC72D"}),
    Case("msteamsv2", "msteamsv2_configs: [{webhook_url: '{url}/workflows/w1/triggers/manual/paths/invoke?sig=x'}]",
         "/workflows/w1/triggers/manual/paths/invoke?sig=x", Answer(202, body=b""), {},
         lambda s: {"type": "message", "attachments": [{
             "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": {
                 "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                 "version": "1.2", "msteams": {"width": "full"}, "body": [
                     {"type": "TextBlock", "text": SUBJECT[s], "weight": "Bolder", "size": "Medium", "wrap": True,
                      "style": "heading", "color": "Attention" if s == "firing" else "Good"},
                     {"type": "TextBlock", "text": markdown_text(s), "wrap": True}]}}]}),
    Case("rocketchat", "rocketchat_configs: [{api_url: '{url}/chat/', token: tok-1, token_id: uid-1, "
         "channel: '#ops', send_resolved: true}]", "/chat/api/v1/chat.postMessage",
         Answer(200, JSON_OK, b'{"success": true}'), {"x-auth-token": "tok-1", "x-user-id": "uid-1"},
         lambda s: {"channel": "#ops", "attachments": [{"title": SUBJECT[s], "title_link": AM_URL,
                                                        "color": "red" if s == "firing" else "green"}]}),
    Case("webex", "webex_configs: [{api_url: '{url}/v1/messages', room_id: room-1, "
         "http_config: {authorization: {credentials: bot-tok}}}]", "/v1/messages",
         Answer(200, JSON_OK, b'{"id": "m1"}'), {"authorization": "Bearer bot-tok"},
         lambda s: {"markdown": "Down on a" + plain_message(s), "roomId": "room-1"}),
    Case("telegram", "telegram_configs: [{api_url: '{url}', bot_token: '123:abc', chat_id: -1001}]",
         "/bot123:abc/sendMessage", Answer(200, JSON_OK, b'{"ok": true, "result": {"message_id": 7}}'), {},
         lambda s: {"chat_id": "-1001", "text": plain_message(s), "parse_mode": "HTML",
                    "disable_web_page_preview": "true"}),
]


@pytest.mark.parametrize("status", ["firing", "resolved"])
@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
async def test_each_kind_sends_what_the_service_expects(http_peer: HttpPeer, case: Case, status: str) -> None:
    http_peer.default(case.path, case.answer)
    async with senders_for(case.config.replace("{url}", http_peer.url)) as senders:
        out = await send(senders, request(case.kind, status))
    assert out.ok, out.error
    [got] = http_peer.requests
    assert (got.method, got.path) == ("POST", case.path)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Tocsin/")
    for name, value in case.headers.items():
        assert got.headers.get(name) == value, name
    assert got.json() == case.body(status)


# --------------------------------------------------------------------------- Telegram


async def test_telegram_parse_mode_escapes_html_only_in_html_mode(http_peer: HttpPeer) -> None:
    path = "/bot1:t/sendMessage"
    http_peer.default(path, Answer(200, JSON_OK, b'{"ok": true, "result": {}}'))
    base = f"{{api_url: '{http_peer.url}', bot_token: '1:t', chat_id: 5, message: '{{{{ .CommonLabels.tag }}}}'"
    async with senders_for(f"""
        telegram_configs:
        - {base}}}
        - {base}, parse_mode: MarkdownV2, disable_notifications: true, message_thread_id: 99}}
        - {base}, parse_mode: ''}}
        """) as senders:
        for i in range(3):
            assert (await send(senders, request("telegram", index=i, tag="<b>R&D</b>"))).ok
    html, markdown, plain = (r.json() for r in http_peer.on(path))
    assert html == {"chat_id": "5", "text": "&lt;b&gt;R&amp;D&lt;/b&gt;", "parse_mode": "HTML",
                    "disable_web_page_preview": "true"}
    assert markdown == {"chat_id": "5", "text": "<b>R&D</b>", "parse_mode": "MarkdownV2",
                        "disable_web_page_preview": "true", "disable_notification": "true",
                        "message_thread_id": "99"}
    assert plain == {"chat_id": "5", "text": "<b>R&D</b>", "disable_web_page_preview": "true"}


async def test_telegram_length_limit_cuts_text_and_replaces_html(http_peer: HttpPeer) -> None:
    path = "/bot1:t/sendMessage"
    http_peer.default(path, Answer(200, JSON_OK, b'{"ok": true, "result": {}}'))
    base = f"{{api_url: '{http_peer.url}', bot_token: '1:t', chat_id: 5, message: '{{{{ .CommonLabels.long }}}}'"
    async with senders_for(f"""
        telegram_configs:
        - {base}}}
        - {base}, parse_mode: Markdown}}
        """) as senders:
        for long in ("y" * 4096, "y" * 4097):
            for i in range(2):
                assert (await send(senders, request("telegram", index=i, long=long))).ok
    texts = [r.json()["text"] for r in http_peer.on(path)]
    # at the limit: sent whole; one over: HTML gets Alertmanager's notice, Markdown is cut with "…"
    assert texts == ["y" * 4096, "y" * 4096, TOO_LONG_HTML, "y" * 4095 + "…"]


@pytest.mark.parametrize(("answer", "retryable", "reason", "retry_after"), [
    (Answer(429, JSON_OK, b'{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5", '
                          b'"parameters": {"retry_after": 5}}'), True, "rateLimited", 5.0),
    (Answer(400, JSON_OK, b'{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}'),
     False, "clientError", None),
    (Answer(401, JSON_OK, b'{"ok": false, "error_code": 401, "description": "Unauthorized"}'),
     False, "authError", None),
    (Answer(502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"), True, "serverError", None),
], ids=["flood", "chat-not-found", "unauthorized", "proxy-error"])
async def test_telegram_api_errors(http_peer: HttpPeer, tmp_path: Path, answer: Answer, retryable: bool,
                                   reason: str, retry_after: float | None) -> None:
    (tmp_path / "token").write_text("9:secret\n")
    (tmp_path / "chat").write_text(" -42\n")
    http_peer.default("/bot9:secret/sendMessage", answer)
    async with senders_for(f"""
        telegram_configs: [{{api_url: '{http_peer.url}/', chat_id_file: '{tmp_path / "chat"}'}}]
        """, global_=f"{{telegram_bot_token_file: '{tmp_path / 'token'}'}}") as senders:
        out = await send(senders, request("telegram"))
    assert http_peer.requests[0].json()["chat_id"] == "-42"
    assert (out.ok, out.verdict.retryable, out.verdict.reason, out.retry_after) == (
        False, retryable, reason, retry_after)
    assert "secret" not in out.error


# --------------------------------------------------------------------------- Discord, Webex, Rocket.Chat, Teams


async def test_discord_truncates_in_characters_as_alertmanager(http_peer: HttpPeer) -> None:
    http_peer.default("/d", Answer(204, body=b""))
    async with senders_for(f"""
        discord_configs:
        - webhook_url: '{http_peer.url}/d'
          title: '{{{{ .CommonLabels.t }}}}'
          message: '{{{{ .CommonLabels.m }}}}'
          content: '{{{{ .CommonLabels.c }}}}'
          username: 'Alerts {{{{ .Status }}}}'
          avatar_url: 'https://example.com/a.png'
        """) as senders:
        assert (await send(senders, request("discord", t="é" * 257, m="m" * 4097, c="🔥" * 2001))).ok
        assert (await send(senders, request("discord", t="é" * 256, m="m" * 4096, c="🔥" * 2000))).ok
    cut, whole = (r.json() for r in http_peer.on("/d"))
    assert cut["embeds"][0]["title"] == "é" * 255 + "…"
    assert cut["embeds"][0]["description"] == "m" * 4095 + "…"
    assert cut["content"] == "🔥" * 1999 + "…"
    assert (whole["embeds"][0]["title"], whole["embeds"][0]["description"], whole["content"]) == (
        "é" * 256, "m" * 4096, "🔥" * 2000)
    assert (cut["username"], cut["avatar_url"]) == ("Alerts {{ .Status }}", "https://example.com/a.png")


async def test_discord_rate_limit_is_retried_after_its_delay(http_peer: HttpPeer) -> None:
    http_peer.reply("/d", Answer(429, {"Retry-After": "3", **JSON_OK}, b'{"retry_after": 3.0, "global": false}'))
    async with senders_for(f"discord_configs: [{{webhook_url: '{http_peer.url}/d'}}]") as senders:
        out = await send(senders, request("discord"))
        assert (out.ok, out.verdict.retryable, out.verdict.reason, out.retry_after) == (
            False, True, "rateLimited", 3.0)
        assert (await send(senders, request("discord"))).ok


async def test_webex_truncates_in_bytes_as_alertmanager(http_peer: HttpPeer) -> None:
    http_peer.default("/m", Answer(200, JSON_OK, b"{}"))
    async with senders_for(f"""
        webex_configs:
        - {{api_url: '{http_peer.url}/m', room_id: r, message: '{{{{ .CommonLabels.m }}}}',
            http_config: {{bearer_token: b}}}}
        """) as senders:
        for m in ("a" * 7439, "a" * 7440, "a" + "é" * 5000):
            assert (await send(senders, request("webex", m=m))).ok
    whole, cut, split = (r.json()["markdown"] for r in http_peer.requests)
    assert (whole, cut) == ("a" * 7439, "a" * 7436 + "…")
    assert split == "a" + "é" * 3717 + "…"  # no character cut in half: 7438 bytes


async def test_rocketchat_errors_answered_with_200(http_peer: HttpPeer, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-f\n")
    path = "/api/v1/chat.postMessage"
    http_peer.reply(path, Answer(200, JSON_OK, b'{"success": false, "error": "error-not-allowed"}'),
                    Answer(200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"),
                    Answer(401, JSON_OK, b'{"status": "error", "message": "You must be logged in"}'))
    async with senders_for(f"""
        rocketchat_configs: [{{api_url: '{http_peer.url}', token_file: '{tmp_path / "token"}', channel: '#ops'}}]
        """, global_="{rocketchat_token_id: uid-g}") as senders:
        outs = [await send(senders, request("rocketchat")) for _ in range(3)]
    assert [(o.ok, o.verdict.retryable, o.verdict.reason) for o in outs] == [
        (False, False, "clientError"), (False, True, "other"), (False, False, "authError")]
    assert outs[0].error == "channel '#ops': Rocket.Chat error: error-not-allowed"
    assert http_peer.requests[0].headers["x-auth-token"] == "tok-f"
    assert http_peer.requests[0].headers["x-user-id"] == "uid-g"


async def test_rocketchat_fields_and_buttons(http_peer: HttpPeer) -> None:
    path = "/api/v1/chat.postMessage"
    http_peer.default(path, Answer(200, JSON_OK, b'{"success": true}'))
    async with senders_for(f"""
        rocketchat_configs:
        - api_url: '{http_peer.url}'
          token: t
          token_id: u
          short_fields: true
          emoji: ':fire:'
          fields:
          - {{title: Instance, value: '{{{{ .CommonLabels.instance }}}}'}}
          - {{title: Long, value: x, short: false}}
          actions: [{{type: link, text: Silence, url: 'https://am/silence', msg: hi}}]
        """) as senders:
        assert (await send(senders, request("rocketchat"))).ok
    body = http_peer.requests[0].json()
    assert body["emoji"] == ":fire:"
    att = body["attachments"][0]
    assert att["fields"] == [{"short": True, "title": "Instance", "value": "a"},
                             {"short": False, "title": "Long", "value": "x"}]
    assert att["actions"] == [{"type": "button", "text": "Silence", "url": "https://am/silence", "is_webview": False,
                               "msg": "hi", "msg_in_chat_window": False}]


async def test_teams_webhook_url_file_and_global_http_config(http_peer: HttpPeer, tmp_path: Path) -> None:
    (tmp_path / "url").write_text(f"{http_peer.url}/secret-hook\n")
    http_peer.default("/secret-hook", Answer(200, body=b"1"))
    async with senders_for(f"""
        msteams_configs: [{{webhook_url_file: '{tmp_path / "url"}'}}]
        """, global_="{http_config: {basic_auth: {username: u, password: p}}}") as senders:
        assert (await send(senders, request("msteams"))).ok
    assert http_peer.requests[0].headers["authorization"] == "Basic dTpw"


async def test_server_error_is_retried_client_error_is_not(http_peer: HttpPeer) -> None:
    http_peer.reply("/h", Answer(503, body=b"busy"), Answer(400, body=b"Invalid webhook payload"))
    async with senders_for(f"msteamsv2_configs: [{{webhook_url: '{http_peer.url}/h'}}]") as senders:
        busy = await send(senders, request("msteamsv2"))
        bad = await send(senders, request("msteamsv2"))
    assert (busy.verdict.retryable, busy.verdict.reason) == (True, "serverError")
    assert (bad.verdict.retryable, bad.verdict.reason, bad.error) == (
        False, "clientError", "unexpected status code 400: Invalid webhook payload")


# --------------------------------------------------------------------------- Mattermost


async def test_mattermost_global_url_attachments_and_priority(http_peer: HttpPeer) -> None:
    http_peer.default("/hooks/g", Answer(200, body=b"ok"))
    async with senders_for("""
        mattermost_configs:
        - text: 'Status: {{ .Status }}'
          icon_emoji: ':bell:'
          attachments:
          - {title: '{{ .CommonLabels.alertname }}', color: '#FF0000', fields: [{title: a, value: b, short: true}]}
          props: {card: 'card {{ .Status }}'}
          priority: {priority: URGENT, requested_ack: true, persistent_notifications: true}
        - {priority: {priority: bogus, requested_ack: true}}
        """, global_=f"{{mattermost_webhook_url: '{http_peer.url}/hooks/g'}}") as senders:
        assert (await send(senders, request("mattermost"))).ok
        assert (await send(senders, request("mattermost", index=1))).ok
    first, second = (r.json() for r in http_peer.on("/hooks/g"))
    assert first == {
        "text": "Status: firing", "username": "Alertmanager", "icon_emoji": ":bell:",
        "attachments": [{"color": "#FF0000", "title": "Down", "fields": [{"title": "a", "value": "b", "short": True}]}],
        "props": {"card": "card firing"},
        "priority": {"priority": "urgent", "requested_ack": True, "persistent_notifications": True},
    }
    assert second["priority"] == {"priority": "standard"}  # unknown: standard, and then no ack


# --------------------------------------------------------------------------- through the worker


async def test_discord_through_the_notifier_worker(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    http_peer.reply("/d", Answer(500, body=b"oops"))  # retried by the worker, then 204
    http_peer.default("/d", Answer(204, body=b""))
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      discord_configs: [{{webhook_url: '{http_peer.url}/d'}}]
    """)
    send_id = "org/acme/g1/team/discord/0/1"
    async with running_notifier(nats_server.url, cfg, external_url=EXTERNAL) as r:
        await publish(r.js, send_request(send_id, "team", "discord"))
        record = await wait_ledger(r.ledger, send_id, {"sent"})
    assert record.state == "sent"
    first, second = http_peer.on("/d")
    assert first.json() == second.json()
    assert second.json()["embeds"][0]["title"] == "[FIRING:1] Down (a)"
