"""Microsoft Teams, legacy Office 365 connector: a MessageCard (Alertmanager's ``notify/msteams``).

The card's ``themeColor`` is red while an alert fires, green once all are resolved. Teams has
no idempotency key. A 429 (connector rate limit) is retried after its ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import MSTeamsConfig

from ..classify import Outcome
from ..delivery import Sender
from ..http import http_outcome
from ..payloads import Fields
from ..templates import Data, TemplateSet
from ._chat import ChatSender, render

__all__ = ["MSTeamsSender", "build", "msteams_payload"]

_COLORS = {"firing": "8C1A1A", "resolved": "2DC72D"}
_GREY = "808080"


def msteams_payload(cfg: MSTeamsConfig, data: Data, *, templates: TemplateSet | None = None,
                    errors: list[str] | None = None) -> dict[str, Any]:
    f = Fields("msteams", data, templates, errors)
    return {
        "@context": "http://schema.org/extensions",
        "type": "MessageCard",
        "title": render(f, "title", cfg.title, "msteams.default.title"),
        "summary": render(f, "summary", cfg.summary, "msteams.default.summary"),
        "text": render(f, "text", cfg.text, "msteams.default.text"),
        "themeColor": _COLORS.get(data.Status, _GREY),
    }


class MSTeamsSender(ChatSender):
    kind = "msteams"
    cfg: MSTeamsConfig

    async def send(self, req: SendRequest, now: float) -> Outcome:
        url = self.webhook_url()
        errors: list[str] = []
        body = msteams_payload(self.cfg, self.data(req), templates=self.templates, errors=errors)
        self.log_errors(errors)
        return http_outcome(await self.post(url, msgspec.json.encode(body)), now)


def build(cfg: MSTeamsConfig, **kw: Any) -> Sender:
    return MSTeamsSender(cfg, **kw)
