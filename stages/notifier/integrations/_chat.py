"""What the chat integrations (Discord, Mattermost, Teams, Rocket.Chat, Webex, Telegram) share.

Each kind renders its fields as Alertmanager does, with one difference kept from the first
integrations: a field whose template fails is sent with the kind's default template (the
error is logged and counted in ``tocsin_notifier_template_errors_total``) instead of failing
the whole notification. A field configured empty stays empty, as in Alertmanager.
"""

from __future__ import annotations

import logging
from typing import Any

from contracts.messages import SendRequest

from ..http import HttpSender
from ..payloads import Fields
from ..templates import Data, build_data

__all__ = ["ChatSender", "render", "truncate_bytes"]

log = logging.getLogger("tocsin.notifier")

_MARKER = "…"


def render(f: Fields, field: str, value: str, default: str | None = None, *, html: bool = False) -> str:
    """``value`` rendered; empty when configured empty; the named ``default`` when it fails."""
    if not value:
        return ""
    return f.text(field, value, default, html=html)


def truncate_bytes(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` UTF-8 bytes, ending with ``…`` when cut, never splitting a character
    (Alertmanager's ``TruncateInBytes``: Webex counts bytes)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text, False
    if limit <= 3:
        return (_MARKER if limit == 3 else "." * limit), True
    cut = raw[: limit - 3].decode("utf-8", "ignore")  # a character cut in half is dropped
    return cut + _MARKER, True


class ChatSender(HttpSender):
    """An HTTP sender with its integration's config; renders with Alertmanager's data."""

    def __init__(self, cfg: Any, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    def data(self, req: SendRequest) -> Data:
        return build_data(req, self.external_url)

    def fields(self, data: Data, errors: list[str]) -> Fields:
        return Fields(self.kind, data, self.templates, errors)

    def log_errors(self, errors: list[str]) -> None:
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))

    def webhook_url(self) -> str:
        """``webhook_url`` or the content of ``webhook_url_file`` (read at each send)."""
        url = self.secrets.resolve(self.cfg.webhook_url, self.cfg.webhook_url_file, f"{self.what}: webhook_url")
        if not url:
            raise ValueError(f"{self.what}: no webhook_url; set webhook_url or webhook_url_file")
        return url
