"""Discord: an embed posted to a channel's webhook (Alertmanager's ``notify/discord``).

Title, description and content are cut, in characters, to Discord's embed limits (256,
4096, 2000) with Alertmanager's rule: the last kept character becomes ``…``. Discord answers
204; a 429 carries ``Retry-After``, which is honoured. Discord has no idempotency key.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import DiscordConfig

from ..classify import Outcome
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields, truncate_runes
from ..templates import Data, TemplateSet
from ._chat import ChatSender, log, render

__all__ = [
    "COLOR_FIRING",
    "COLOR_OTHER",
    "COLOR_RESOLVED",
    "MAX_CONTENT_RUNES",
    "MAX_DESCRIPTION_RUNES",
    "MAX_TITLE_RUNES",
    "DiscordSender",
    "build",
    "discord_payload",
]

MAX_TITLE_RUNES = 256
MAX_DESCRIPTION_RUNES = 4096
MAX_CONTENT_RUNES = 2000
COLOR_FIRING = 0x992D22
COLOR_RESOLVED = 0x2ECC71
COLOR_OTHER = 0x95A5A6


def discord_payload(cfg: DiscordConfig, data: Data, *, templates: TemplateSet | None = None,
                    errors: list[str] | None = None) -> dict[str, Any]:
    """The webhook body: ``content``, one embed (title, description, color), username, avatar."""
    f = Fields("discord", data, templates, errors)
    cut: list[str] = []
    title, t = truncate_runes(render(f, "title", cfg.title, "discord.default.title"), MAX_TITLE_RUNES)
    description, d = truncate_runes(render(f, "message", cfg.message, "discord.default.message"),
                                    MAX_DESCRIPTION_RUNES)
    content, c = truncate_runes(render(f, "content", cfg.content, "discord.default.content"), MAX_CONTENT_RUNES)
    cut += [name for name, was in (("title", t), ("message", d), ("content", c)) if was]
    if cut:
        log.warning("discord: truncated %s to Discord's limits", ", ".join(cut))
    color = {"firing": COLOR_FIRING, "resolved": COLOR_RESOLVED}.get(data.Status, COLOR_OTHER)
    body: dict[str, Any] = {
        "content": content,
        "embeds": [{"title": title, "description": description, "color": color}],
    }
    if cfg.username:
        body["username"] = cfg.username
    if cfg.avatar_url and _parses(cfg.avatar_url):
        body["avatar_url"] = cfg.avatar_url
    return body


def _parses(url: str) -> bool:
    try:
        urlsplit(url)
    except ValueError:  # Alertmanager drops an avatar URL that does not parse
        return False
    return True


class DiscordSender(ChatSender):
    kind = "discord"
    cfg: DiscordConfig

    async def send(self, req: SendRequest, now: float) -> Outcome:
        url = self.webhook_url()
        errors: list[str] = []
        body = discord_payload(self.cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        resp = await self.post(url, msgspec.json.encode(body))
        return http_outcome(resp, now)


def build(cfg: DiscordConfig, **kw: Any) -> Sender:
    return DiscordSender(cfg, **kw)
