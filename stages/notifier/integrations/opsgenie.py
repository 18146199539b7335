"""Opsgenie (``notify/opsgenie`` in Alertmanager): create an alert, close it on resolve.

The alert's ``alias`` is the SHA-256 of the group key (Alertmanager's ``key.Hash()``), so
Opsgenie dedupes retries and every later flush of the group into one alert, and the close
finds it; alerts opened by an Alertmanager are closed by Tocsin after a switch. With
``update_alerts`` the message and description of the open alert are updated too (two PUTs).
A send of an acknowledged group (``SendRequest.acknowledged``, Tocsin's) ends with
``POST v2/alerts/{alias}/acknowledge``, whatever the acknowledgement was keyed by.
Status handling is Alertmanager's retrier with 429 retried: 5xx and 429 retry, any other
non-2xx is final.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import OpsgenieConfig

from ..classify import Outcome, permanent
from ..delivery import Sender
from ..http import HttpSender, http_outcome
from ..payloads.common import Fields, truncate_runes
from ..payloads.pagerduty import pagerduty_dedup_key
from ..templates import Data, TemplateSet, build_data
from ._incident import join_url, render_secret, request

__all__ = ["OPSGENIE_MESSAGE_MAX_RUNES", "OpsgenieRequest", "OpsgenieSender", "build", "opsgenie_alias",
           "opsgenie_requests"]

log = logging.getLogger("tocsin.notifier")

OPSGENIE_MESSAGE_MAX_RUNES = 130  # https://docs.opsgenie.com/docs/alert-api


class OpsgenieRequest(NamedTuple):
    method: str
    url: str
    body: dict[str, Any]


def opsgenie_alias(req: SendRequest) -> str:
    """The alert's alias: Alertmanager's for the default organisation (see ``pagerduty_dedup_key``)."""
    return pagerduty_dedup_key(req.org, req.group_key)


def _split(text: str) -> list[str]:
    # Alertmanager's safeSplit: the whole text trimmed, empty items dropped, items kept as written
    return [x for x in text.strip().split(",") if x]


def _responders(f: Fields, cfg: OpsgenieConfig) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, r in enumerate(cfg.responders):
        fields = {k: f.text(f"responders[{i}].{k}", getattr(r, k)) for k in ("id", "name", "username", "type")}
        # Filled from labels that are absent: left out. Alertmanager leaves out only a responder whose
        # type is empty too, and Opsgenie then refuses the whole alert for a responder naming nobody.
        if not (fields["id"] or fields["name"] or fields["username"]):
            continue
        if fields["type"] == "teams":
            out += [{"name": f.text(f"responders[{i}].name", team), "type": "team"} for team in _split(fields["name"])]
            continue
        responder = {k: v for k, v in fields.items() if v and k != "type"}
        responder["type"] = fields["type"]
        out.append(responder)
    return out


def opsgenie_requests(req: SendRequest, cfg: OpsgenieConfig, data: Data, *, templates: TemplateSet | None = None,
                      errors: list[str] | None = None) -> list[OpsgenieRequest]:
    """The requests of one notification, in order: a close when every alert is resolved; else
    a create, then (``update_alerts``) the message and description updates, then (the group
    is acknowledged) an acknowledge. URLs are relative to nothing: ``cfg.api_url`` (ending in
    ``/``) is their base."""
    f = Fields("opsgenie", data, templates, errors)
    alias = opsgenie_alias(req)
    by_alias = [("identifierType", "alias")]
    source = f.text("source", cfg.source, "opsgenie.default.source")
    if data.Status == "resolved":
        return [OpsgenieRequest("POST", join_url(cfg.api_url, f"v2/alerts/{alias}/close", by_alias),
                                {"source": source})]
    message, cut = truncate_runes(f.text("message", cfg.message, "opsgenie.default.message"),
                                  OPSGENIE_MESSAGE_MAX_RUNES)
    if cut:
        log.warning("opsgenie: message of %s cut to %d characters", req.id, OPSGENIE_MESSAGE_MAX_RUNES)
    description = f.text("description", cfg.description, "opsgenie.default.description")
    details = dict(data.CommonLabels)
    details.update({k: f.text(f"details.{k}", v) for k, v in cfg.details.items()})
    body: dict[str, Any] = {"alias": alias, "message": message}
    if description:
        body["description"] = description
    body["details"] = dict(sorted(details.items()))
    body["source"] = source
    # the optional fields, left out when empty as Alertmanager's omitempty does
    optional: dict[str, Any] = {
        "responders": _responders(f, cfg),
        "tags": _split(f.text("tags", cfg.tags)),
        "note": f.text("note", cfg.note),
        "priority": f.text("priority", cfg.priority),
        "entity": f.text("entity", cfg.entity),
        "actions": _split(f.text("actions", cfg.actions)),
    }
    body.update({k: v for k, v in optional.items() if v})
    out = [OpsgenieRequest("POST", join_url(cfg.api_url, "v2/alerts"), body)]
    if cfg.update_alerts:
        out.append(OpsgenieRequest("PUT", join_url(cfg.api_url, f"v2/alerts/{alias}/message", by_alias),
                                   {"message": message} if message else {}))
        out.append(OpsgenieRequest("PUT", join_url(cfg.api_url, f"v2/alerts/{alias}/description", by_alias),
                                   {"description": description} if description else {}))
    if req.acknowledged:  # the create is idempotent by alias: the acknowledge finds the alert
        out.append(OpsgenieRequest("POST", join_url(cfg.api_url, f"v2/alerts/{alias}/acknowledge", by_alias),
                                   {"source": source, "note": "acknowledged in Tocsin"}))
    return out


class OpsgenieSender(HttpSender):
    kind = "opsgenie"

    def __init__(self, cfg: OpsgenieConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        if not cfg.api_url:
            return permanent(f"{self.what}: no api_url")
        data = build_data(req, self.external_url)
        key = render_secret(self, self.secrets.resolve(cfg.api_key, cfg.api_key_file, f"{self.what}: api_key"),
                            data, "api_key")
        if not key:
            return permanent(f"{self.what}: empty api_key")
        errors: list[str] = []
        requests = opsgenie_requests(req, cfg, data, templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        auth = [("Authorization", f"GenieKey {key}")]
        out = permanent(f"{self.what}: nothing to send")
        for r in requests:
            resp = await request(self, r.method, r.url, msgspec.json.encode(r.body), extra=auth, own_auth=True)
            out = http_outcome(resp, now)
            if not out.ok:  # a retry starts over: the create is idempotent by alias
                return out
        return out


def build(cfg: OpsgenieConfig, **kw: Any) -> Sender:
    return OpsgenieSender(cfg, **kw)
