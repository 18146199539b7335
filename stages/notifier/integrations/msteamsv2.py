"""Microsoft Teams through a Power Automate workflow: an Adaptive Card (``notify/msteamsv2``).

The message holds one attachment, an Adaptive Card 1.2 with a heading (the title, coloured
"Attention" while firing, "Good" once resolved) and the text. No idempotency key exists.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import MSTeamsV2Config

from ..classify import Outcome
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields
from ..templates import Data, TemplateSet
from ._chat import ChatSender, render

__all__ = ["MSTeamsV2Sender", "build", "msteamsv2_payload"]

_COLORS = {"firing": "Attention", "resolved": "Good"}
_GREY = "Warning"


def msteamsv2_payload(cfg: MSTeamsV2Config, data: Data, *, templates: TemplateSet | None = None,
                      errors: list[str] | None = None) -> dict[str, Any]:
    f = Fields("msteamsv2", data, templates, errors)
    title = render(f, "title", cfg.title, "msteamsv2.default.title")
    text = render(f, "text", cfg.text, "msteamsv2.default.text")
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "style": "heading", "color": _COLORS.get(data.Status, _GREY)},
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
        "msteams": {"width": "full"},
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card},
        ],
    }


class MSTeamsV2Sender(ChatSender):
    kind = "msteamsv2"
    cfg: MSTeamsV2Config

    async def send(self, req: SendRequest, now: float) -> Outcome:
        url = self.webhook_url()
        errors: list[str] = []
        body = msteamsv2_payload(self.cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        return http_outcome(await self.post(url, msgspec.json.encode(body)), now)


def build(cfg: MSTeamsV2Config, **kw: Any) -> Sender:
    return MSTeamsV2Sender(cfg, **kw)
