"""Builders shared by the notifier tests: send requests and config dataclasses.

The config classes are plain dataclasses with Alertmanager's field names, as the
configuration model will provide; they satisfy the protocols of ``payloads.config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.messages import Alert, Integration, SendRequest

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NOW_RFC3339 = "2023-11-14T22:13:20Z"
EXTERNAL_URL = "http://am.example:9093"


def alert(
    name: str = "HighCPU",
    *,
    instance: str = "web-1:9100",
    starts_at: float = NOW - 600,
    ends_at: float | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    generator_url: str = "http://prom.example/graph",
    fingerprint: str | None = None,
) -> Alert:
    lbls = {"alertname": name, "instance": instance, "job": "node", **(labels or {})}
    return Alert(
        fingerprint=fingerprint or f"fp-{name}-{instance}",
        org="acme",
        labels=lbls,
        annotations=annotations if annotations is not None else {"summary": f"{name} on {instance}"},
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
    )


def resolved(name: str = "HighCPU", **kw: Any) -> Alert:
    return alert(name, ends_at=NOW - 60, **kw)


def request(
    alerts: list[Alert],
    *,
    org: str = "acme",
    receiver: str = "team-ops",
    group_labels: dict[str, str] | None = None,
    group_key: str = '{}:{alertname="HighCPU"}',
    acknowledged: bool = False,
    created_at: float = NOW,
    kind: str = "webhook",
    flush_seq: int = 3,
    req_id: str | None = None,
) -> SendRequest:
    firing = any(a.ends_at is None or a.ends_at > created_at for a in alerts)
    return SendRequest(
        id=req_id or f"{org}/g1/{receiver}/{kind}/0/{flush_seq}",
        org=org,
        group_key=group_key,
        group_id="g1",
        receiver=receiver,
        integration=Integration(kind=kind, index=0),
        flush_seq=flush_seq,
        status="firing" if firing else "resolved",
        group_labels=group_labels if group_labels is not None else {"alertname": "HighCPU"},
        alerts=alerts,
        created_at=created_at,
        acknowledged=acknowledged,
    )


@dataclass
class WebhookCfg:
    url: str = "http://hook.example/alerts"
    send_resolved: bool | None = True
    max_alerts: int | None = 0


@dataclass
class SlackFieldCfg:
    title: str | None = None
    value: str | None = None
    short: bool | None = None


@dataclass
class SlackConfirmCfg:
    text: str | None = None
    title: str | None = None
    ok_text: str | None = None
    dismiss_text: str | None = None


@dataclass
class SlackActionCfg:
    type: str | None = None
    text: str | None = None
    url: str | None = None
    style: str | None = None
    name: str | None = None
    value: str | None = None
    confirm: SlackConfirmCfg | None = None


@dataclass
class SlackCfg:
    channel: str | None = None
    username: str | None = None
    color: str | None = None
    title: str | None = None
    title_link: str | None = None
    pretext: str | None = None
    text: str | None = None
    fields: list[Any] | None = None
    short_fields: bool | None = None
    footer: str | None = None
    fallback: str | None = None
    callback_id: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None
    image_url: str | None = None
    thumb_url: str | None = None
    link_names: bool | None = None
    mrkdwn_in: list[str] | None = None
    actions: list[Any] | None = None


@dataclass
class PagerdutyCfg:
    routing_key: str | None = "R0UT1NG"
    service_key: str | None = None
    url: str | None = None
    client: str | None = None
    client_url: str | None = None
    description: str | None = None
    details: dict[str, Any] | None = None
    severity: str | None = None
    class_: str | None = None
    component: str | None = None
    group: str | None = None
    images: list[Any] | None = None
    links: list[Any] | None = None
    source: str | None = None


@dataclass
class EmailCfg:
    to: str | None = "oncall@example.org"
    from_: str | None = "tocsin@example.org"
    hello: str | None = None
    smarthost: str | None = "smtp.example.org:587"
    headers: dict[str, str] | None = None
    html: str | None = None
    text: str | None = None
