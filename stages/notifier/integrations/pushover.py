"""Pushover (``notify/pushover`` in Alertmanager): one message per notification.

The parameters are Alertmanager's, cut to Pushover's limits as Alertmanager cuts them
(title 250, message 1024, url 512 characters, ``…`` marking the cut; an empty message
becomes ``(no details)``, which Pushover requires). They are posted as a form body rather
than in the query string, so the token and user key stay out of URLs (Pushover accepts
both). The endpoint is fixed, as in Alertmanager. Only 5xx (and 408, 429) is retried.
Pushover has no idempotency key: a send retried after a lost answer can show twice.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import PushoverConfig

from ..classify import Outcome, permanent
from ..delivery import Sender
from ..http import HttpSender, http_outcome
from ..payloads.common import Fields, truncate_runes
from ..templates import Data, TemplateSet, build_data
from ._incident import render_secret, request

__all__ = ["PUSHOVER_API_URL", "PUSHOVER_LIMITS", "PushoverSender", "build", "pushover_form", "pushover_params"]

log = logging.getLogger("tocsin.notifier")

PUSHOVER_API_URL = "https://api.pushover.net/1/messages.json"
PUSHOVER_LIMITS = {"title": 250, "message": 1024, "url": 512}  # https://pushover.net/api#limits


def pushover_params(req: SendRequest, cfg: PushoverConfig, data: Data, token: str, user_key: str, *,
                    templates: TemplateSet | None = None, errors: list[str] | None = None) -> dict[str, str]:
    """The message's parameters (``token`` and ``user_key`` already read and rendered)."""
    f = Fields("pushover", data, templates, errors)

    def cut(name: str, text: str) -> str:
        out, was_cut = truncate_runes(text, PUSHOVER_LIMITS[name])
        if was_cut:
            log.warning("pushover: %s of %s cut to %d characters", name, req.id, PUSHOVER_LIMITS[name])
        return out

    params = {"token": token, "user": user_key,
              "title": cut("title", f.text("title", cfg.title, "pushover.default.title"))}
    if cfg.html:
        params["html"] = "1"
    if cfg.monospace:
        params["monospace"] = "1"
    message = f.text("message", cfg.message, "pushover.default.message", html=cfg.html)
    params["message"] = cut("message", message).strip() or "(no details)"
    params["url"] = cut("url", f.text("url", cfg.url, "pushover.default.url"))
    params["url_title"] = f.text("url_title", cfg.url_title)
    params["priority"] = f.text("priority", cfg.priority)
    params["retry"] = str(int(cfg.retry))
    params["expire"] = str(int(cfg.expire))
    params["device"] = f.text("device", cfg.device)
    params["sound"] = f.text("sound", cfg.sound)
    if int(cfg.ttl) > 0:
        params["ttl"] = str(int(cfg.ttl))
    return params


def pushover_form(params: dict[str, str]) -> bytes:
    """The form body: keys sorted, as Go's ``url.Values.Encode``."""
    return urlencode(sorted(params.items())).encode()


class PushoverSender(HttpSender):
    kind = "pushover"

    def __init__(self, cfg: PushoverConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg
        self.api_url = PUSHOVER_API_URL  # fixed, as in Alertmanager; tests point it at a local server

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        data = build_data(req, self.external_url)
        token = render_secret(self, self.secrets.resolve(cfg.token, cfg.token_file, f"{self.what}: token"),
                              data, "token")
        user_key = render_secret(self, self.secrets.resolve(cfg.user_key, cfg.user_key_file,
                                                            f"{self.what}: user_key"), data, "user_key")
        if not token or not user_key:
            return permanent(f"{self.what}: empty {'token' if not token else 'user_key'}")
        errors: list[str] = []
        params = pushover_params(req, cfg, data, token, user_key, templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        resp = await request(self, "POST", self.api_url, pushover_form(params),
                             content_type="application/x-www-form-urlencoded")
        return http_outcome(resp, now)


def build(cfg: PushoverConfig, **kw: Any) -> Sender:
    return PushoverSender(cfg, **kw)
