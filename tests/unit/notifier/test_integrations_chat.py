"""Pure parts of the chat integrations: payload builders, truncation rules, Telegram's
answers, configuration checks and global defaults (pipeline.foundation.amconfig)."""

from __future__ import annotations

import re
import textwrap

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.messages import Alert, Integration, SendRequest
from pipeline.application.settings import load_text
from pipeline.foundation.amconfig import ConfigError, load_config_text
from pipeline.foundation.amconfig.model import (
    DiscordConfig,
    GlobalConfig,
    HTTPConfig,
    MattermostConfig,
    MattermostPriority,
    MSTeamsConfig,
    MSTeamsV2Config,
    RocketchatConfig,
    TelegramConfig,
    WebexConfig,
)
from stages.notifier.integrations._chat import truncate_bytes
from stages.notifier.integrations.discord import discord_payload
from stages.notifier.integrations.mattermost import MAX_TEXT_RUNES, mattermost_payload
from stages.notifier.integrations.msteams import msteams_payload
from stages.notifier.integrations.rocketchat import post_message_url
from stages.notifier.integrations.telegram import api_outcome, telegram_payload
from stages.notifier.templates import Data, build_data, default_templates

T0 = 1_700_000_000.0


def data(status: str = "firing", **labels: str) -> Data:
    alert = Alert(fingerprint="fp1", org="acme", labels={"alertname": "Down", "instance": "a", **labels},
                  annotations={"summary": "Down on a"}, starts_at=T0 - 60,
                  ends_at=T0 - 1 if status == "resolved" else None, generator_url="http://prom/graph")
    req = SendRequest(id="s1", org="acme", group_key="{}:{}", group_id="g1", receiver="team",
                      integration=Integration(kind="discord", index=0), flush_seq=1,
                      status=status,  # type: ignore[arg-type]
                      group_labels={"alertname": "Down"}, alerts=[alert], created_at=T0)
    return build_data(req, "http://am.test")


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("abc", 3, ("abc", False)),
    ("abcd", 3, ("…", True)),  # Go: the marker alone when exactly 3 bytes are allowed
    ("abcd", 2, ("..", True)),
    ("abcdef", 5, ("ab…", True)),
    ("aé", 3, ("aé", False)),  # 3 bytes: fits
    ("éééé", 6, ("é…", True)),  # 3 bytes left for text: one é, not one and a half
])
def test_truncate_bytes_as_alertmanager(text: str, limit: int, expected: tuple[str, bool]) -> None:
    assert truncate_bytes(text, limit) == expected


@given(st.text(), st.integers(min_value=4, max_value=64))
def test_truncate_bytes_never_exceeds_nor_splits(text: str, limit: int) -> None:
    out, cut = truncate_bytes(text, limit)
    assert len(out.encode()) <= limit
    assert cut == (len(text.encode()) > limit)
    if cut:
        assert out.endswith("…") and text.startswith(out[:-1])
        assert len(out.encode()) > limit - 3 - 4  # at most one (4-byte) character less than the room
    else:
        assert out == text


# --------------------------------------------------------------------------- payloads


def test_template_error_falls_back_to_the_default_and_is_reported() -> None:
    errors: list[str] = []
    cfg = DiscordConfig(title='{{ template "no.such.template" . }}')
    body = discord_payload(cfg, data(), templates=default_templates(), errors=errors)
    assert body["embeds"][0]["title"] == "[FIRING:1] Down (a)"
    assert len(errors) == 1 and errors[0].startswith("discord title:")


def test_a_field_configured_empty_stays_empty() -> None:
    body = msteams_payload(MSTeamsConfig(title="", summary=""), data("resolved"))
    assert (body["title"], body["summary"], body["themeColor"]) == ("", "", "2DC72D")


@pytest.mark.parametrize(("priority", "expected"), [
    (MattermostPriority(priority="Important", requested_ack=True, persistent_notifications=True),
     {"priority": "important", "requested_ack": True}),  # persistent needs urgent
    (MattermostPriority(priority="standard", requested_ack=True), {"priority": "standard"}),  # ack needs more
    (MattermostPriority(priority="", requested_ack=True), None),  # no priority: none sent
])
def test_mattermost_priority_rules(priority: MattermostPriority, expected: dict[str, object] | None) -> None:
    body = mattermost_payload(MattermostConfig(priority=priority), data())
    assert body.get("priority") == expected


def test_mattermost_text_of_configured_attachments_is_cut() -> None:
    from pipeline.foundation.amconfig.model import MattermostAttachment

    cfg = MattermostConfig(text="{{ .CommonLabels.long }}", attachments=[MattermostAttachment(text="x")])
    body = mattermost_payload(cfg, data(long="z" * (MAX_TEXT_RUNES + 5)))
    assert body["text"] == "z" * (MAX_TEXT_RUNES - 1) + "…"
    assert body["attachments"] == [{"text": "x"}]


@pytest.mark.parametrize(("api_url", "expected"), [
    ("https://open.rocket.chat/", "https://open.rocket.chat/api/v1/chat.postMessage"),
    ("https://chat.example.com/rc", "https://chat.example.com/rc/api/v1/chat.postMessage"),
])
def test_rocketchat_url(api_url: str, expected: str) -> None:
    assert post_message_url(api_url) == expected


def test_telegram_payload_values_are_strings() -> None:
    cfg = TelegramConfig(chat_id=-5, message="hi", parse_mode="Markdown", message_thread_id=3)
    assert telegram_payload(cfg, data(), -5) == {"chat_id": "-5", "text": "hi", "parse_mode": "Markdown",
                                                 "disable_web_page_preview": "true", "message_thread_id": "3"}


