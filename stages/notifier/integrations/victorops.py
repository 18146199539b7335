"""VictorOps / Splunk On-Call (``notify/victorops`` in Alertmanager): the REST endpoint integration.

One POST to ``{api_url}{api_key}/{routing_key}``. ``entity_id`` is the SHA-256 of the
group key (Alertmanager's ``key.Hash()``), so every flush of a group, its retries and its
recovery are the same incident. A firing group sends ``message_type`` (``CRITICAL`` unless
it renders to ``INFO`` or ``WARNING``), a resolved one ``RECOVERY``. Only 5xx (and 408, 429)
is retried, as Alertmanager assumes for lack of documentation.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import VictorOpsConfig

from ..classify import Outcome, permanent
from ..delivery import Sender
from ..http import HttpSender, http_outcome
from ..payloads.common import Fields, truncate_runes
from ..payloads.pagerduty import pagerduty_dedup_key
from ..templates import Data, TemplateSet, build_data
from ._incident import escape_path, render_secret, request

__all__ = ["VICTOROPS_STATE_MESSAGE_MAX_RUNES", "VictorOpsSender", "build", "victorops_payload"]

log = logging.getLogger("tocsin.notifier")

VICTOROPS_STATE_MESSAGE_MAX_RUNES = 20480  # VictorOps' incident fields glossary
_ALLOWED_FIRING = frozenset({"INFO", "WARNING", "CRITICAL"})


def victorops_payload(req: SendRequest, cfg: VictorOpsConfig, data: Data, *, templates: TemplateSet | None = None,
                      errors: list[str] | None = None) -> dict[str, str]:
    """The JSON body (keys sorted, as Go encodes a map) of one notification."""
    f = Fields("victorops", data, templates, errors)
    message_type = f.text("message_type", cfg.message_type)
    if data.Status == "resolved":
        message_type = "RECOVERY"
    elif message_type not in _ALLOWED_FIRING:
        message_type = "CRITICAL"
    state, cut = truncate_runes(f.text("state_message", cfg.state_message, "victorops.default.state_message"),
                                VICTOROPS_STATE_MESSAGE_MAX_RUNES)
    if cut:
        log.warning("victorops: state_message of %s cut to %d characters", req.id, VICTOROPS_STATE_MESSAGE_MAX_RUNES)
    msg = {
        "message_type": message_type,
        "entity_id": pagerduty_dedup_key(req.org, req.group_key),
        "entity_display_name": f.text("entity_display_name", cfg.entity_display_name,
                                      "victorops.default.entity_display_name"),
        "state_message": state,
        "monitoring_tool": f.text("monitoring_tool", cfg.monitoring_tool, "victorops.default.monitoring_tool"),
    }
    msg.update({k: f.text(f"custom_fields.{k}", v) for k, v in cfg.custom_fields.items()})
    return dict(sorted(msg.items()))


class VictorOpsSender(HttpSender):
    kind = "victorops"

    def __init__(self, cfg: VictorOpsConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        if not cfg.api_url:
            return permanent(f"{self.what}: no api_url")
        data = build_data(req, self.external_url)
        key = self.secrets.resolve(cfg.api_key, cfg.api_key_file, f"{self.what}: api_key")
        if not key:
            return permanent(f"{self.what}: empty api_key")
        # the routing key is part of the URL, which holds the API key: its errors never quote it
        routing_key = render_secret(self, cfg.routing_key, data, "routing_key")
        errors: list[str] = []
        body = victorops_payload(req, cfg, data, templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        url = f"{cfg.api_url}{escape_path(key)}/{escape_path(routing_key)}"
        resp = await request(self, "POST", url, msgspec.json.encode(body))
        return http_outcome(resp, now)


def build(cfg: VictorOpsConfig, **kw: Any) -> Sender:
    return VictorOpsSender(cfg, **kw)
