"""``POST /api/tocsin/ingest/<source>``: alerts from AWS SNS (CloudWatch alarms), Grafana's
webhook contact point and generic JSON webhooks, through the push path into EVENTS.

Each source of ``tocsin: ingest: sources:`` (``pipeline.application.config.ingest``) is one path. A
request goes through, in order:

1. the source (404 when none has that name) and its body limit (413);
2. authentication: the source's token (``Authorization: Bearer <token>``, or the password of
   basic authentication, as Grafana and SNS subscription URLs send it; 401, and 429 once a
   client address has failed too often), and for SNS the topic allow-list and the message
   signature (403; 503 when the signing certificate cannot be fetched, so SNS retries);
3. the source's rate limit (429 with ``Retry-After``);
4. the payload: one that is not the sender's format is 400 with the reason;
5. mapping (``pipeline.application.api.ingest_map``, ``pipeline.application.api.ingest_sns``) to Alertmanager alerts,
   which then get exactly the validation and organisation resolution of ``POST
   /api/v2/alerts`` (``parse_push``: the ``org_id`` label, else ``X-Scope-OrgID``, else
   the source's ``org``, else ``default_org``), and are published per organisation into
   EVENTS like a push (the rules stage applies Alertmanager's semantics, so history, routing,
   inhibition and silences follow). An organisation the source may not name, an item that
   cannot be mapped, or an alert the push validation refuses goes to one dead letter of the
   request (``tocsin.events.dlq.ingest.<id>``, seen with ``tocsin dlq list``) with the
   reasons; the answer is then 202 naming it.

These paths authenticate themselves, so under API authentication they belong in
``auth.public_paths`` (``/api/tocsin/ingest/*``): SNS cannot send a bearer token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from contracts import PushedAlerts
from contracts.ids import check_org
from pipeline.application.api.alerts import publish_push
from pipeline.application.api.auth.errors import ApiError, BadRequest, Forbidden, Unauthenticated, Unavailable
from pipeline.application.api.auth.middleware import FailureLimiter
from pipeline.application.api.context import ApiContext
from pipeline.application.api.ingest_map import PayloadError, map_generic, map_grafana
from pipeline.application.api.ingest_sns import (
    CertCache,
    SignatureError,
    SnsMessage,
    alarm_alert,
    message_time,
    parse_envelope,
    url_problem,
    verify_signature,
)
from pipeline.application.api.json_depth import MAX_JSON_DEPTH, too_deep
from pipeline.application.api.limits import RateLimited, RateLimiter, TooLarge
from pipeline.application.api.push import PushError, parse_push
from pipeline.application.config.identity import ALL, Identity
from pipeline.application.config.ingest import IngestConfig, IngestSource
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.runtime.deadletter import MIN_BUDGET, build_dead_letter
from pipeline.foundation.runtime.subjects import EVENTS
from pipeline.foundation.telemetry import producer_span

__all__ = ["DLQ_PARTITION", "IngestRuntime", "ingest_routes", "load_token"]

log = logging.getLogger("tocsin.ingest")

DLQ_PARTITION = "ingest"  # dead letters: tocsin.events.dlq.ingest.<unique>
_NO_SOURCES = IngestConfig()


def load_token(src: IngestSource, name: str, base_dir: Path) -> str | None:
    """The source's token (``None``: it has none); ``ConfigError`` when it cannot be read."""
    where = f"tocsin.ingest.sources.{name}"
    if src.token_file:
        path = Path(src.token_file) if Path(src.token_file).is_absolute() else base_dir / src.token_file
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{where}.token_file: cannot read {path}: {exc}"]) from None
        if not text:
            raise ConfigError([f"{where}.token_file: {path} is empty"])
        return text
    if src.token_env:
        value = os.environ.get(src.token_env, "").strip()
        if not value:
            raise ConfigError([f"{where}.token_env: environment variable {src.token_env} is not set or empty"])
        return value
    return None


@dataclass
class _Source:
    name: str
    kind: str
    config: IngestSource
    token: str | None
    limiter: RateLimiter | None
    certs: CertCache | None = None


