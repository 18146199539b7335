"""incident.io alert events (Alertmanager's notify/incidentio).

The body is Alertmanager's: the webhook message (template data, ``groupKey``,
``truncatedAlerts``) with ``version`` "1", and ``max_alerts`` truncation; when it is larger
than incident.io's 512 KiB, only the first alert is kept. Tocsin adds
``deduplication_key``, the group's stable hash (as PagerDuty's ``dedup_key``), and the
send's ``Idempotency-Key`` header. ``alert_source_token`` is sent as a bearer token and
replaces ``http_config``'s authorization. 429 and 5xx are retried.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import IncidentioConfig

from ..classify import Outcome, permanent
from ..delivery import Sender
from ..http import USER_AGENT, HttpSender, auth_headers, http_outcome
from ..payloads.common import idempotency_key
from ..payloads.pagerduty import pagerduty_dedup_key
from ..payloads.webhook import webhook_payload

__all__ = ["INCIDENTIO_MAX_BYTES", "INCIDENTIO_VERSION", "IncidentioSender", "build", "incidentio_body"]

log = logging.getLogger("tocsin.notifier")

INCIDENTIO_VERSION = "1"
INCIDENTIO_MAX_BYTES = 512 * 1024
_encode = msgspec.json.Encoder(order="deterministic").encode


def incidentio_body(req: SendRequest, cfg: IncidentioConfig, external_url: str) -> bytes:
    """The JSON body for ``req`` (pure)."""
    msg: dict[str, Any] = {
        **webhook_payload(req, cfg, external_url),
        "version": INCIDENTIO_VERSION,
        "deduplication_key": pagerduty_dedup_key(req.org, req.group_key),
    }
    body = _encode(msg)
    if len(body) > INCIDENTIO_MAX_BYTES and len(msg["alerts"]) > 1:
        # one alert is what incident.io makes of a group anyway; the rest is detail
        original = len(body)
        msg["alerts"] = msg["alerts"][:1]
        body = _encode(msg)
        log.warning("incident.io payload of %s bytes cut to its first alert (%s bytes, limit %s)", original,
                    len(body), INCIDENTIO_MAX_BYTES)
    return body


def _error_details(body: bytes) -> str:
    try:
        answer = msgspec.json.decode(body[:4096])
    except msgspec.DecodeError:
        return ""
    if not isinstance(answer, dict):
        return ""
    parts = [str(answer[k]) for k in ("message", "error") if answer.get(k)]
    errs = answer.get("errors")
    if isinstance(errs, list) and errs:
        parts.append(", ".join(str(e) for e in errs))
    return ": ".join(parts)


class IncidentioSender(HttpSender):
    kind = "incidentio"

    def __init__(self, cfg: IncidentioConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        url = self.secrets.resolve(cfg.url, cfg.url_file, f"{self.what}: url").strip()
        if not url:
            return permanent(f"{self.what}: no url")
        token = self.secrets.resolve(cfg.alert_source_token, cfg.alert_source_token_file,
                                     f"{self.what}: alert_source_token").strip()
        headers = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT),
                   ("Idempotency-Key", idempotency_key(req))]
        auth = auth_headers(self.http, self.secrets, self.what)
        if token:  # the token replaces http_config's authorization
            auth = [(k, v) for k, v in auth if k.lower() != "authorization"] + [("Authorization", f"Bearer {token}")]
        resp = await self.client.post(url, [*headers, *auth], incidentio_body(req, cfg, self.external_url))
        out = http_outcome(resp, now)
        if out.ok:
            return out
        details = _error_details(resp.body)
        return out._replace(error=f"unexpected status code {resp.status}: {details}") if details else out


def build(cfg: IncidentioConfig, **kw: Any) -> Sender:
    return IncidentioSender(cfg, **kw)
