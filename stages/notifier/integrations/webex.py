"""Webex: a Markdown message posted to a room (Alertmanager's ``notify/webex``).

The bot's token is ``http_config.authorization`` (required at load). The message is cut to
7439 bytes, Webex's limit, with Alertmanager's byte rule (``…`` ends a cut message, no
character is split). Webex has no idempotency key.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import WebexConfig

from ..classify import Outcome
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields
from ..templates import Data, TemplateSet
from ._chat import ChatSender, log, render, truncate_bytes

__all__ = ["MAX_MESSAGE_BYTES", "WebexSender", "build", "webex_payload"]

MAX_MESSAGE_BYTES = 7439


def webex_payload(cfg: WebexConfig, data: Data, *, templates: TemplateSet | None = None,
                  errors: list[str] | None = None) -> dict[str, Any]:
    f = Fields("webex", data, templates, errors)
    message, cut = truncate_bytes(render(f, "message", cfg.message, "webex.default.message"), MAX_MESSAGE_BYTES)
    if cut:
        log.warning("webex: message truncated to %d bytes", MAX_MESSAGE_BYTES)
    body: dict[str, Any] = {"markdown": message}
    room = render(f, "room_id", cfg.room_id)
    if room:
        body["roomId"] = room
    return body


class WebexSender(ChatSender):
    kind = "webex"
    cfg: WebexConfig

    async def send(self, req: SendRequest, now: float) -> Outcome:
        errors: list[str] = []
        body = webex_payload(self.cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        return http_outcome(await self.post(self.cfg.api_url, msgspec.json.encode(body)), now)


def build(cfg: WebexConfig, **kw: Any) -> Sender:
    return WebexSender(cfg, **kw)
