"""Rocket.Chat: ``chat.postMessage`` of the REST API (Alertmanager's ``notify/rocketchat``).

Authenticates with the ``X-Auth-Token`` / ``X-User-Id`` headers (``token`` / ``token_id``,
read at each send). One attachment carries the title (cut to 1024 characters), link, text,
colour, fields and buttons. Rocket.Chat can answer an error with 200: the JSON
``{"success": false}`` is a permanent failure, an answer that is not JSON is retried, as in
Alertmanager. No idempotency key exists.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import RocketchatConfig

from ..classify import Outcome, Verdict
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields, truncate_runes
from ..templates import Data, TemplateSet
from ._chat import ChatSender, log, render

__all__ = ["MAX_TITLE_RUNES", "RocketchatSender", "build", "post_message_url", "rocketchat_payload"]

MAX_TITLE_RUNES = 1024
_ERROR_TEXT = 256


def post_message_url(api_url: str) -> str:
    """``api_url`` joined with ``api/v1/chat.postMessage`` (Go's ``URL.JoinPath``)."""
    parts = urlsplit(api_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/api/v1/chat.postMessage"))


def rocketchat_payload(cfg: RocketchatConfig, data: Data, *, templates: TemplateSet | None = None,
                       errors: list[str] | None = None) -> dict[str, Any]:
    f = Fields("rocketchat", data, templates, errors)
    title, cut = truncate_runes(render(f, "title", cfg.title, "rocketchat.default.title"), MAX_TITLE_RUNES)
    if cut:
        log.warning("rocketchat: title truncated to %d characters", MAX_TITLE_RUNES)
    att: dict[str, Any] = {}
    for key, value in (
        ("title", title),
        ("title_link", render(f, "title_link", cfg.title_link, "rocketchat.default.titlelink")),
        ("text", render(f, "text", cfg.text, "rocketchat.default.text")),
        ("image_url", render(f, "image_url", cfg.image_url)),
        ("thumb_url", render(f, "thumb_url", cfg.thumb_url)),
        ("color", render(f, "color", cfg.color)),
    ):
        if value:
            att[key] = value
    if cfg.fields:
        fields = []
        for i, field in enumerate(cfg.fields):
            item: dict[str, Any] = {"short": cfg.short_fields if field.short is None else field.short}
            for key in ("title", "value"):
                value = render(f, f"fields[{i}].{key}", getattr(field, key))
                if value:
                    item[key] = value
            fields.append(item)
        att["fields"] = fields
    if cfg.actions:
        actions = []
        for i, action in enumerate(cfg.actions):
            item = {"type": "button"}  # the only kind Alertmanager sends
            for key in ("text", "url"):
                value = render(f, f"actions[{i}].{key}", getattr(action, key))
                if value:
                    item[key] = value
            item["is_webview"] = False
            msg = render(f, f"actions[{i}].msg", action.msg)
            if msg:
                item["msg"] = msg
            item["msg_in_chat_window"] = False
            actions.append(item)
        att["actions"] = actions
    body: dict[str, Any] = {}
    for key, value in (
        ("channel", render(f, "channel", cfg.channel)),
        ("emoji", render(f, "emoji", cfg.emoji, "rocketchat.default.emoji")),
        ("avatar", render(f, "icon_url", cfg.icon_url, "rocketchat.default.iconurl")),
    ):
        if value:
            body[key] = value
    body["attachments"] = [att]
    return body


class RocketchatSender(ChatSender):
    kind = "rocketchat"
    cfg: RocketchatConfig

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        token = self.secrets.resolve(cfg.token, cfg.token_file, f"{self.what}: token")
        token_id = self.secrets.resolve(cfg.token_id, cfg.token_id_file, f"{self.what}: token_id")
        errors: list[str] = []
        body = rocketchat_payload(cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        resp = await self.post(post_message_url(cfg.api_url), msgspec.json.encode(body),
                               [("X-Auth-Token", token), ("X-User-Id", token_id)])
        channel = f"channel {body.get('channel', '')!r}: "
        out = http_outcome(resp, now)
        if not out.ok:
            return out._replace(error=channel + out.error)
        try:
            answer = msgspec.json.decode(resp.body)
        except msgspec.DecodeError:
            text = resp.body[:_ERROR_TEXT].decode("utf-8", "replace")
            return Outcome(Verdict(False, True, "other"), f"{channel}Rocket.Chat answered no JSON: {text!r}",
                           resp.status)
        if not (isinstance(answer, dict) and answer.get("success") is True):
            error = answer.get("error", "") if isinstance(answer, dict) else ""
            return Outcome(Verdict(False, False, "clientError"), f"{channel}Rocket.Chat error: {error}", resp.status)
        return out


def build(cfg: RocketchatConfig, **kw: Any) -> Sender:
    return RocketchatSender(cfg, **kw)
