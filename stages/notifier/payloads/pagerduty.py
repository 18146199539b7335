"""PagerDuty events (Events API v2, and v1 for ``service_key`` configs) as Alertmanager sends them."""

from __future__ import annotations

import json
from typing import Any

from contracts.messages import SendRequest

from ..templates import Data, TemplateSet, rfc3339
from .common import Fields, sha256_hex, sorted_maps, truncate_runes
from .config import PagerdutyConfig, get_field

__all__ = [
    "PAGERDUTY_MAX_EVENT_BYTES",
    "PAGERDUTY_SUMMARY_MAX_RUNES",
    "PAGERDUTY_V1_URL",
    "PAGERDUTY_V2_URL",
    "event_action",
    "pagerduty_dedup_key",
    "pagerduty_payload",
]

PAGERDUTY_V2_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_V1_URL = "https://events.pagerduty.com/generic/2010-04-15/create_event.json"
PAGERDUTY_SUMMARY_MAX_RUNES = 1024  # v2 summary and v1 description
PAGERDUTY_MAX_EVENT_BYTES = 512000
_TOO_BIG = "Custom details have been removed because the original event exceeds the maximum size of 512KB"
_DEFAULT_SEVERITY = "error"


def pagerduty_dedup_key(org: str, group_key: str) -> str:
    """The incident key of a group: stable for the group's whole life, across every send.

    Alertmanager sends the SHA-256 of the group key. Tocsin does the same when ``org`` is
    empty, so incidents opened by an Alertmanager are resolved after switching to Tocsin;
    otherwise the organisation is hashed in too, as two organisations can have equal group keys.
    """
    return sha256_hex(group_key if not org else f"{org}\x00{group_key}")


def event_action(data: Data, acknowledged: bool) -> str:
    """``resolve`` when every alert is resolved, else ``acknowledge`` or ``trigger``."""
    if data.Status == "resolved":
        return "resolve"
    return "acknowledge" if acknowledged else "trigger"


def _details(f: Fields, cfg: PagerdutyConfig, data: Data) -> dict[str, Any]:
    # Alertmanager's defaults are `{{ .Alerts.Firing | toJson }}`, `{{ .Alerts.Firing | len }}`...
    # read back as YAML, i.e. these structures; configured keys replace them one by one.
    details: dict[str, Any] = {
        "firing": [a.to_json() for a in data.Alerts.Firing],
        "num_firing": len(data.Alerts.Firing),
        "num_resolved": len(data.Alerts.Resolved),
        "resolved": [a.to_json() for a in data.Alerts.Resolved],
    }
    rendered = f.value("details", dict(cfg.details or {}))
    details.update(rendered)
    return sorted_maps(details)


def _size(msg: dict[str, Any]) -> int:
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode())


def _uses_v1(cfg: PagerdutyConfig) -> bool:
    return bool(cfg.service_key) and not cfg.routing_key


def pagerduty_payload(
    req: SendRequest,
    cfg: PagerdutyConfig,
    data: Data,
    routing_key: str,
    *,
    templates: TemplateSet | None = None,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON body of the event for ``req``'s group.

    ``routing_key`` is the key to send with (read by the caller from ``routing_key`` or
    ``routing_key_file``; for a config with only ``service_key``, the service key, and the
    event is then a v1 event, to be posted to :data:`PAGERDUTY_V1_URL`). The dedup key is
    :func:`pagerduty_dedup_key`, so PagerDuty itself dedupes retries and later flushes of
    the group. ``timestamp`` is the send request's creation time. An event over 512 kB
    loses its custom details, as in Alertmanager.
    """
    f = Fields("pagerduty", data, templates, errors)
    action = event_action(data, req.acknowledged)
    key = pagerduty_dedup_key(req.org, req.group_key)
    rendered_key = f.text("routing_key", routing_key) if routing_key else ""
    description, _ = truncate_runes(
        f.text("description", cfg.description, "pagerduty.default.description"), PAGERDUTY_SUMMARY_MAX_RUNES
    )
    client = f.text("client", cfg.client, "pagerduty.default.client")
    client_url = f.text("client_url", cfg.client_url, "pagerduty.default.clientURL")
    details = _details(f, cfg, data)

    if _uses_v1(cfg):
        msg: dict[str, Any] = {
            "service_key": rendered_key,
            "incident_key": key,
            "event_type": action,
            "description": description,
        }
        if action == "trigger":
            if client:
                msg["client"] = client
            if client_url:
                msg["client_url"] = client_url
        msg["details"] = details
        if _size(msg) > PAGERDUTY_MAX_EVENT_BYTES:
            msg["details"] = {"error": _TOO_BIG}
        return msg

    # Alertmanager's source defaults to the configured client template
    source = f.text("source", cfg.source or cfg.client, "pagerduty.default.client")
    payload: dict[str, Any] = {
        "summary": description,
        "source": source,
        "severity": f.text("severity", cfg.severity) or _DEFAULT_SEVERITY,
        "timestamp": rfc3339(req.created_at),
    }
    for key_name, attr in (("class", "class_"), ("component", "component"), ("group", "group")):
        text = f.text(key_name, getattr(cfg, attr))
        if text:
            payload[key_name] = text
    if details:
        payload["custom_details"] = details

    msg = {}
    if rendered_key:
        msg["routing_key"] = rendered_key
    msg["dedup_key"] = key
    msg["event_action"] = action
    msg["payload"] = payload
    if client:
        msg["client"] = client
    if client_url:
        msg["client_url"] = client_url
    images = []
    for i, item in enumerate(cfg.images or ()):
        image = {k: f.text(f"images[{i}].{k}", get_field(item, k)) for k in ("src", "alt", "href")}
        if image["src"]:
            images.append(image)
    if images:
        msg["images"] = images
    links = []
    for i, entry in enumerate(cfg.links or ()):
        link = {k: f.text(f"links[{i}].{k}", get_field(entry, k)) for k in ("href", "text")}
        if link["href"]:
            links.append(link)
    if links:
        msg["links"] = links
    if _size(msg) > PAGERDUTY_MAX_EVENT_BYTES:
        payload["custom_details"] = {"error": _TOO_BIG}
    return msg
