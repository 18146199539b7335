"""Notifier workers: deliver send requests with retries, pacing, fallback and the ledger.

Every worker binds the one durable pull consumer ``notifier`` on ``TOCSIN_SENDS``
(``tocsin.sends.out.>``, explicit acks), so any replica takes any request. A worker keeps at
most ``concurrency`` requests in flight; each goes:

1. decode (a bad message is dead-lettered on ``tocsin.sends.dlq.notifier.<unique>``, then acked);
2. ``select_alerts`` (nothing to send: acked);
3. a redelivered request reads its ledger record from the stream leader: final means acked
   without sending;
4. the endpoint's gates: an open circuit (or a long rate-limit wait) returns the request
   with a delayed nak, before anything is written, and its budget is not spent;
5. the ledger record ``sending`` is written (compare-and-set on the sequence of the record
   the decision was taken on: a stale read cannot lead to a send), then attempts are made,
   each logged; retryable failures wait (backoff with full jitter, or ``Retry-After``)
   while in-progress acks keep the message; the breaker learns from every attempt; the
   records written after a failed attempt are compare-and-sets on the previous one, so a
   worker that lost the send to another (it outlived its ack wait) stops, settling nothing;
6. success: ledger ``sent``, ack. Permanent failure or exhausted budget: the notification is
   published to the fallback receiver's integrations (if configured) as new send requests,
   the failure is dead-lettered, the ledger says ``fallback`` or ``failed``, ack.

Concurrency is a fixed pool of ``concurrency`` tasks in the worker's task group. Requests
come from raw pull requests on one subscription of the worker (nats-py's ``fetch`` costs a
task, a timer and a random id per message): a pull loop asks for as many requests as fit in
``concurrency`` plus a prefetch of half as many, in batches, each pull expiring after
``fetch_timeout``; the subscription's callback hands each request to an idle task or queues
it, and a task that finishes takes the next queued one without waiting. A worker never
crashes on one message: an unexpected error naks it with a delay.
Run one alone with ``python -m stages.notifier.worker --nats-url URL --config.file FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from contracts.messages import DeadLetter, Integration, SendRequest, decode_as, encode
from pipeline.foundation.amconfig.model import Config
from pipeline.foundation.logs import setup_logging
from pipeline.foundation.runtime.jetstream import ensure_stream
from pipeline.foundation.runtime.metrics import REGISTRY
from pipeline.foundation.runtime.pull import asked_after_status
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.telemetry import annotate, child_span, payload_attributes, setup_tracing, step_span

from .breaker import CircuitBreaker, Gates, RetryBudget, TokenBucket, retry_delay
from .classify import Verdict, classify_transport
from .config import NotifierConfig
from .delivery import Outcome, Sender, SenderKey, attempt
from .ledger import AttemptRecord, Ledger, LedgerRecord, decide, ensure_ledger, integration_name
from .payloads import idempotency_key, select_alerts
from .payloads.common import RENDER_ERRORS
from .senders import Senders
from .templates import TEMPLATE_CHECK

__all__ = [
    "CONSUMER",
    "DLQ_FILTER",
    "SENDS",
    "SENDS_FILTER",
    "NotifierMetrics",
    "Worker",
    "fallback_request",
    "main",
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

    def labels(self, *values: str) -> _Both:
        return _Both(tuple(m.labels(*values) for m in self.metrics))


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


_metrics: NotifierMetrics | None = None


def notifier_metrics() -> NotifierMetrics:
    """The process's notifier metrics (Alertmanager's names with ``tocsin_``), created once."""
    global _metrics
    if _metrics is None:
        r = REGISTRY
        _metrics = NotifierMetrics(
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
    return _metrics


def fallback_request(req: SendRequest, receiver: str, kind: str, index: int) -> SendRequest:
    """The send request handing ``req`` to one integration of the fallback ``receiver``
    (a new send with its own deterministic id, ledger record and idempotency key)."""
    return msgspec.structs.replace(req, id=f"{req.id}/fallback/{receiver}/{kind}/{index}", receiver=receiver,
                                   integration=Integration(kind=kind, index=index))


class _Defer(Exception):
    """Return the request to the stream for ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay


