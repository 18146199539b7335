"""A work-queue consumer: any replica takes any message, a fixed pool of tasks works on them.

Every replica binds the same durable pull consumer (explicit acks, unlimited redeliveries),
so a message goes to whichever replica asks first; one that is not acknowledged within
``ack_wait`` (its replica died) goes to another. What the notifier uses; the partitioned
stages use ``partition`` and ``pull`` instead (one owner per partition, in order).

Concurrency is a fixed pool of ``concurrency`` tasks (no task, timer or random id per
message, as nats-py's ``fetch`` would cost). A pull loop keeps raw pull requests open for as
many messages as fit in ``concurrency`` plus a prefetch of half as many, in batches, each
pull expiring after ``fetch_timeout``; the subscription's callback hands each message to an
idle task or queues it, and a task that finishes takes the next queued one without waiting.
Messages held longer than a quarter of ``ack_wait`` get in-progress acks.

The handler settles (acks or naks) each message itself. When it raises, the message is
returned with a delay (``error_delay``) and the error logged: a consumer never crashes on
one message. :meth:`WorkQueue.drain` stops the pulls, lets the handlers finish for a while,
then cancels them; a cancelled handler's message is returned at once, to another replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .pull import asked_after_status

__all__ = ["WorkQueue", "ensure_work_consumer", "num_delivered", "settle", "stream_seq"]

log = logging.getLogger("tocsin.runtime.workqueue")


async def ensure_work_consumer(js: JetStreamContext, stream: str, consumer: str, *, filter_subject: str,
                               ack_wait: float, max_ack_pending: int, max_waiting: int = 512) -> None:
    """Create the shared durable consumer, or bring its settings up to date (idempotent)."""
    cfg = ConsumerConfig(durable_name=consumer, filter_subject=filter_subject, ack_policy=AckPolicy.EXPLICIT,
                         deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait, max_deliver=-1,
                         max_ack_pending=max_ack_pending, max_waiting=max_waiting)
    await js.add_consumer(stream, cfg)


async def settle(aw: Awaitable[Any]) -> None:
    """Await an ack or nak; a failure (a lost connection) is logged: the ack wait returns the message."""
    try:
        await aw
    except Exception as exc:
        log.warning("ack/nak failed: %s", exc)


def _ack_tokens(msg: Msg) -> list[str]:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>, or
    # with <domain>.<account hash> after ACK (and maybe a random token last): 11 or 12 tokens
    tokens = (msg.reply or "").split(".")
    return tokens[2:] if len(tokens) == 9 else tokens[4:] if len(tokens) >= 11 else []


def stream_seq(msg: Msg) -> int:
    """The message's stream sequence, from its ack subject (0 when it has none)."""
    tokens = _ack_tokens(msg)
    return int(tokens[3]) if tokens and tokens[3].isdigit() else 0


def num_delivered(msg: Msg) -> int:
    """How many times the message was delivered (cheaper than ``msg.metadata``, which parses everything)."""
    tokens = _ack_tokens(msg)
    return int(tokens[2]) if tokens and tokens[2].isdigit() else 1


class WorkQueue:
    """One replica's consumer loop over a shared durable consumer (see the module doc)."""

    def __init__(self, nc: NATS, stream: str, consumer: str, handler: Callable[[Msg], Awaitable[None]], *,
                 concurrency: int, ack_wait: float, fetch_timeout: float = 1.0, error_delay: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.handler = handler
        self.concurrency = concurrency
        self.ack_wait = ack_wait
        self.fetch_timeout = fetch_timeout
        self.error_delay = error_delay
        self.clock = clock
        self.in_flight: dict[int, tuple[Msg, float]] = {}  # by id(msg): fetched, not settled
        self.ready = False
        self._fetch_scope = anyio.CancelScope()
        self._handlers_scope = anyio.CancelScope()
        self._stopping = False
        self._fetch_done = anyio.Event()
        self._limit = concurrency + max(1, concurrency // 2)  # held at most: in flight plus prefetched
        self._batch_min = max(1, min(32, concurrency // 4))
        self._asked = 0  # messages asked for by pulls that have not ended
        self._pulled_at = 0.0  # monotonic time of the last pull
        self._pull_wake = asyncio.Event()
        self._pause_pulls = False
        self._queue: deque[Msg] = deque()  # fetched, waiting for a task
        self._idle: deque[asyncio.Future[Msg | None]] = deque()  # tasks waiting for a message
        self._closed = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, cb=self._on_delivery)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._heartbeat)
                with self._handlers_scope:
                    async with anyio.create_task_group() as pool:
                        for _ in range(self.concurrency):
                            pool.start_soon(self._serve)
                        self.ready = True
                        task_status.started()
                        with self._fetch_scope:
                            try:
                                await self._pull_loop(inbox)
                            finally:
                                self._fetch_done.set()
                        self._close_queue()  # drained: the pool ends once the fetched messages are done
                outer.cancel_scope.cancel()
        finally:
            self.ready = False
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop taking messages; let those in flight finish for up to ``timeout``, then nak them.

        The pull loop waits for its open pulls to end (at most ``fetch_timeout``) rather than
        being cancelled: a pull left open at the server would swallow messages naked
        meanwhile, and they would wait out the ack wait instead of going to another replica.
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
        with anyio.move_on_after(3.0):  # the cancelled handlers record what they were doing and nak
            while self.in_flight:
                await anyio.sleep(0.02)
        for msg, _ in list(self.in_flight.values()):  # fetched but never started
            await settle(msg.nak())
        self.in_flight.clear()

    async def _pull_loop(self, inbox: str) -> None:
        """Keep pulls open for as many messages as fit (see the module doc), until stopped."""
        expires = int(self.fetch_timeout * 1e9)  # nanoseconds
        while not self._stopping:
            self._pull_wake.clear()
            now = time.monotonic()
            if self._asked and now - self._pulled_at > self.fetch_timeout + 1.0:
                self._asked = 0  # every pull has expired by now; the answers saying so were lost (a reconnect)
            want = self._limit - len(self.in_flight) - self._asked
            if want >= self._batch_min or (want > 0 and not self._asked):
                try:
                    await self.nc.publish(self.api, b'{"batch":%d,"expires":%d}' % (want, expires), reply=inbox)
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
        # let the open pulls end (their last messages go to the tasks still running)
        with anyio.move_on_after(max(0.0, self._pulled_at + self.fetch_timeout + 0.5 - time.monotonic())):
            while self._asked > 0:
                self._pull_wake.clear()
                await self._pull_wake.wait()

    async def _on_delivery(self, msg: Msg) -> None:
        """The subscription's callback: a message, or a status ending a pull."""
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
        """In-progress acks for messages held longer than a quarter of ``ack_wait``."""
        every = max(1.0, self.ack_wait / 4)
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
            await self.handler(msg)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await settle(msg.nak())  # drained: another replica takes it now
            raise
        except Exception:
            log.exception("message at stream sequence %s failed; returned for retry", stream_seq(msg))
            await settle(msg.nak(delay=self.error_delay))
        finally:
            self.in_flight.pop(id(msg), None)
            if self._limit - len(self.in_flight) - self._asked >= self._batch_min:
                self._pull_wake.set()
