"""Mattermost: an incoming-webhook post (Alertmanager's ``notify/mattermost``).

Without ``attachments`` configured the message is one Slack-style attachment built from the
top-level fields; with them, each configured attachment is sent and ``text`` becomes the
post's text, cut to 16383 characters. An unknown ``priority.priority`` is sent as
"standard"; ``requested_ack`` needs a non-standard priority and ``persistent_notifications``
an urgent one, as in Alertmanager. Mattermost has no idempotency key.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import MattermostAttachment, MattermostConfig, MattermostField

from ..classify import Outcome
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields, truncate_runes
from ..templates import Data, TemplateSet
from ._chat import ChatSender, log, render

__all__ = ["MAX_TEXT_RUNES", "MattermostSender", "build", "mattermost_payload"]

MAX_TEXT_RUNES = 16383
_PRIORITIES = ("urgent", "important", "standard")
_ATTACHMENT_KEYS = ("fallback", "color", "pretext", "text", "author_name", "author_link", "author_icon", "title",
                    "title_link", "fields", "thumb_url", "footer", "footer_icon", "image_url")
# a top-level field's default template, used when its own template fails
_DEFAULTS = {"username": "mattermost.default.username", "text": "mattermost.default.text",
             "fallback": "mattermost.default.fallback", "color": "mattermost.default.color",
             "title": "mattermost.default.title", "title_link": "mattermost.default.titlelink"}


def _fields(f: Fields, where: str, fields: list[MattermostField]) -> list[dict[str, Any]]:
    out = []
    for i, field in enumerate(fields):
        item: dict[str, Any] = {}
        title = render(f, f"{where}fields[{i}].title", field.title)
        value = render(f, f"{where}fields[{i}].value", field.value)
        if title:
            item["title"] = title
        if value:
            item["value"] = value
        if field.short is not None:
            item["short"] = field.short
        out.append(item)
    return out


def _attachment(f: Fields, where: str, src: MattermostAttachment | MattermostConfig, text: str | None,
                defaults: dict[str, str]) -> dict[str, Any]:
    att: dict[str, Any] = {}
    for key in _ATTACHMENT_KEYS:
        if key == "fields":
            fields = _fields(f, where, src.fields)
            if fields:
                att["fields"] = fields
            continue
        value = text if key == "text" and text is not None else render(
            f, f"{where}{key}", getattr(src, key), defaults.get(key))
        if value:
            att[key] = value
    return att


def _priority(f: Fields, cfg: MattermostConfig) -> dict[str, Any] | None:
    p = cfg.priority
    if p is None or not p.priority:
        return None
    level = render(f, "priority.priority", p.priority).lower()
    if level not in _PRIORITIES:
        log.warning("mattermost: priority %r is not urgent, important or standard; sent as standard", level)
        level = "standard"
    out: dict[str, Any] = {"priority": level}
    if p.requested_ack and level != "standard":
        out["requested_ack"] = True
    if p.persistent_notifications and level == "urgent":
        out["persistent_notifications"] = True
    return out


def mattermost_payload(cfg: MattermostConfig, data: Data, *, templates: TemplateSet | None = None,
                       errors: list[str] | None = None) -> dict[str, Any]:
    f = Fields("mattermost", data, templates, errors)
    text = render(f, "text", cfg.text, _DEFAULTS["text"])
    body: dict[str, Any] = {}
    if cfg.attachments:
        # configured attachments are sent as written; the text is the post's own
        cut, was_cut = truncate_runes(text, MAX_TEXT_RUNES)
        if was_cut:
            log.warning("mattermost: text truncated to %d characters", MAX_TEXT_RUNES)
        if cut:
            body["text"] = cut
    for key in ("channel", "username", "icon_url", "icon_emoji"):
        value = render(f, key, getattr(cfg, key), _DEFAULTS.get(key))
        if value:
            body[key] = value
    if cfg.attachments:
        body["attachments"] = [_attachment(f, f"attachments[{i}].", a, None, {}) for i, a in enumerate(cfg.attachments)]
    else:
        body["attachments"] = [_attachment(f, "", cfg, text, _DEFAULTS)]
    kind = render(f, "type", cfg.type)
    if kind:
        body["type"] = kind
    if cfg.props is not None and cfg.props.card:
        body["props"] = {"card": render(f, "props.card", cfg.props.card)}
    priority = _priority(f, cfg)
    if priority is not None:
        body["priority"] = priority
    return body


class MattermostSender(ChatSender):
    kind = "mattermost"
    cfg: MattermostConfig

    async def send(self, req: SendRequest, now: float) -> Outcome:
        url = self.webhook_url()
        errors: list[str] = []
        body = mattermost_payload(self.cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        out = http_outcome(await self.post(url, msgspec.json.encode(body)), now)
        if not out.ok and body.get("channel"):
            out = out._replace(error=f"channel {body['channel']!r}: {out.error}")
        return out


def build(cfg: MattermostConfig, **kw: Any) -> Sender:
    return MattermostSender(cfg, **kw)