@dataclass
class IngestRuntime:
    """The sources of one configuration, with their tokens read and their limiters."""

    config: IngestConfig
    sources: dict[str, _Source] = field(default_factory=dict)

    @classmethod
    def build(cls, config: IngestConfig, base_dir: Path) -> IngestRuntime:
        rt = cls(config)
        for name, src in config.sources.items():
            limiter = RateLimiter(src.rate, float(src.burst or max(1, int(src.rate + 0.999)))) if src.rate > 0 else None
            kind = src.kind_of(name)
            rt.sources[name] = _Source(name, kind, src, load_token(src, name, base_dir), limiter,
                                       CertCache(ttl=src.cert_cache_ttl) if kind == "sns" else None)
        return rt


def _authenticate(src: _Source, authorization: str | None) -> None:
    if src.token is None:
        return
    if not authorization:
        raise Unauthenticated(f"ingest source {src.name} needs its token: Authorization: Bearer <token>",
                              token_given=False)
    scheme, _, credentials = authorization.strip().partition(" ")
    given = credentials.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, ValueError):
            raise Unauthenticated("malformed basic credentials") from None
    elif scheme.lower() != "bearer":
        raise Unauthenticated("send the source's token as a bearer token or a basic password", token_given=False)
    if not hmac.compare_digest(given.encode(), src.token.encode()):
        raise Unauthenticated(f"invalid token for ingest source {src.name}")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and 0 < limit < int(length):
        raise TooLarge(f"request body of {int(length)} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if 0 < limit < size:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    if too_deep(body):
        raise PayloadError(f"the body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None


def _allowed_orgs(src: IngestSource, home: str) -> frozenset[str] | None:
    """The organisations the source's alerts may name (None: any)."""
    return None if "*" in src.orgs else frozenset({home, *src.orgs})


class _Ingest:
    def __init__(self, ctx: ApiContext, config: IngestConfig | None, base_dir: Path) -> None:
        self.ctx, self.base_dir = ctx, base_dir
        self.fixed = config  # given in code (tests, before the settings carry the section)
        self.runtime = IngestRuntime.build(self._config() or _NO_SOURCES, base_dir)
        rate = ctx.limits.auth_failure_rate
        self.failures = FailureLimiter(rate, float(ctx.limits.auth_failure_burst or max(1, int(rate)))) \
            if rate > 0 else None

    def _config(self) -> IngestConfig | None:
        return self.fixed or getattr(self.ctx.loaded.tocsin, "ingest", None)

    def current(self) -> IngestRuntime:
        """The runtime of the configuration in use (rebuilt after a reload changed it; a reload
        whose token cannot be read keeps the sources as they were, and says so)."""
        config = self._config() or _NO_SOURCES
        if config is not self.runtime.config:
            try:
                fresh = IngestRuntime.build(config, self.base_dir)
            except ConfigError as exc:
                log.error("ingest configuration not applied: %s", "; ".join(exc.errors))
                self.runtime = IngestRuntime(config, self.runtime.sources)  # (do not retry every request)
            else:
                self.runtime = fresh
        return self.runtime

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except PayloadError as exc:
            return JSONResponse(str(exc), status_code=400)
        except RecursionError:  # (the edge refuses deep bodies; this is the backstop for an SNS Message)
            return JSONResponse("payload nests too deeply to parse", status_code=400)
        except ApiError as exc:
            request.state.denial = exc.message
            return exc.response()

    async def _handle(self, request: Request) -> Response:
        name = request.path_params["source"]
        src = self.current().sources.get(name)
        if src is None:
            return JSONResponse(f"no ingest source {name[:64]!r}: configure it under tocsin.ingest.sources",
                                status_code=404)
        now = time.time()
        body = await _read_body(request, src.config.max_body_bytes or self.ctx.limits.max_body_bytes)
        client = request.client.host if request.client else "unknown"
        if self.failures is not None and src.token is not None:
            wait = self.failures.wait(client, now)
            if wait > 0:
                raise RateLimited(f"{client}: too many failed authentications", wait)
        try:
            _authenticate(src, request.headers.get("authorization"))
        except Unauthenticated:
            if self.failures is not None:
                self.failures.failed(client, now)
            raise
        request.state.identity = Identity(f"ingest:{name}", ALL, "viewer", can_push=True, method="ingest")
        if src.kind == "sns":
            return await self._sns(request, src, body, now)
        if src.limiter is not None and (wait := src.limiter.check(name, now)) > 0:
            raise RateLimited(f"ingest source {name}", wait)
        doc = _json(body)
        if src.kind == "grafana":
            alerts, reasons = map_grafana(doc, now=now, firing_ttl=src.config.firing_ttl)
        else:
            assert src.config.mapping is not None  # (IngestConfig checks it)
            alerts, reasons = map_generic(doc, src.config.mapping, now=now, firing_ttl=src.config.firing_ttl)
        header = request.headers.get("x-scope-orgid", "").strip()
        home = src.config.org or self.ctx.default_org
        if header:
            if problem := check_org(header):
                raise BadRequest(f"invalid X-Scope-OrgID: {problem}")
            allowed = _allowed_orgs(src.config, home)
            if allowed is not None and header not in allowed:
                raise Forbidden(f"ingest source {name} may not push alerts for organisation {header!r}")
            home = header
        return await self._publish(request, src, body, alerts, reasons, home=home, request_id=uuid.uuid4().hex,
                                   labels=src.config.labels, now=now)

    async def _sns(self, request: Request, src: _Source, body: bytes, now: float) -> Response:
        if too_deep(body):
            raise PayloadError(f"the body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep")
        msg = parse_envelope(body)
        header = request.headers.get("x-amz-sns-message-type")
        if header and header != msg.type:
            raise PayloadError(f"x-amz-sns-message-type {header[:40]!r} differs from the message's Type")
        topic = src.config.topics.get(msg.topic_arn)
        if topic is None:
            raise Forbidden(f"SNS topic {msg.topic_arn[:256]!r} is not one ingest source {src.name} takes "
                            "(list it under topics)")
        await self._verify(src, msg, now)
        if src.limiter is not None and (wait := src.limiter.check(f"{src.name}:{msg.topic_arn}", now)) > 0:
            raise RateLimited(f"SNS topic {msg.topic_arn}", wait)
        home = topic.org or src.config.org or self.ctx.default_org
        if msg.type == "UnsubscribeConfirmation":
            log.warning("SNS topic %s unsubscribed ingest source %s", msg.topic_arn, src.name)
            return JSONResponse({"unsubscribed": msg.topic_arn})
        if msg.type == "SubscriptionConfirmation":
            return await self._subscribe(src, msg, body, home)
        try:
            alert = alarm_alert(msg.message, topic_arn=msg.topic_arn, labels={**src.config.labels, **topic.labels},
                                insufficient_data=topic.insufficient_data or src.config.insufficient_data,
                                now=now, firing_ttl=src.config.firing_ttl)
        except ValueError as exc:  # Unmappable, or a time out of range
            alerts, reasons = [], [str(exc)]
        else:
            alerts, reasons = ([alert] if alert is not None else []), []
        return await self._publish(request, src, body, alerts, reasons, home=home, request_id=msg.message_id,
                                   labels={}, now=now)

    async def _verify(self, src: _Source, msg: SnsMessage, now: float) -> None:
        cfg = src.config
        if problem := url_problem(msg.signing_cert_url, cfg.cert_hosts, allow_http=cfg.allow_http,
                                  what="SigningCertURL"):
            raise Forbidden(problem)
        if not msg.signing_cert_url.split("?", 1)[0].endswith(".pem"):
            raise Forbidden("SigningCertURL must name a .pem certificate")
        assert src.certs is not None
        try:
            key = await src.certs.key(msg.signing_cert_url, now)
            verify_signature(msg, key)
        except SignatureError as exc:
            raise Forbidden(str(exc)) from None
        except LookupError as exc:
            raise Unavailable(f"cannot check the SNS signature now: {exc}", {"Retry-After": "5"}) from None
        if cfg.max_age > 0 and now - message_time(msg) > cfg.max_age:
            raise Forbidden(f"SNS message {msg.message_id[:64]} is older than max_age ({cfg.max_age:.0f}s)")

    async def _subscribe(self, src: _Source, msg: SnsMessage, body: bytes, home: str) -> Response:
        cfg = src.config
        problem = url_problem(msg.subscribe_url, cfg.confirm_hosts, allow_http=cfg.allow_http, what="SubscribeURL")
        if problem or not cfg.confirm:
            reason = (f"SNS subscription of topic {msg.topic_arn} not confirmed: "
                      + (problem or "confirm is off") + f"; to confirm it, GET {msg.subscribe_url}")
            log.warning("%s", reason)
            ref = await self._dead_letter(src, f"subscribe:{msg.message_id}", body, reason, home)
            return JSONResponse({"confirmed": False, "reason": reason, "dead_letter": ref}, status_code=202)
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
                r = await client.get(msg.subscribe_url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot confirm the SNS subscription now: {type(exc).__name__}",
                              {"Retry-After": "5"}) from None
        if r.status_code != 200:
            raise Unavailable(f"confirming the SNS subscription answered HTTP {r.status_code}", {"Retry-After": "5"})
        log.info("SNS subscription of topic %s confirmed for ingest source %s", msg.topic_arn, src.name)
        return JSONResponse({"confirmed": True, "topic": msg.topic_arn})

    async def _publish(self, request: Request, src: _Source, body: bytes, alerts: list[dict[str, Any]],
                       reasons: list[str], *, home: str, request_id: str, labels: dict[str, str],
                       now: float) -> Response:
        ctx = self.ctx
        if labels:
            alerts = [{**a, "labels": {**a["labels"], **labels}} for a in alerts]
        pushes: list[PushedAlerts] = []
        if alerts:
            try:
                pushes, errors = parse_push(msgspec.json.encode(alerts), request_org=home, now=now,
                                            request_id=request_id, limits=ctx.limits)
            except PushError as exc:
                pushes, errors = [], [str(exc)]
            reasons += errors
        allowed = _allowed_orgs(src.config, src.config.org or ctx.default_org)
        if allowed is not None:
            allowed = allowed | {home}
            for foreign in [p for p in pushes if p.org not in allowed]:
                reasons.append(f"{len(foreign.alerts)} alert(s) name organisation {foreign.org!r}, which ingest "
                               f"source {src.name} may not push for (add it to its orgs)")
                pushes.remove(foreign)
        tp = producer_span("POST /api/tocsin/ingest/{source}", request.headers.get("traceparent"), {
            "http.request.method": "POST", "http.route": "/api/tocsin/ingest/{source}", "messaging.system": "nats"})
        for push in pushes:
            await publish_push(ctx, push, tp, id_prefix=f"ingest:{src.name}")
            await ctx.audit(request, push.org, "alerts.ingest", request_id,
                            {"source": src.name, "alerts": len(push.alerts)})
        count = sum(len(p.alerts) for p in pushes)
        if not reasons:
            return JSONResponse({"alerts": count})
        reason = "; ".join(reasons)
        ref = await self._dead_letter(src, request_id, body, reason, home)
        return JSONResponse({"alerts": count, "dead_letter": ref, "reason": reason}, status_code=202)

    async def _dead_letter(self, src: _Source, request_id: str, body: bytes, reason: str, org: str) -> str:
        """Keep what could not be taken, with the reason; its ``STREAM:SEQ``."""
        msg_id = f"ingest-dlq:{src.name}:{request_id}"
        budget = max(MIN_BUDGET, (self.ctx.nc.max_payload or 1 << 20) - 8192)
        _, data = build_dead_letter(stage="ingest", reason=reason, budget=budget, payload=body, at=time.time(),
                                    key=f"{src.name}/{org}", cause="rejected",
                                    headers={"Tocsin-Ingest-Source": src.name})
        ack = await self.ctx.js.publish(EVENTS.dlq(DLQ_PARTITION, msg_id), data, headers={"Nats-Msg-Id": msg_id})
        log.warning("ingest source %s: dead letter %s:%d: %s", src.name, ack.stream, ack.seq, reason[:512])
        return f"{ack.stream}:{ack.seq}"


def ingest_routes(ctx: ApiContext, *, config: IngestConfig | None = None,
                  base_dir: str | Path = ".") -> list[BaseRoute]:
    """The ingest routes. The sources come from ``ctx.loaded.tocsin.ingest`` (followed across
    reloads), or ``config`` when given; token files are read now (``ConfigError`` when one
    cannot be), relative to ``base_dir`` (the configuration's directory)."""
    ingest = _Ingest(ctx, config, Path(base_dir))
    return [Route("/api/tocsin/ingest/{source}", ingest.handle, methods=["POST"])]