class _Superseded(Exception):
    """Another worker took the send over (a ledger write found a newer record): stop, settle nothing."""


class Worker:
    """One notifier worker process's consumer loop (see the module doc)."""

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
        self.fetch_timeout = fetch_timeout
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
        self.in_flight: dict[int, tuple[Msg, float]] = {}  # by id(msg): fetched, not settled
        self.ready = False
        self._fetch_scope = anyio.CancelScope()
        self._handlers_scope = anyio.CancelScope()
        self._stopping = False
        self._fetch_done = anyio.Event()
        concurrency = settings.concurrency
        self._limit = concurrency + max(1, concurrency // 2)  # held at most: in flight plus prefetched
        self._batch_min = max(1, min(32, concurrency // 4))
        self._asked = 0  # requests asked for by pulls that have not ended
        self._pulled_at = 0.0  # monotonic time of the last pull
        self._pull_wake = asyncio.Event()
        self._pause_pulls = False
        self._queue: deque[Msg] = deque()  # fetched, waiting for a task
        self._idle: deque[asyncio.Future[Msg | None]] = deque()  # tasks waiting for a request
        self._closed = False
        self._children: dict[str, tuple[Any, Any]] = {}
        self.metrics.in_flight.set_function(lambda: len(self.in_flight))

    def _bucket(self, key: Any) -> TokenBucket:
        limit = self.settings.rate_limit_for(key[0])
        return TokenBucket(rate=limit.rate, burst=limit.burst)

    # ------------------------------------------------------------------ running

    async def setup(self) -> None:
        await ensure_stream(self.js, SENDS, replicas=self.stream_replicas)
        await ensure_ledger(self.js, replicas=self.stream_replicas, max_age=self.settings.ledger_max_age)
        cfg = ConsumerConfig(durable_name=CONSUMER, filter_subject=SENDS_FILTER, ack_policy=AckPolicy.EXPLICIT,
                             deliver_policy=DeliverPolicy.ALL, ack_wait=self.settings.ack_wait, max_deliver=-1,
                             max_ack_pending=self.settings.max_ack_pending, max_waiting=512)
        await self.js.add_consumer(SENDS.stream, cfg)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.setup()
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=self._on_delivery)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._heartbeat)
                with self._handlers_scope:
                    async with anyio.create_task_group() as pool:
                        # a fixed pool of `concurrency` tasks: no task to create per request
                        for _ in range(self.settings.concurrency):
                            pool.start_soon(self._serve)
                        self.ready = True
                        task_status.started()
                        with self._fetch_scope:
                            try:
                                await self._pull_loop(inbox)
                            finally:
                                self._fetch_done.set()
                        self._close_queue()  # drained: the pool ends once the fetched requests are done
                outer.cancel_scope.cancel()
        finally:
            self.ready = False
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop taking requests; let those in flight finish for up to ``timeout``, then nak them.

        The pull loop waits for its open pulls to end (at most ``fetch_timeout``) rather than
        being cancelled: a pull left open at the server would swallow requests naked
        meanwhile, and they would wait out the ack wait instead of going to another worker.
        """
        self._stopping = True
        self.ready = False
        self._pull_wake.set()
        with anyio.move_on_after(self.fetch_timeout + 1.0):
            await self._fetch_done.wait()
        self._fetch_scope.cancel()
        with anyio.move_on_after(timeout):
            while self.in_flight:
                await anyio.sleep(0.05)
        self._handlers_scope.cancel()
        with anyio.move_on_after(3.0):  # the cancelled handlers record their attempt and nak
            while self.in_flight:
                await anyio.sleep(0.02)
        for msg, _ in list(self.in_flight.values()):  # fetched but never started
            await self._settle(msg.nak())
        self.in_flight.clear()

    async def _pull_loop(self, inbox: str) -> None:
        """Keep pulls open for as many requests as fit (see the module doc), until stopped."""
        api = f"$JS.API.CONSUMER.MSG.NEXT.{SENDS.stream}.{CONSUMER}"
        expires = int(self.fetch_timeout * 1e9)  # nanoseconds
        while not self._stopping:
            self._pull_wake.clear()
            now = time.monotonic()
            if self._asked and now - self._pulled_at > self.fetch_timeout + 1.0:
                self._asked = 0  # every pull has expired by now; the answers saying so were lost (a reconnect)
            want = self._limit - len(self.in_flight) - self._asked
            if want >= self._batch_min or (want > 0 and not self._asked):
                try:
                    await self.nc.publish(api, b'{"batch":%d,"expires":%d}' % (want, expires), reply=inbox)
                except Exception as exc:  # reconnecting...: try again shortly
                    log.warning("pull failed: %s: %s", type(exc).__name__, exc)
                    await anyio.sleep(0.5)
                    continue
                self._asked += want
                self._pulled_at = now
            with anyio.move_on_after(self.fetch_timeout):
                await self._pull_wake.wait()
            if self._pause_pulls:  # the consumer refused a pull: do not ask again at once
                self._pause_pulls = False
                await anyio.sleep(0.5)
        # let the open pulls end (their last requests go to the tasks still running)
        with anyio.move_on_after(max(0.0, self._pulled_at + self.fetch_timeout + 0.5 - time.monotonic())):
            while self._asked > 0:
                self._pull_wake.clear()
                await self._pull_wake.wait()

    async def _on_delivery(self, msg: Msg) -> None:
        """The subscription's callback: a request, or a status ending a pull."""
        if not msg.reply:
            self._on_status(msg)
            return
        if self._asked > 0:
            self._asked -= 1
        self.in_flight[id(msg)] = (msg, self.clock())
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(msg)
                return
        self._queue.append(msg)

    def _on_status(self, msg: Msg) -> None:
        asked = asked_after_status(msg, self._asked)
        if asked is None:  # a heartbeat
            return
        self._asked = asked
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status not in ("404", "408"):
            log.warning("pull ended with status %s %s", status, headers.get("Description", ""))
            self._pause_pulls = True
        self._pull_wake.set()

    def _close_queue(self) -> None:
        self._closed = True
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if queue:
                msg = queue.popleft()
            elif self._closed:
                return
            else:
                waiter: asyncio.Future[Msg | None] = loop.create_future()
                self._idle.append(waiter)
                got = await waiter
                if got is None:
                    return
                msg = got
            await self._handle(msg)

    async def _heartbeat(self) -> None:
        """In-progress acks for requests held longer than a quarter of ``ack_wait``."""
        every = max(1.0, self.settings.ack_wait / 4)
        while True:
            await anyio.sleep(every)
            now = self.clock()
            for m, started in list(self.in_flight.values()):
                if now - started >= every:
                    try:
                        await m.in_progress()
                    except Exception as exc:
                        log.debug("in-progress ack failed: %s", exc)

    async def _handle(self, msg: Msg) -> None:
        try:
            with step_span("notifier send", msg.headers, {"messaging.destination.name": msg.subject,
                                                          "messaging.consumer.group.name": "notifier"}):
                await self._process(msg)
        except _Defer as d:
            await self._settle(msg.nak(delay=d.delay))
        except _Superseded:
            log.warning("send request at stream sequence %s: another worker took it over; left to it",
                        _stream_seq(msg))
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._settle(msg.nak())  # drained: another worker takes it now
            raise
        except Exception:
            log.exception("send request at stream sequence %s failed; returned for retry", _stream_seq(msg))
            await self._settle(msg.nak(delay=5.0))
        finally:
            self.in_flight.pop(id(msg), None)
            if self._limit - len(self.in_flight) - self._asked >= self._batch_min:
                self._pull_wake.set()

    @staticmethod
    async def _settle(aw: Any) -> None:
        try:
            await aw
        except Exception as exc:
            log.warning("ack/nak failed: %s", exc)

    # ------------------------------------------------------------------ one request

    async def _process(self, msg: Msg) -> None:
        now = self.clock()
        try:
            req = decode_as(msg.data, SendRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await self._dead_letter(msg, f"undecodable send request: {exc}", now, cause="undecodable")
            await msg.ack()
            return
        key: SenderKey = (req.receiver, str(req.integration.kind), req.integration.index)
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
            self.metrics.skipped.labels("nothing_to_send").inc()
            await msg.ack()
            return

        found: tuple[int, LedgerRecord] | None = None
        if _num_delivered(msg) > 1:  # from the leader: a lagging replica could say "sending" for "sent"
            found = await self.ledger.read_latest(req.id)
            if found is not None and decide(found[1]) == "done":
                self.metrics.skipped.labels("already_done").inc()
                await msg.ack()
                return

        await self._gate(key)
        try:
            claimed = await self._claim(req, found, now)
        except BaseException:
            self.gates.breaker(key).release(self.clock())
            raise
        if claimed is None:
            self.gates.breaker(key).release(self.clock())
            self.metrics.skipped.labels("already_done").inc()
            await msg.ack()
            return
        seq, record = claimed
        if record.giving_up:  # a worker died handing the failure over: finish that, send nothing
            self.gates.breaker(key).release(self.clock())
            verdict = Verdict(ok=False, retryable=not record.permanent, reason=record.reason)  # type: ignore[arg-type]
            await self._give_up(msg, selected, record, seq, Outcome(verdict, record.last_error))
            return
        await self._deliver(msg, selected, sender, record, seq)

    async def _gate(self, key: SenderKey) -> None:
        """Wait for the endpoint's breaker and rate limit; raise :class:`_Defer` for long waits."""
        while True:
            wait, cause = self.gates.wait(key, self.clock())
            if wait <= 0:
                return
            if cause == "breaker" or wait > self.settings.max_wait_in_process:
                self.metrics.deferred.labels(key[1], cause).inc()
                # spread the returns a little so a reopened endpoint is not hit by all at once
                raise _Defer(wait + self.rand() * min(wait, 1.0))
            await anyio.sleep(wait)

    async def _claim(self, req: SendRequest, found: tuple[int, LedgerRecord] | None,
                     now: float) -> tuple[int, LedgerRecord] | None:
        """Write ``sending`` before the first attempt; None when the send is already final.

        Every claim is a compare-and-set on the sequence of the record it was decided on, so
        a decision taken on a stale read fails here instead of sending.
        """
        if found is None:
            record = LedgerRecord(id=req.id, state="sending", at=now, org=req.org, receiver=req.receiver,
                                  integration=integration_name(req), group_key=req.group_key,
                                  fingerprints=[a.fingerprint for a in req.alerts], first_at=now,
                                  idempotency_key=idempotency_key(req))
            seq = await self.ledger.write(record, expect=0)
            if seq is not None:
                return seq, record
            found = await self.ledger.read_latest(req.id)
            if found is None:
                raise _Defer(1.0)
        prev_seq, prev = found
        if decide(prev) == "done":
            return None
        record = msgspec.structs.replace(prev, at=now)
        seq = await self.ledger.write(record, expect=prev_seq)
        if seq is None:  # written since: finished meanwhile, or another worker holds it; look again later
            latest = await self.ledger.read_latest(req.id)
            if latest is not None and decide(latest[1]) == "done":
                return None
            raise _Defer(5.0)
        return seq, record

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
                # the request to the integration (no URL: a webhook's carries its token)
                with child_span(f"POST {kind}", {"http.request.method": "POST", "tocsin.integration": kind,
                                                 "tocsin.attempt": record.attempts + 1},
                                kind=SpanKind.CLIENT) as span:
                    outcome = await attempt(sender, req, started)
                    if span is not None:
                        if outcome.status:
                            span.set_attribute("http.response.status_code", outcome.status)
                        if not outcome.ok:
                            span.set_attribute("error.type", outcome.verdict.reason or "error")
                            span.set_status(StatusCode.ERROR, outcome.error[:200])
            except anyio.get_cancelled_exc_class():
                # stopped (drained) mid-attempt: record it, so the attempt count stays true
                self.gates.breaker(key).release(self.clock())
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    cut = Outcome(classify_transport("canceled"), "canceled: the worker stopped during the attempt")
                    now = self.clock()
                    self._observe(kind, cut, time.perf_counter() - t0)
                    await self.ledger.log(self._attempt_record(req, record, record.attempts + 1, cut, now,
                                                               time.perf_counter() - t0))
                    await self.ledger.write(msgspec.structs.replace(
                        record, attempts=record.attempts + 1, last_error=cut.error, reason=cut.verdict.reason, at=now),
                        expect=seq)
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
            if outcome.ok or not outcome.verdict.retryable:
                breaker.success(now)  # the endpoint answered; a permanent refusal is about the request
            else:
                breaker.failure(now)
            attempts = record.attempts + 1
            spent = record.spent + duration
            await self.ledger.log(self._attempt_record(req, record, attempts, outcome, now, duration, render_errors))
            if outcome.ok:
                self.metrics.delay.labels(kind).observe(max(0.0, now - req.created_at))
                final = msgspec.structs.replace(record, state="sent", attempts=attempts, spent=spent, at=now)
                await self.ledger.write_unconfirmed(final)
                await msg.ack()
                log.info("Notify success", extra={"receiver": req.receiver, "integration": record.integration,
                                                  "group_key": req.group_key, "send_id": req.id, "status": "sent",
                                                  "attempts": attempts})
                return
            record = msgspec.structs.replace(record, attempts=attempts, spent=spent, last_error=outcome.error,
                                             reason=outcome.verdict.reason, at=now)
            delay = retry_delay(self.budget, outcome.verdict, attempts=attempts, spent=spent, rand=self.rand(),
                                retry_after=outcome.retry_after)
            if delay is None:
                record = msgspec.structs.replace(record, giving_up=True, permanent=not outcome.verdict.retryable)
                seq = await self._rewrite(record, seq)  # a crash from here on redoes the hand-off, not the attempts
                await self._give_up(msg, req, record, seq, outcome)
                return
            log.info("send %s to %s/%s failed (%s), retry %d in %.2fs", req.id, req.receiver, kind,
                     outcome.error, attempts, delay)
            annotate({"tocsin.attempts": attempts}, event=f"retry in {delay:.2f}s")
            record = msgspec.structs.replace(record, spent=spent + delay)
            seq = await self._rewrite(record, seq)
            await anyio.sleep(delay)

    def _observe(self, kind: str, outcome: Outcome, duration: float) -> None:
        """One attempt (a request to the integration)."""
        children = self._children.get(kind)
        if children is None:  # labels() takes a lock and a lookup; keep the children per kind
            children = self._children[kind] = (self.metrics.requests.labels(kind),
                                               self.metrics.latency.labels(kind))
        children[0].inc()
        children[1].observe(duration)
        if not outcome.ok:
            self.metrics.requests_failed.labels(kind).inc()

    @staticmethod
    def _attempt_record(req: SendRequest, record: LedgerRecord, attempt_no: int, outcome: Outcome, now: float,
                        duration: float, template_errors: list[str] | None = None) -> AttemptRecord:
        return AttemptRecord(send_id=req.id, status="sent" if outcome.ok else "failed", at=now, org=req.org,
                             receiver=req.receiver, integration=record.integration, group_key=req.group_key,
                             attempt=attempt_no, error=outcome.error, reason=outcome.verdict.reason,
                             status_code=outcome.status, duration=duration, fingerprints=record.fingerprints,
                             flush_seq=req.flush_seq, template_errors=list(template_errors or ()))

    async def _give_up(self, msg: Msg, req: SendRequest, record: LedgerRecord, seq: int, outcome: Outcome) -> None:
        """Hand the notification to the fallback receiver, dead-letter the failure, record it.

        Publishing first (deduplicated by message id and by the fallback sends' own ledger)
        and recording last makes a crash in between redo the hand-off, never skip it.
        """
        now = self.clock()
        fallback = self.settings.fallbacks.get(req.receiver, "")
        targets = self.senders.for_receiver(fallback, req.org) if fallback else []
        if fallback and not targets:
            log.error("fallback receiver %r of %r has no deliverable integration", fallback, req.receiver)
        p = SENDS.partition_of_subject(msg.subject) if msg.subject.startswith(f"{SENDS.prefix}.out.") else 0
        for target in targets:
            fb = fallback_request(req, target.key[0], target.key[1], target.key[2])
            await self.js.publish(SENDS.out(p, "fallback", fb.id), encode(fb), headers={"Nats-Msg-Id": fb.id})
        if targets:
            self.metrics.fallbacks.labels(fallback).inc()
        exhausted = outcome.verdict.retryable
        self.metrics.failed.labels(req.integration.kind, outcome.verdict.reason or "other").inc()
        why = (f"gave up after {record.attempts} attempt(s) ({'retry budget exhausted' if exhausted else 'permanent'})"
               f": {outcome.error}")
        reason = f"{req.receiver}/{record.integration}: {why}"
        if targets:
            reason += f"; handed to fallback receiver {fallback!r}"
        await self._dead_letter(msg, reason, now, cause="exhausted" if exhausted else "permanent", send_id=req.id)
        state = "fallback" if targets else "failed"
        final = msgspec.structs.replace(record, state=state, at=now, fallback=fallback if targets else "")
        await self.ledger.log(AttemptRecord(send_id=req.id, status="gave_up", at=now, org=req.org,
                                            receiver=req.receiver, integration=record.integration,
                                            group_key=req.group_key, attempt=record.attempts, error=why,
                                            reason=outcome.verdict.reason, fingerprints=record.fingerprints,
                                            flush_seq=req.flush_seq, fallback=fallback if targets else ""))
        await self._rewrite(final, seq)
        log.warning("Notify failed: %s", reason, extra={
            "receiver": req.receiver, "integration": record.integration, "group_key": req.group_key,
            "send_id": req.id, "status": state, "code": outcome.status, "attempts": record.attempts})
        await msg.ack()

    async def _dead_letter(self, msg: Msg, reason: str, now: float, *, cause: str, send_id: str = "") -> None:
        seq = _stream_seq(msg)
        headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
        dl = DeadLetter(stage="notifier", reason=reason, subject=msg.subject, stream_seq=seq, payload=msg.data,
                        headers=headers, at=now, key=send_id)
        msg_id = f"notifier-dlq:{send_id}" if send_id else f"notifier-dlq:seq:{seq}"
        await self.js.publish(SENDS.dlq("notifier", msg_id), encode(dl), headers={"Nats-Msg-Id": msg_id})
        self.metrics.dead_letters.labels(cause).inc()


def _ack_tokens(msg: Msg) -> list[str]:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>, or
    # with <domain>.<account hash> after ACK (and maybe a random token last): 11 or 12 tokens
    tokens = (msg.reply or "").split(".")
    return tokens[2:] if len(tokens) == 9 else tokens[4:] if len(tokens) >= 11 else []


def _stream_seq(msg: Msg) -> int:
    tokens = _ack_tokens(msg)
    return int(tokens[3]) if tokens and tokens[3].isdigit() else 0


def _num_delivered(msg: Msg) -> int:
    """How many times the request was delivered (cheaper than ``msg.metadata``, which parses everything)."""
    tokens = _ack_tokens(msg)
    return int(tokens[2]) if tokens and tokens[2].isdigit() else 1


# --------------------------------------------------------------------------- entry point


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m stages.notifier.worker",
                                 description="Run one notifier worker against an external NATS.")
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--config.file", dest="config_file", required=True, help="alertmanager.yml")
    ap.add_argument("--external-url", default="", help="externalURL of templates and webhooks")
    ap.add_argument("--stream-replicas", type=int, default=1)
    ap.add_argument("--drain-timeout", type=float, default=10.0)
    ap.add_argument("--log-level", default="info")
    return ap.parse_args(argv)


async def _amain(args: argparse.Namespace) -> None:
    from pipeline.foundation.amconfig import load_config
    from pipeline.foundation.runtime.jetstream import connect

    from .service import NotifierOptions, build_notifier

    config = load_config(args.config_file, templates=TEMPLATE_CHECK)
    nc = await connect(args.nats_url, name="tocsin-notifier")
    try:
        options = NotifierOptions(external_url=args.external_url, stream_replicas=args.stream_replicas)
        service = build_notifier(nc, nc.jetstream(), config, options)
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            log.info("notifier worker ready")
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            with anyio.CancelScope(shield=True):
                await service.drain(args.drain_timeout)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await nc.close()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    setup_logging(args.log_level)
    setup_tracing(service_name="tocsin-notifier")
    anyio.run(_amain, args)


if __name__ == "__main__":
    main()
