"""Alertmanager's webhook message, version 4."""

from __future__ import annotations

from typing import Any

from contracts.messages import SendRequest

from ..templates import build_data
from .config import WebhookConfig

__all__ = ["WEBHOOK_VERSION", "webhook_payload"]

WEBHOOK_VERSION = "4"


def webhook_payload(req: SendRequest, cfg: WebhookConfig, external_url: str) -> dict[str, Any]:
    """The JSON body Alertmanager posts to a webhook, field for field.

    ``max_alerts`` (0 or unset: all) keeps the first alerts and counts the rest in
    ``truncatedAlerts``; status and common labels describe the alerts kept, as in
    Alertmanager. Times are RFC 3339 in UTC, ``0001-01-01T00:00:00Z`` for an unknown end.
    Alertmanager 0.34's newer ``notification_reason`` and ``routeLabels`` are not sent.
    """
    data = build_data(req, external_url, max_alerts=cfg.max_alerts or 0)
    return {
        **data.to_json(),
        "version": WEBHOOK_VERSION,
        "groupKey": req.group_key,
        "truncatedAlerts": data.TruncatedAlerts,
    }
