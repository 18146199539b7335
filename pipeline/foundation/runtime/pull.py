"""A durable pull consumer read with raw pull requests: what a partition's fetch loop uses.

nats-py's ``fetch`` sends a no-wait request and waits for its "no messages" answer before a
lingering one, and waits on every message separately (a timer and a wakeup each): in a
stage's profile a tenth of the process. Here one subscription takes the deliveries in its
callback into a list, and a pull stays open ahead of the reader: messages flow while the
previous batch is being processed, and a batch is whatever arrived since the last one.

A pull asks for ``batch`` messages and expires after ``expires`` seconds; the next is sent
when what is asked and not yet delivered falls under half a batch, and nothing more is asked
while ``2 * batch`` messages wait unread (the reader is the flow control). A status message
ends a pull (408 timeout, 409 a leadership change or too many waiting pulls: ask again; a
deleted consumer is an error the reader sees). A 503 (no responders) means nobody serves the
consumer: a cluster electing its leader, a consumer deleted while no pull of ours waited
(a new owner deletes the previous owner's consumer), or one gone with a restarted server (a
partition's consumer keeps its state in memory). The reader then asks the server about the
consumer: one that does not exist is reported gone at once; otherwise pulls are paced, and
after ``gone_after`` seconds of nothing but 503s the consumer is reported gone.
"""

from __future__ import annotations

import asyncio
import json
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["ConsumerGone", "RawPuller", "asked_after_status"]


class ConsumerGone(Exception):
    """The consumer was deleted (or replaced by a push consumer): bind it again."""


class RawPuller:
    """Batches of messages of one durable pull consumer, in delivery order."""

    def __init__(self, nc: NATS, stream: str, consumer: str, *, batch: int = 256, expires: float = 1.0,
                 gone_after: float = 5.0) -> None:
        self.nc = nc
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._info_api = f"$JS.API.CONSUMER.INFO.{stream}.{consumer}"
        self._ask_info = False  # a 503 came: does the consumer still exist?
        self.batch = batch
        self.expires = expires
        self.gone_after = gone_after
        self._unserved_since = 0.0  # the first of an unbroken run of 503s, or 0
        self._pause_until = 0.0  # no pull before this (after a 503)
        self._received: list[Msg] = []
        self._asked = 0  # asked for and not delivered (nor given up by an ended pull)
        self._pulled_at = 0.0
        self._wake = asyncio.Event()
        self._error: Exception | None = None
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._on_delivery)

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:  # a closed connection: nothing to unsubscribe from
                pass

    async def next_batch(self, timeout: float = 1.0) -> list[Msg]:
        """The messages delivered since the last call (at least one), or [] after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            if self._ask_info:
                await self._check_exists()
                continue
            await self._pull_if_needed()
            if self._received:
                out, self._received = self._received, []
                await self._pull_if_needed()  # keep one open while the caller works on these
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._wake.clear()
            # a timer that wakes the wait (cheaper than wait_for, which this loop would pay per batch)
            timer = asyncio.get_running_loop().call_later(min(left, self.expires), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    async def _check_exists(self) -> None:
        self._ask_info = False
        try:
            reply = await self.nc.request(self._info_api, b"", timeout=1.0)
        except Exception:  # no answer (a cluster electing its leaders): keep pacing the pulls
            return
        error = json.loads(reply.data or b"{}").get("error") or {}
        if error.get("code") == 404:
            self._error = ConsumerGone(f"{self.api}: {error.get('description', 'consumer not found')}")

    async def _pull_if_needed(self) -> None:
        now = time.monotonic()
        if now < self._pause_until:
            return
        if self._asked and now - self._pulled_at > self.expires + 1.0:
            self._asked = 0  # every pull has ended by now; the statuses saying so were lost (a reconnect)
        half = max(1, self.batch // 2)
        want = 2 * self.batch - len(self._received) - self._asked
        if self._asked >= half or want < half:
            return
        want = min(want, self.batch)
        assert self._sub is not None, "start() first"
        await self.nc.publish(self.api, b'{"batch":%d,"expires":%d}' % (want, int(self.expires * 1e9)),
                              reply=self._sub.subject)
        self._asked += want
        self._pulled_at = now

    async def _on_delivery(self, msg: Msg) -> None:
        if msg.reply:
            if self._asked > 0:
                self._asked -= 1
            self._received.append(msg)
            self._unserved_since = 0.0
        else:
            self._on_status(msg)
        self._wake.set()

    def _on_status(self, msg: Msg) -> None:
        asked = asked_after_status(msg, self._asked)
        if asked is None:
            return
        self._asked = asked
        headers = msg.headers or {}
        status, description = headers.get("Status", ""), headers.get("Description", "")
        if status == "409" and ("Deleted" in description or "Push Based" in description):
            self._error = ConsumerGone(f"{self.api}: {status} {description}")
        if status != "503":
            self._unserved_since = 0.0
            return
        now = time.monotonic()
        self._unserved_since = self._unserved_since or now
        if now - self._unserved_since >= self.gone_after:
            self._error = ConsumerGone(f"{self.api}: no responders for {now - self._unserved_since:.1f}s")
        else:
            self._ask_info = self._unserved_since == now  # the first of a run: ask once
            self._pause_until = now + 0.25
            asyncio.get_running_loop().call_later(0.26, self._wake.set)  # the reader pulls again then


def asked_after_status(msg: Msg, asked: int) -> int | None:
    """How many messages are still asked for after a status message that ended a pull
    (``Nats-Pending-Messages``: what it did not deliver; without it, assume none is left);
    None for a heartbeat, which ends nothing."""
    headers = msg.headers or {}
    if headers.get("Status", "") == "100":
        return None
    pending = headers.get("Nats-Pending-Messages")
    if pending is not None and pending.isdigit():
        return max(0, asked - int(pending))
    return 0