@pytest.mark.parametrize(("status", "body", "ok", "retryable", "reason"), [
    (200, b'{"ok": true, "result": {}}', True, False, ""),
    (200, b"<html>proxy page</html>", False, True, "other"),  # not the Bot API: may pass later
    (403, b'{"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}',
     False, False, "authError"),
    (500, b'{"ok": false, "error_code": 500, "description": "Internal Server Error"}', False, True, "serverError"),
])
def test_telegram_answers(status: int, body: bytes, ok: bool, retryable: bool, reason: str) -> None:
    out = api_outcome(status, body)
    assert (out.ok, out.verdict.retryable, out.verdict.reason) == (ok, retryable, reason)


# --------------------------------------------------------------------------- configuration


def load(receiver: str, global_: str = "{}") -> None:
    text = (f"global: {global_}\nroute: {{receiver: r}}\nreceivers:\n- name: r\n"
            + textwrap.indent(textwrap.dedent(receiver).strip() + "\n", "  "))
    load_text(text, "alertmanager.yml")


@pytest.mark.parametrize(("receiver", "global_", "error"), [
    ("webex_configs: [{room_id: r}]", "{}",
     "alertmanager.yml:5: receivers[0].webex_configs[0].http_config: missing webex_configs.http_config.authorization"),
    ("webex_configs: [{http_config: {bearer_token: t}}]", "{}",
     "alertmanager.yml:5: receivers[0].webex_configs[0].room_id: missing room_id on webex_config"),
    ("telegram_configs: [{chat_id: 1, bot_token: t, parse_mode: markdown}]", "{}",
     "alertmanager.yml:5: receivers[0].telegram_configs[0].parse_mode: unknown parse_mode on telegram_config"),
    ("telegram_configs: [{bot_token: t}]", "{}",
     "alertmanager.yml:5: receivers[0].telegram_configs[0]: missing chat_id or chat_id_file on telegram_config"),
    ("telegram_configs: [{chat_id: 1}]", "{}",
     "alertmanager.yml:5: receivers[0].telegram_configs[0]: missing bot_token or bot_token_file on telegram_config"),
    ("discord_configs: [{webhook_url: 'http://x/', webhook_url_file: f}]", "{}",
     "at most one of webhook_url & webhook_url_file must be configured"),
    ("msteamsv2_configs: [{}]", "{}", "one of webhook_url or webhook_url_file must be configured"),
    ("mattermost_configs: [{}]", "{}",
     "alertmanager.yml:5: receivers[0].mattermost_configs[0]: missing webhook_url or webhook_url_file"),
    ("mattermost_configs: [{webhook_url: 'http://x/', fields: [{title: t}]}]", "{}",
     "missing value in Mattermost field configuration"),
    ("rocketchat_configs: [{token: t}]", "{}", "no global Rocketchat TokenID set either inline or in a file"),
    ("rocketchat_configs: [{token_id: i}]", "{rocketchat_token_file: f, rocketchat_token: t}",
     "at most one of rocketchat_token & rocketchat_token_file must be configured"),
    ("msteams_configs: [{webhook_url: 'http://x/', color: red}]", "{}", 'unknown field "color"'),
    ("telegram_configs: [{chat_id: 1, bot_token: t, message: '{{ .Status '}]", "{}",
     "alertmanager.yml:5: receivers[0].telegram_configs[0].message: template:"),
])
def test_config_errors_name_the_line_and_field(receiver: str, global_: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(receiver, global_)
    assert error in str(exc.value)


def test_global_defaults_fill_each_kind() -> None:
    g = msgspec.structs.replace(GlobalConfig(), http_config=HTTPConfig(proxy_url="http://proxy:3128"))
    tg, problems = TelegramConfig(chat_id=1).with_defaults(g)
    assert (tg.api_url, tg.http_config, problems) == ("https://api.telegram.org", g.http_config,
                                                     [(None, "missing bot_token or bot_token_file on telegram_config")])
    wx, _ = WebexConfig(room_id="r").with_defaults(g)
    assert wx.api_url == "https://webexapis.com/v1/messages"
    rc, _ = RocketchatConfig().with_defaults(g)
    assert rc.api_url == "https://open.rocket.chat/"
    # Teams v2: an own http_config without a proxy still takes the global proxy, as in Alertmanager
    own = HTTPConfig(follow_redirects=False)
    v2, _ = MSTeamsV2Config(webhook_url=None, webhook_url_file="f", http_config=own).with_defaults(g)
    assert v2.http_config is not None and (v2.http_config.proxy_url, v2.http_config.follow_redirects) == (
        "http://proxy:3128", False)
    # the other kinds: an own http_config stays; none takes global's (receivers.apply_defaults)
    cfg = load_config_text(
        "global: {http_config: {proxy_url: 'http://proxy:3128'}}\nroute: {receiver: r}\nreceivers:\n- name: r\n"
        "  msteams_configs:\n  - {webhook_url: 'http://a/x', http_config: {follow_redirects: false}}\n"
        "  - {webhook_url: 'http://a/y'}\n")
    own_v1, inherited = cfg.receivers[0].msteams_configs
    assert own_v1.http_config is not None and not own_v1.http_config.proxy_url
    assert inherited.http_config == cfg.global_.http_config and inherited.http_config.proxy_url


_NAMED = re.compile(r'{{ template "([^"]+)" \. }}')


@pytest.mark.parametrize("cls", [DiscordConfig, MattermostConfig, MSTeamsConfig, MSTeamsV2Config, RocketchatConfig,
                                 TelegramConfig, WebexConfig])
def test_every_default_template_exists(cls: type[msgspec.Struct]) -> None:
    names = {m for default in msgspec.structs.fields(cls) if isinstance(default.default, str)
             for m in _NAMED.findall(default.default)}
    assert names and names <= default_templates().names
