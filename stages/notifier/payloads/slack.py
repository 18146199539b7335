"""A Slack message (incoming webhook or ``chat.postMessage``) as Alertmanager builds it."""

from __future__ import annotations

from typing import Any

from contracts.messages import SendRequest

from ..templates import Data, TemplateSet
from .common import Fields, truncate_runes
from .config import SlackConfig, get_field

__all__ = ["SLACK_TITLE_MAX_RUNES", "slack_payload"]

SLACK_TITLE_MAX_RUNES = 1024
_DEFAULT_MRKDWN_IN = ["fallback", "pretext", "text"]
# (payload key, config attribute, default named template); empty values are left out
_OPTIONAL = (
    ("title_link", "title_link", "slack.default.titlelink"),
    ("pretext", "pretext", "slack.default.pretext"),
)
_ALWAYS = (
    ("text", "text", "slack.default.text"),
    ("fallback", "fallback", "slack.default.fallback"),
    ("callback_id", "callback_id", "slack.default.callbackid"),
)
_MESSAGE: tuple[tuple[str, str, str | None], ...] = (
    ("channel", "channel", None),
    ("username", "username", "slack.default.username"),
    ("icon_emoji", "icon_emoji", "slack.default.iconemoji"),
    ("icon_url", "icon_url", "slack.default.iconurl"),
)
_ACTION_KEYS = ("type", "text", "url", "style", "name", "value")
_CONFIRM_KEYS = ("text", "title", "ok_text", "dismiss_text")


def _fields(f: Fields, cfg: SlackConfig) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(cfg.fields or ()):
        short = get_field(item, "short")
        field: dict[str, Any] = {}
        title = f.text(f"fields[{i}].title", get_field(item, "title"))
        value = f.text(f"fields[{i}].value", get_field(item, "value"))
        if title:
            field["title"] = title
        if value:
            field["value"] = value
        # a field's own "short" wins over short_fields; Alertmanager always sends it
        field["short"] = bool(cfg.short_fields) if short is None else bool(short)
        out.append(field)
    return out


def _actions(f: Fields, cfg: SlackConfig) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(cfg.actions or ()):
        action: dict[str, Any] = {}
        for key in _ACTION_KEYS:
            text = f.text(f"actions[{i}].{key}", get_field(item, key))
            if text:
                action[key] = text
        confirm = get_field(item, "confirm")
        if confirm is not None:
            rendered = {key: f.text(f"actions[{i}].confirm.{key}", get_field(confirm, key)) for key in _CONFIRM_KEYS}
            action["confirm"] = {k: v for k, v in rendered.items() if v}
        out.append(action)
    return out


def slack_payload(
    req: SendRequest,
    cfg: SlackConfig,
    data: Data,
    *,
    templates: TemplateSet | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON body for Slack: one attachment, Alertmanager's defaults for unset fields.

    The title is cut to 1024 characters. Keys Alertmanager omits when empty are omitted;
    ``text``, ``fallback``, ``callback_id`` and ``footer`` are always present. Template
    errors fall back to the field's default and are appended to ``errors``.
    """
    f = Fields("slack", data, templates, errors)
    title, _ = truncate_runes(f.text("title", cfg.title, "slack.default.title"), SLACK_TITLE_MAX_RUNES)
    attachment: dict[str, Any] = {}
    if title:
        attachment["title"] = title
    for key, attr, default in _OPTIONAL:
        text = f.text(attr, getattr(cfg, attr), default)
        if text:
            attachment[key] = text
    for key, attr, default in _ALWAYS:
        attachment[key] = f.text(attr, getattr(cfg, attr), default)
    fields = _fields(f, cfg)
    if fields:
        attachment["fields"] = fields
    actions = _actions(f, cfg)
    if actions:
        attachment["actions"] = actions
    for attr in ("image_url", "thumb_url"):
        text = f.text(attr, getattr(cfg, attr))
        if text:
            attachment[attr] = text
    attachment["footer"] = f.text("footer", cfg.footer, "slack.default.footer")
    color = f.text("color", cfg.color, "slack.default.color")
    if color:
        attachment["color"] = color
    attachment["mrkdwn_in"] = list(cfg.mrkdwn_in or _DEFAULT_MRKDWN_IN)

    message: dict[str, Any] = {}
    for key, attr, named in _MESSAGE:
        text = f.text(attr, getattr(cfg, attr), named)
        if text:
            message[key] = text
    if cfg.link_names:
        message["link_names"] = True
    message["attachments"] = [attachment]
    return message
