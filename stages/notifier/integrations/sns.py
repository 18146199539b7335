"""Amazon SNS ``Publish`` through the query API, signed with SigV4 (Alertmanager's notify/sns).

One POST of ``Action=Publish`` to ``api_url`` (a template) or the region's endpoint, to the
topic, phone number or target ARN. The message is cut to 256 KiB (1600 bytes for SMS) with
a ``truncated`` message attribute, as Alertmanager does. A FIFO topic (``.fifo``) gets the
group's hash as ``MessageGroupId`` and the send's hash as ``MessageDeduplicationId``, so a
retry is deduplicated by SNS and a later notification of the group is not.
Credentials: see ``sigv4``; ``role_arn`` assumes the role with STS, cached until shortly
before it expires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import SnsConfig

from ..classify import Outcome, Verdict, classify_status, parse_retry_after
from ..delivery import Sender
from ..http import USER_AGENT, HttpSender, auth_headers
from ..payloads.common import Fields, sha256_hex
from ..payloads.pagerduty import pagerduty_dedup_key
from ..secrets import SecretError
from ..templates import Data, TemplateSet, build_data
from .sigv4 import (
    AwsCredentials,
    aws_error,
    form_body,
    parse_assume_role,
    resolve_credentials,
    service_endpoint,
    session_name,
    sign,
    sts_endpoint,
)

__all__ = ["SNS_MAX_BYTES", "SNS_SMS_MAX_BYTES", "SnsSender", "build", "sns_params", "truncate_utf8"]

log = logging.getLogger("tocsin.notifier")

SNS_MAX_BYTES = 256 * 1024
SNS_SMS_MAX_BYTES = 1600
_FORM = "application/x-www-form-urlencoded; charset=utf-8"
# Error codes the AWS SDK retries as throttling (SNS answers some of them with 400)
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                        "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled",
                        "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException"})
_EXPIRY_MARGIN = 300.0  # assumed-role credentials are renewed this long before they expire


def truncate_utf8(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` UTF-8 bytes, cut at a character boundary (Alertmanager cuts bytes)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore"), True


def _exact(f: Fields, field: str, value: str) -> str:
    """A field that addresses the message: a template error fails the send (nothing to fall back to)."""
    if "{{" not in value:
        return value
    out, err = f.templates.render(value, f.data, "")
    if err is not None:
        raise ValueError(f"execute {field!r} template: {err}")
    return out


def sns_params(req: SendRequest, cfg: SnsConfig, data: Data, *, templates: TemplateSet | None = None,
               errors: list[str] | None = None) -> dict[str, str]:
    """The ``Publish`` parameters for ``req`` (pure). Raises ``ValueError`` when the topic,
    phone number, target ARN or an attribute does not render."""
    f = Fields("sns", data, templates, errors)
    params: dict[str, str] = {"Action": "Publish", "Version": "2010-03-31"}
    limit = SNS_MAX_BYTES
    if cfg.topic_arn:
        topic = _exact(f, "topic_arn", cfg.topic_arn)
        params["TopicArn"] = topic
        if topic.endswith(".fifo"):
            params["MessageGroupId"] = pagerduty_dedup_key(req.org, req.group_key)
            params["MessageDeduplicationId"] = sha256_hex(req.id)
    if cfg.phone_number:
        params["PhoneNumber"] = _exact(f, "phone_number", cfg.phone_number)
        limit = SNS_SMS_MAX_BYTES
    if cfg.target_arn:
        params["TargetArn"] = _exact(f, "target_arn", cfg.target_arn)
    message, truncated = truncate_utf8(f.text("message", cfg.message, "sns.default.message"), limit)
    params["Message"] = message
    if cfg.subject:
        params["Subject"] = f.text("subject", cfg.subject, "sns.default.subject")
    attributes = {_exact(f, "attributes", k): _exact(f, "attributes", v) for k, v in cfg.attributes.items()}
    if truncated:
        attributes["truncated"] = "true"
    for i, name in enumerate(sorted(attributes), 1):
        params[f"MessageAttributes.entry.{i}.Name"] = name
        params[f"MessageAttributes.entry.{i}.Value.DataType"] = "String"
        params[f"MessageAttributes.entry.{i}.Value.StringValue"] = attributes[name]
    return params


def _aws_outcome(status: int, body: bytes, retry_after: str | None, now: float, what: str) -> Outcome:
    err = aws_error(status, body)
    verdict = classify_status(status)
    if err.code in _THROTTLED:
        verdict = Verdict(ok=False, retryable=True, reason="rateLimited")
    return Outcome(verdict, f"{what}: unexpected status code {status}: {err}", status,
                   parse_retry_after(retry_after, now))


class SnsSender(HttpSender):
    kind = "sns"

    def __init__(self, cfg: SnsConfig, *, environ: Mapping[str, str] | None = None, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ
        self._assumed: AwsCredentials | None = None

    async def _credentials(self, now: float) -> tuple[AwsCredentials | Outcome, str]:
        sig = self.cfg.sigv4
        creds, region = resolve_credentials(sig, self.secrets, self.environ, self.what)
        if not sig.role_arn:
            return creds, region
        cached = self._assumed
        if cached is not None and (cached.expires is None or cached.expires - _EXPIRY_MARGIN > now):
            return cached, region
        params = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": sig.role_arn,
                  "RoleSessionName": session_name(now)}
        if sig.external_id:
            params["ExternalId"] = sig.external_id
        url = sts_endpoint(region, sig.use_fips_sts_endpoint, self.environ)
        body = form_body(params)
        headers = sign("POST", url, [("Content-Type", _FORM)], body, creds, region, "sts", now)
        resp = await self.client.post(url, [*headers, ("User-Agent", USER_AGENT)], body)
        if not 200 <= resp.status < 300:
            return _aws_outcome(resp.status, resp.body, resp.header("retry-after"), now,
                                f"{self.what}: STS AssumeRole of {sig.role_arn}"), region
        self._assumed = parse_assume_role(resp.body, now)
        return self._assumed, region

    async def send(self, req: SendRequest, now: float) -> Outcome:
        creds, region = await self._credentials(now)
        if isinstance(creds, Outcome):
            return creds
        errors: list[str] = []
        data = build_data(req, self.external_url)
        params = sns_params(req, self.cfg, data, templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        url = service_endpoint("sns", region, self.environ)
        if self.cfg.api_url:
            url, err = self.templates.render(self.cfg.api_url, data, "")
            if err is not None:
                raise SecretError(f"{self.what}: the api_url template does not render: {err}")
            url = url.strip()
        body = form_body(params)
        headers = sign("POST", url, [("Content-Type", _FORM)], body, creds, region, "sns", now)
        # http_config's custom headers go along unsigned; its authentication gives way to SigV4
        # (as in Alertmanager, whose auth round-trippers leave a signed request's Authorization alone)
        custom = [(k, v) for k, v in auth_headers(self.http, self.secrets, self.what) if k.lower() != "authorization"]
        resp = await self.client.post(url, [*headers, ("User-Agent", USER_AGENT), *custom], body)
        if 200 <= resp.status < 300:
            return Outcome(Verdict(ok=True, retryable=False, reason=""), status=resp.status)
        return _aws_outcome(resp.status, resp.body, resp.header("retry-after"), now, f"{self.what}: SNS Publish")


def build(cfg: SnsConfig, **kw: Any) -> Sender:
    return SnsSender(cfg, **kw)
