"""Notifier workers: deliver send requests with retries, pacing, fallback and the ledger.

Every worker binds the one durable pull consumer ``notifier`` on ``TOCSIN_SENDS``
(``tocsin.sends.out.>``, explicit acks) through the runtime's work-queue consumer
(``pipeline.foundation.runtime.workqueue``), so any replica takes any request; a worker
keeps at most ``concurrency`` requests in flight. The decisions are ``core``'s; this module
reads the ledger, asks the gates, makes the attempts and executes what ``core`` decides.
Each request goes:

1. decode (a bad message is dead-lettered on ``tocsin.sends.dlq.notifier.<unique>``, then acked);
2. ``select_alerts`` (nothing to send: acked);
3. a redelivered request reads its ledger record from the stream leader: final means acked
   without sending (``core.admit``);
4. the endpoint's gates (``core.gate``): an open circuit (or a long rate-limit wait) returns
   the request with a delayed nak, before anything is written, and its budget is not spent;
5. the ledger record ``sending`` is written (``core.claim``: a compare-and-set on the
   sequence of the record the decision was taken on, so a stale read cannot lead to a send),
   then attempts are made, each failed one logged; after each, ``core.after_attempt`` says sent, retry
   after a delay (backoff with full jitter, or ``Retry-After``; in-progress acks keep the
   message meanwhile) or give up; the breaker learns from every attempt; the records
   written after a failed attempt are compare-and-sets on the previous one, so a worker
   that lost the send to another (it outlived its ack wait) stops, settling nothing;
6. success: ledger ``sent`` (which is also the attempt's log entry: a send that succeeds at
   once writes the ledger twice, the claim and ``sent``), ack. Permanent failure or exhausted budget (``core.give_up``):
   the notification is published to the fallback receiver's integrations (if configured) as
   new send requests, the failure is dead-lettered, the ledger says ``fallback`` or
   ``failed``, ack.

Run it with ``tocsin run notifier --nats-url URL --config.file FILE``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.messages import DeadLetter, SendRequest, decode_as, encode
from pipeline.foundation.amconfig.model import Config
from pipeline.foundation.runtime.jetstream import ensure_stream
from pipeline.foundation.runtime.metrics import REGISTRY, metric_set
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.workqueue import WorkQueue, ensure_work_consumer, num_delivered, settle, stream_seq
from pipeline.foundation.telemetry import annotate, child_span, payload_attributes, step_span
from pipeline.foundation.telemetry import enabled as tracing

from . import core
from .breaker import CircuitBreaker, Gates, RetryBudget, TokenBucket
from .classify import Outcome
from .config import NotifierConfig
from .core import SenderKey
from .delivery import Sender, attempt
from .ledger import Ledger, ensure_ledger
from .payloads import select_alerts
from .payloads.common import RENDER_ERRORS
from .records import LedgerRecord, integration_name
from .senders import Senders

__all__ = [
    "CONSUMER",
    "DLQ_FILTER",
    "SENDS",
    "SENDS_FILTER",
    "NotifierMetrics",
    "Worker",
    "notifier_metrics",
]

log = logging.getLogger("tocsin.notifier")

SENDS = StreamNames("sends")
SENDS_FILTER = f"{SENDS.prefix}.out.>"
DLQ_FILTER = SENDS.dlq_filter("notifier")  # the dead letters, each on a subject of its own
CONSUMER = "notifier"
_LAT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Both:
    """A child of a metric published under Alertmanager's name and under Tocsin's (``tocsin_``)."""

    __slots__ = ("children",)

    def __init__(self, children: tuple[Any, ...]) -> None:
        self.children = children

    def inc(self, amount: float = 1.0) -> None:
        for c in self.children:
            c.inc(amount)

    def observe(self, value: float) -> None:
        for c in self.children:
            c.observe(value)


class _Twin:
    """One metric under both names, so an Alertmanager dashboard keeps working on Tocsin."""

    def __init__(self, kind: type[Counter] | type[Histogram], name: str, doc: str, labels: list[str],
                 **kw: Any) -> None:
        self.metrics = tuple(kind(f"{prefix}_{name}", doc, labels, registry=REGISTRY, **kw)
                             for prefix in ("alertmanager", "tocsin"))
        self._children: dict[tuple[str, ...], _Both] = {}

    def labels(self, *values: str) -> _Both:
        # prometheus' labels() takes a lock and validates per call: keep the children (a few label sets)
        both = self._children.get(values)
        if both is None:
            both = self._children[values] = _Both(tuple(m.labels(*values) for m in self.metrics))
        return both


@dataclass(frozen=True)
class NotifierMetrics:
    notifications: _Twin  # notifications (send requests) tried, once each
    failed: _Twin  # notifications that failed for good (after retries), by reason
    requests: _Twin  # requests to the integration (attempts)
    requests_failed: _Twin  # attempts that failed
    latency: _Twin  # of each attempt
    delay: Histogram  # from the flush that made the request (event time) to its delivery
    dead_letters: Counter
    skipped: Counter
    deferred: Counter
    fallbacks: Counter
    in_flight: Gauge


def _notifier_metrics(r: CollectorRegistry) -> NotifierMetrics:
    """The process's notifier metrics (Alertmanager's names with ``tocsin_``), created once."""
    return NotifierMetrics(
        notifications=_Twin(Counter, "notifications", "The total number of attempted notifications.",
                            ["integration"]),
        failed=_Twin(Counter, "notifications_failed", "The total number of failed notifications.",
                     ["integration", "reason"]),
        requests=_Twin(Counter, "notification_requests", "The total number of attempted notification requests.",
                       ["integration"]),
        requests_failed=_Twin(Counter, "notification_requests_failed",
                              "The total number of failed notification requests.", ["integration"]),
        latency=_Twin(Histogram, "notification_latency_seconds", "The latency of notifications in seconds.",
                      ["integration"], buckets=_LAT),
        delay=Histogram("tocsin_notification_delay_seconds", "From the group flush that made a notification "
                        "(its event time) to its delivery: the pipeline's own delay, configured waits excluded",
                        ["integration"], buckets=_LAT, registry=r),
        dead_letters=Counter("tocsin_notifier_dead_letters", "Send requests dead-lettered", ["cause"],
                             registry=r),
        skipped=Counter("tocsin_notifier_skipped", "Send requests acknowledged without sending", ["why"],
                        registry=r),
        deferred=Counter("tocsin_notifier_deferred", "Send requests returned for later by an open circuit "
                         "or the rate limit", ["integration", "cause"], registry=r),
        fallbacks=Counter("tocsin_notifier_fallbacks", "Notifications handed to a fallback receiver",
                          ["receiver"], registry=r),
        in_flight=Gauge("tocsin_notifier_in_flight", "Send requests being worked on", registry=r),
    )


notifier_metrics = metric_set(_notifier_metrics)


_request_decoder = msgspec.json.Decoder(SendRequest)
_REQUEST_START = b'{"type":"send_request.v1",'  # how encode() starts a send request: its tag first


def _decode_request(data: bytes) -> SendRequest:
    """``decode_as(data, SendRequest)`` without the union of every message kind (cheaper).
    Only for data that starts with the tag (a lone tagged struct's decoder does not demand
    it); anything else, and any error, goes through decode_as (its errors, word for word)."""
    if data.startswith(_REQUEST_START):
        try:
            return _request_decoder.decode(data)
        except msgspec.DecodeError:  # a ValidationError too
            pass
    return decode_as(data, SendRequest)


class _Defer(Exception):
    """Return the request to the stream (``core.Defer``): raised from deep in a send, settled by the handler."""

    def __init__(self, decision: core.Defer) -> None:
        self.delay = decision.delay


class _Superseded(Exception):
    """Another worker took the send over (a ledger write found a newer record): stop, settle nothing."""


class Worker:
    """One notifier worker process's send loop (see the module doc)."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, config: Config, settings: NotifierConfig,
                 senders: Senders, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, stream_replicas: int = 1,
                 fetch_timeout: float = 1.0) -> None:
        self.nc = nc
        self.js = js
        self.config = config
        self.settings = settings
        self.senders = senders
        self.clock = clock
        self.rand = rand
        self.stream_replicas = stream_replicas
        self.ledger = Ledger(nc, js)
        self.metrics = notifier_metrics()
        retry = settings.retry
        self.budget = RetryBudget(seconds=retry.budget, max_attempts=retry.max_attempts,
                                  backoff_base=retry.backoff_base, backoff_cap=retry.backoff_cap,
                                  max_retry_after=retry.max_retry_after)
        self.gates = Gates(
            make_breaker=lambda: CircuitBreaker(threshold=settings.breaker.failures, cooldown=settings.breaker.cooldown,
                                                probe_timeout=max(60.0, settings.timeout * 2)),
            make_bucket=self._bucket)
        # the consumer's own settings (concurrency, ack_wait) take effect at a restart
        self.queue = WorkQueue(nc, SENDS.stream, CONSUMER, self._handle, concurrency=settings.concurrency,
                               ack_wait=settings.ack_wait, fetch_timeout=fetch_timeout, clock=clock)
        self._children: dict[str, tuple[_Both, _Both]] = {}  # (requests, latency) per kind
        self._delays: dict[str, Any] = {}  # the delay histogram's child per kind
        self.metrics.in_flight.set_function(lambda: len(self.queue.in_flight))

    @property
    def ready(self) -> bool:
        return self.queue.ready

    def _bucket(self, key: Any) -> TokenBucket:
        limit = self.settings.rate_limit_for(key[0])
        return TokenBucket(rate=limit.rate, burst=limit.burst)

    # ------------------------------------------------------------------ running

    async def setup(self) -> None:
        await ensure_stream(self.js, SENDS, replicas=self.stream_replicas)
        await ensure_ledger(self.js, replicas=self.stream_replicas, max_age=self.settings.ledger_max_age)
        if await self.ledger.detect_legacy():
            log.warning("the ledger keeps records of the layout before (tocsin.ledger.send.<id>): each send reads "
                        "them before its claim until they expire (ledger_max_age); restart the workers after that")
        await ensure_work_consumer(self.js, SENDS.stream, CONSUMER, filter_subject=SENDS_FILTER,
                                   ack_wait=self.settings.ack_wait, max_ack_pending=self.settings.max_ack_pending)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.setup()
        await self.queue.run(task_status=task_status)

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop taking requests; let those in flight finish for up to ``timeout``, then return them."""
        await self.queue.drain(timeout)

    async def _handle(self, msg: Msg) -> None:
        """One request, settled here; an unexpected error is the work queue's (a delayed nak)."""
        try:
            if tracing():
                with step_span("notifier send", msg.headers, {"messaging.destination.name": msg.subject,
                                                              "messaging.consumer.group.name": "notifier"}):
                    await self._process(msg)
            else:  # no span to open: spare a send the context manager and its attributes
                await self._process(msg)
        except _Defer as d:
            await settle(msg.nak(delay=d.delay))
        except _Superseded:
            log.warning("send request at stream sequence %s: another worker took it over; left to it",
                        stream_seq(msg))

    # ------------------------------------------------------------------ one request

    async def _process(self, msg: Msg) -> None:
        now = self.clock()
        try:
            req = _decode_request(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await self._dead_letter(msg, f"undecodable send request: {exc}", now, cause="undecodable")
            await msg.ack()
            return
        key: SenderKey = (req.receiver, str(req.integration.kind), req.integration.index)
        if tracing():
            annotate({**payload_attributes(req), "tocsin.receiver": req.receiver,
                      "tocsin.integration": integration_name(req)})
        sender = self.senders.get(key, req.org)
        if sender is None:
            await self._dead_letter(msg, f"no integration {req.receiver}/{integration_name(req)} in the loaded "
                                    "configuration", now, cause="unknown_integration", send_id=req.id)
            await msg.ack()
            return
        selected = select_alerts(req, sender.send_resolved)
        if selected is None:
            await self._skip(msg, core.Skip("nothing_to_send"))
            return

        found: tuple[int, LedgerRecord] | None = None
        # a redelivery (or a ledger with records of the layout before, which a claim's
        # compare-and-set does not see) reads first, from the leader: a lagging replica
        # could say "sending" for "sent"
        if num_delivered(msg) > 1 or self.ledger.legacy:
            found = await self.ledger.read_latest(req.id, org=req.org, group_key=req.group_key)
            skip = core.admit(found[1] if found is not None else None)
            if skip is not None:
                await self._skip(msg, skip)
                return

        await self._gate(key)
        try:
            claimed = await self._claim(req, found, now)
        except BaseException:
            self.gates.breaker(key).release(self.clock())
            raise
        if isinstance(claimed, core.Skip):
            self.gates.breaker(key).release(self.clock())
            await self._skip(msg, claimed)
            return
        seq, record = claimed
        unfinished = core.resume_give_up(record)
        if unfinished is not None:  # a worker died handing the failure over: finish that, send nothing
            self.gates.breaker(key).release(self.clock())
            await self._give_up(msg, selected, record, seq, unfinished)
            return
        await self._deliver(msg, selected, sender, record, seq)

    async def _skip(self, msg: Msg, skip: core.Skip) -> None:
        self.metrics.skipped.labels(skip.why).inc()
        await msg.ack()

    async def _gate(self, key: SenderKey) -> None:
        """Wait for the endpoint's breaker and rate limit; raise :class:`_Defer` for long waits."""
        while True:
            wait, cause = self.gates.wait(key, self.clock())
            decision = core.gate(wait, cause, max_wait_in_process=self.settings.max_wait_in_process,
                                 rand=self.rand())
            if isinstance(decision, core.Go):
                return
            if isinstance(decision, core.Defer):
                self.metrics.deferred.labels(key[1], decision.cause).inc()
                raise _Defer(decision)
            await anyio.sleep(decision.seconds)

    async def _claim(self, req: SendRequest, found: tuple[int, LedgerRecord] | None,
                     now: float) -> tuple[int, LedgerRecord] | core.Skip:
        """Write ``sending`` before the first attempt (``core.claim``); ``Skip`` when the send is final."""
        decision: core.Claim | core.Skip | core.Defer = core.claim(req, found, now)
        while isinstance(decision, core.Claim):
            seq = await self.ledger.write(decision.record, expect=decision.expect)
            if seq is not None:
                return seq, decision.record
            latest = await self.ledger.read_latest(req.id, org=req.org, group_key=req.group_key)
            decision = core.claim_lost(req, decision, latest, now)
        if isinstance(decision, core.Defer):
            raise _Defer(decision)
        return decision

    async def _rewrite(self, record: LedgerRecord, seq: int) -> int:
        """Write the next record of a send this worker holds (claimed at ``seq``); its new sequence."""
        new = await self.ledger.write(record, expect=seq)
        if new is None:
            raise _Superseded()
        return new

    async def _deliver(self, msg: Msg, req: SendRequest, sender: Sender, record: LedgerRecord, seq: int) -> None:
        key = sender.key
        kind = key[1]
        gated = True  # _process passed the gate for the first attempt
        if record.attempts == 0:  # a notification, counted once (a redelivered one resumes)
            self.metrics.notifications.labels(kind).inc()
        while True:
            if not gated:
                try:
                    await self._gate(key)
                except _Defer:
                    # keep what was spent; the redelivery resumes from this record
                    await self._rewrite(msgspec.structs.replace(record, at=self.clock()), seq)
                    raise
            gated = False
            started = self.clock()
            t0 = time.perf_counter()
            render_errors: list[str] = []
            reset = RENDER_ERRORS.set(render_errors)
            try:
                if tracing():
                    outcome = await self._traced_attempt(sender, req, started, kind, record.attempts + 1)
                else:
                    outcome = await attempt(sender, req, started)
            except anyio.get_cancelled_exc_class():
                # stopped (drained) mid-attempt: record it, so the attempt count stays true
                self.gates.breaker(key).release(self.clock())
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    now = self.clock()
                    cut, counted = core.cut_attempt(record, now)
                    self._observe(kind, cut, time.perf_counter() - t0)
                    await self.ledger.log(core.attempt_record(req, record, counted.attempts, cut, now,
                                                              time.perf_counter() - t0))
                    await self.ledger.write(counted, expect=seq)
                raise
            except BaseException:
                self.gates.breaker(key).release(self.clock())
                raise
            finally:
                RENDER_ERRORS.reset(reset)
            duration = time.perf_counter() - t0
            now = self.clock()
            self._observe(kind, outcome, duration)
            breaker = self.gates.breaker(key)
            if core.endpoint_failed(outcome):
                breaker.failure(now)
            else:
                breaker.success(now)
            if not outcome.ok:  # a success's log entry is its "sent" record (one write fewer)
                await self.ledger.log(core.attempt_record(req, record, record.attempts + 1, outcome, now, duration,
                                                          render_errors))
            decision = core.after_attempt(record, outcome, self.budget, now=now, duration=duration,
                                          rand=self.rand(), template_errors=render_errors)
            if isinstance(decision, core.Sent):
                delay = self._delays.get(kind)
                if delay is None:  # labels() takes a lock and a lookup: keep the child per kind
                    delay = self._delays[kind] = self.metrics.delay.labels(kind)
                delay.observe(max(0.0, now - req.created_at))
                await self.ledger.write_unconfirmed(decision.record)
                await msg.ack()
                # at debug level, as Alertmanager logs it (a line per notification costs a burst's CPU)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("Notify success", extra={"receiver": req.receiver, "integration": record.integration,
                                                       "group_key": req.group_key, "send_id": req.id,
                                                       "status": "sent", "attempts": decision.record.attempts})
                return
            if isinstance(decision, core.GiveUp):
                seq = await self._rewrite(decision.record, seq)  # a crash from here on redoes the hand-off
                await self._give_up(msg, req, decision.record, seq, outcome)
                return
            record = decision.record
            log.info("send %s to %s/%s failed (%s), retry %d in %.2fs", req.id, req.receiver, kind,
                     outcome.error, record.attempts, decision.delay)
            annotate({"tocsin.attempts": record.attempts}, event=f"retry in {decision.delay:.2f}s")
            seq = await self._rewrite(record, seq)
            await anyio.sleep(decision.delay)

    async def _traced_attempt(self, sender: Sender, req: SendRequest, started: float, kind: str,
                              number: int) -> Outcome:
        """:func:`attempt` in a ``POST <kind>`` span (no URL: a webhook's carries its token)."""
        with child_span(f"POST {kind}", {"http.request.method": "POST", "tocsin.integration": kind,
                                         "tocsin.attempt": number}, kind=SpanKind.CLIENT) as span:
            outcome = await attempt(sender, req, started)
            if span is not None:
                if outcome.status:
                    span.set_attribute("http.response.status_code", outcome.status)
                if not outcome.ok:
                    span.set_attribute("error.type", outcome.verdict.reason or "error")
                    span.set_status(StatusCode.ERROR, outcome.error[:200])
        return outcome

    def _observe(self, kind: str, outcome: Outcome, duration: float) -> None:
        """One attempt (a request to the integration)."""
        children = self._children.get(kind)
        if children is None:
            children = self._children[kind] = (self.metrics.requests.labels(kind),
                                               self.metrics.latency.labels(kind))
        children[0].inc()
        children[1].observe(duration)
        if not outcome.ok:
            self.metrics.requests_failed.labels(kind).inc()

    async def _give_up(self, msg: Msg, req: SendRequest, record: LedgerRecord, seq: int, outcome: Outcome) -> None:
        """Execute ``core.give_up``: publish the fallback sends, dead-letter, log, record, ack."""
        now = self.clock()
        fallback = self.settings.fallbacks.get(req.receiver, "")
        targets = self.senders.for_receiver(fallback, req.org) if fallback else []
        if fallback and not targets:
            log.error("fallback receiver %r of %r has no deliverable integration", fallback, req.receiver)
        plan = core.give_up(req, record, outcome, fallback=fallback, targets=[t.key for t in targets], now=now)
        p = SENDS.partition_of_subject(msg.subject) if msg.subject.startswith(f"{SENDS.prefix}.out.") else 0
        for fb in plan.requests:
            await self.js.publish(SENDS.out(p, "fallback", fb.id), encode(fb), headers={"Nats-Msg-Id": fb.id})
        if plan.requests:
            self.metrics.fallbacks.labels(fallback).inc()
        self.metrics.failed.labels(req.integration.kind, outcome.verdict.reason or "other").inc()
        await self._dead_letter(msg, plan.reason, now, cause=plan.cause, send_id=req.id)
        await self.ledger.log(plan.entry)
        await self._rewrite(plan.record, seq)
        log.warning("Notify failed: %s", plan.reason, extra={
            "receiver": req.receiver, "integration": record.integration, "group_key": req.group_key,
            "send_id": req.id, "status": plan.record.state, "code": outcome.status, "attempts": record.attempts})
        await msg.ack()

    async def _dead_letter(self, msg: Msg, reason: str, now: float, *, cause: str, send_id: str = "") -> None:
        seq = stream_seq(msg)
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        dl = DeadLetter(stage="notifier", reason=reason, subject=msg.subject, stream_seq=seq, payload=msg.data,
                        headers=headers, at=now, key=send_id)
        msg_id = f"notifier-dlq:{send_id}" if send_id else f"notifier-dlq:seq:{seq}"
        await self.js.publish(SENDS.dlq("notifier", msg_id), encode(dl), headers={"Nats-Msg-Id": msg_id})
        self.metrics.dead_letters.labels(cause).inc()
