"""Alertmanager's webhook message, version 4."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts.messages import SendRequest

from ..templates import build_data
from ..templates.data import quote_meta
from ..templates.gotime import RFC3339_NANO, ZERO_TIME, go_format
from .config import WebhookConfig

__all__ = ["WEBHOOK_VERSION", "webhook_body", "webhook_payload"]

WEBHOOK_VERSION = "4"


def webhook_payload(req: SendRequest, cfg: WebhookConfig, external_url: str) -> dict[str, Any]:
    """The JSON body Alertmanager posts to a webhook, field for field.

    ``max_alerts`` (0 or unset: all) keeps the first alerts and counts the rest in
    ``truncatedAlerts``; status and common labels describe the alerts kept, as in
    Alertmanager. Times are RFC 3339 in UTC, ``0001-01-01T00:00:00Z`` for an unknown end.
    Alertmanager 0.34's newer ``notification_reason`` and ``routeLabels`` are not sent.
    A step of an escalation policy adds ``escalation: {level, policy}`` (Tocsin's; absent at
    level 0, so the route's own notifications stay Alertmanager's byte for byte).
    """
    data = build_data(req, external_url, max_alerts=cfg.max_alerts or 0)
    out = {
        **data.to_json(),
        "version": WEBHOOK_VERSION,
        "groupKey": req.group_key,
        "truncatedAlerts": data.TruncatedAlerts,
    }
    if req.escalation_level:
        out["escalation"] = {"level": req.escalation_level, "policy": req.escalation_policy}
    return out


_ZERO = go_format(ZERO_TIME, RFC3339_NANO)


class _AlertJSON(msgspec.Struct):
    """One alert of the message; fields in Alertmanager's order."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    startsAt: str
    endsAt: str
    generatorURL: str
    fingerprint: str


class _EscalationJSON(msgspec.Struct):
    level: int
    policy: str


class _MessageJSON(msgspec.Struct, omit_defaults=True):
    """The message, fields in :func:`webhook_payload`'s order."""

    receiver: str
    status: str
    alerts: list[_AlertJSON]
    groupLabels: Mapping[str, str]
    commonLabels: Mapping[str, str]
    commonAnnotations: Mapping[str, str]
    externalURL: str
    version: str
    groupKey: str
    truncatedAlerts: int
    escalation: _EscalationJSON | None = None


# "deterministic": struct fields in their order, map keys sorted (Go's encoding/json sorts them)
_encode = msgspec.json.Encoder(order="deterministic").encode


@functools.lru_cache(maxsize=8192)  # an alert's startsAt comes back with every flush of its group
def _time(ts: float) -> str:
    """``gotime.rfc3339_nano`` of a Unix time, through the C ``isoformat`` (``+00:00`` dropped,
    the fraction without trailing zeros, as Go writes it)."""
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat()[:-6]
    return (text.rstrip("0") if "." in text else text) + "Z"


_receiver = functools.lru_cache(maxsize=1024)(quote_meta)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map holds (in no order: the encoder sorts the keys)."""
    if not maps:
        return {}
    common: AbstractSet[tuple[str, str]] = maps[0].items()
    for m in maps[1:]:
        common = common & m.items()
        if not common:
            break
    return dict(common)


def webhook_body(req: SendRequest, cfg: WebhookConfig, external_url: str) -> bytes:
    """The encoded :func:`webhook_payload`, byte for byte, built without the template data
    (which a webhook does not need): a notification's largest CPU cost otherwise."""
    alerts = req.alerts
    truncated = 0
    limit = cfg.max_alerts or 0
    if 0 < limit < len(alerts):
        truncated = len(alerts) - limit
        alerts = alerts[:limit]
    now = req.created_at
    firing = False
    items = []
    for a in alerts:
        ends = a.ends_at
        resolved = ends is not None and ends <= now
        firing = firing or not resolved
        items.append(_AlertJSON("resolved" if resolved else "firing", a.labels, a.annotations, _time(a.starts_at),
                                _ZERO if ends is None else _time(ends), a.generator_url, a.fingerprint))
    return _encode(_MessageJSON(
        _receiver(req.receiver), "firing" if firing else "resolved", items, req.group_labels,
        _common([a.labels for a in alerts]), _common([a.annotations for a in alerts]), external_url,
        WEBHOOK_VERSION, req.group_key, truncated,
        _EscalationJSON(req.escalation_level, req.escalation_policy) if req.escalation_level else None))
