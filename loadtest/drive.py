"""Driving the load: the event log, open-loop pacing, and the two ways events enter the system.

- :class:`CdcSender`: rows committed to the ``events`` table with asyncpg, as an application
  writes them: ``lanes`` connections, each committing whatever is pending (up to
  ``txn_rows`` rows) as one transaction, one multi-row ``INSERT``. An organisation always
  uses the same lane, so its rows commit in the order they were generated. A unique index on
  ``fields->>'lt_id'`` and ``ON CONFLICT DO NOTHING`` make a retried transaction (Postgres
  restarted mid-commit) insert nothing twice. A row's *sent* time is its commit's return.
- :class:`ApiSender`: alerts pushed to ``POST /api/v2/alerts`` as Prometheus does: batches of
  up to 64 alerts, org in the ``org_id`` label, ``lanes`` connections each sending one
  request at a time (an organisation always on the same lane, retried until accepted, so
  its pushes stay in order). The alerts are what the sender's own rule evaluation says
  (:class:`loadtest.oracle.AlertModel`): a fire pushes the firing alert, a resolve pushes
  it with ``endsAt``, a repeated report re-sends the firing alert; an event that changes no
  alert pushes nothing. An event's *sent* time is the start of the request that carried it.

:class:`EventLog` keeps every generated event and its sent time (NaN: not sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec

from loadtest.generator import Fleet, GenEvent
from loadtest.oracle import AlertModel, Change, Lifecycle
from pipeline.foundation.http1 import Http1Connection, HttpError

__all__ = ["ApiSender", "CdcSender", "EventLog", "Sender", "alert_json", "open_loop", "planned_times", "rfc3339"]

log = logging.getLogger("loadtest")

INSERT = """
INSERT INTO events (org_id, resource_kind, resource_name, reason, message, fields, created_at)
SELECT o, k, n, r, m, f::jsonb, to_timestamp(t)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[])
     AS u(o, k, n, r, m, f, t)
ON CONFLICT ((fields->>'lt_id')) DO NOTHING
"""
UNIQUE_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS events_lt_id_idx ON events ((fields->>'lt_id'))"


@dataclass
class EventLog:
    """Every generated event (ids ``"1"``, ``"2"``... in order) and when it was sent."""

    t0: float
    events: list[GenEvent] = field(default_factory=list)
    sent: array[float] = field(default_factory=lambda: array("d"))

    def add(self, ev: GenEvent) -> int:
        i = len(self.events)
        if int(ev.id) != i + 1:
            raise ValueError(f"event ids must be consecutive from 1: got {ev.id} at {i + 1}")
        self.events.append(ev)
        self.sent.append(math.nan)
        return i

    def sent_count(self) -> int:
        return sum(1 for s in self.sent if s == s)

    def sent_events(self) -> Iterable[tuple[GenEvent, float]]:
        """Sent events in sending order per organisation (ids increase per lane)."""
        for ev, s in zip(self.events, self.sent, strict=True):
            if s == s:
                yield ev, s

    def occurred(self, ev: GenEvent) -> float:
        return self.t0 + ev.at


class Sender:
    """What the pacer hands events to."""

    def submit(self, index: int) -> None:
        raise NotImplementedError

    def backlog(self) -> int:
        raise NotImplementedError

    async def run(self) -> None:
        raise NotImplementedError

    async def drain(self, timeout: float) -> bool:
        """Wait until everything submitted is sent; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.backlog():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


def _lane(org: str, lanes: int) -> int:
    return zlib.crc32(org.encode()) % lanes


class CdcSender(Sender):
    def __init__(self, dsn: str, events: EventLog, *, lanes: int = 4, txn_rows: int = 100) -> None:
        self.dsn = dsn
        self.log = events
        self.lanes = lanes
        self.txn_rows = txn_rows
        self.queues: list[deque[int]] = [deque() for _ in range(lanes)]
        self.wake = [asyncio.Event() for _ in range(lanes)]
        self.in_flight = [0] * lanes
        self.transactions = 0
        self.retries = 0
        self.enc = msgspec.json.Encoder()

    async def prepare(self) -> None:
        """The events table (as the source's migration makes it) and the load test's unique index."""
        from stages.source.emit import migrate

        await migrate(self.dsn)
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(UNIQUE_INDEX)
        finally:
            await conn.close()

    def submit(self, index: int) -> None:
        lane = _lane(self.log.events[index].org, self.lanes)
        self.queues[lane].append(index)
        self.wake[lane].set()

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues) + sum(self.in_flight)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.lanes):
                tg.create_task(self._lane_loop(i))

    async def _connect(self) -> asyncpg.Connection:
        while True:
            try:
                return await asyncpg.connect(self.dsn, timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.debug("cdc: connect failed: %r", exc)
                await asyncio.sleep(0.2)

    async def _lane_loop(self, lane: int) -> None:
        q, wake = self.queues[lane], self.wake[lane]
        conn = await self._connect()
        events, sent, t0 = self.log.events, self.log.sent, self.log.t0
        while True:
            if not q:
                wake.clear()
                await wake.wait()
                continue
            batch = [q.popleft() for _ in range(min(self.txn_rows, len(q)))]
            self.in_flight[lane] = len(batch)
            cols: list[list[str]] = [[], [], [], [], [], []]
            times: list[float] = []
            now = time.time()
            for i in batch:
                ev = events[i]
                cols[0].append(ev.org)
                cols[1].append(ev.kind)
                cols[2].append(ev.name)
                cols[3].append(ev.reason)
                cols[4].append(ev.message)
                cols[5].append(self.enc.encode({**ev.fields, "lt_t": round(now, 6)}).decode())
                times.append(t0 + ev.at)
            while True:
                try:
                    async with conn.transaction():
                        await conn.execute(INSERT, *cols, times)
                    break
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self.retries += 1
                    log.info("cdc lane %d: %r; reconnecting and retrying the transaction", lane, exc)
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
                    await asyncio.sleep(0.2)
                    conn = await self._connect()
            done = time.time()
            for i in batch:
                sent[i] = done
            self.transactions += 1
            self.in_flight[lane] = 0


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def alert_json(change: Change) -> bytes:
    """The pushed alert for one change, as Prometheus would post it (times in RFC 3339)."""
    lc: Lifecycle = change.lifecycle
    doc: dict[str, object] = {"labels": lc.labels, "annotations": {"summary": f"lt:{lc.id}"},
                              "startsAt": rfc3339(lc.starts_at)}
    if change.kind == "resolve":
        assert lc.ends_at is not None
        doc["endsAt"] = rfc3339(lc.ends_at)
    return msgspec.json.encode(doc)


class ApiSender(Sender):
    def __init__(self, base_url: str, events: EventLog, *, lanes: int = 4, batch: int = 64,
                 headers: dict[str, str] | None = None) -> None:
        self.url = base_url
        self.log = events
        self.lanes = lanes
        self.batch = batch
        self.headers = headers or {}
        self.model = AlertModel()  # the sender's own rule evaluation (times: event times)
        self.queues: list[deque[tuple[int, bytes]]] = [deque() for _ in range(lanes)]
        self.wake = [asyncio.Event() for _ in range(lanes)]
        self.in_flight = [0] * lanes
        self.requests = 0
        self.alerts = 0
        self.retries = 0
        self.rejected = 0

    def submit(self, index: int) -> None:
        ev = self.log.events[index]
        t = self.log.occurred(ev)
        changes = self.model.apply(ev.id, ev.org, ev.kind, ev.name, ev.reason, ev.message, t, t)
        if not changes:
            return  # nothing to tell an Alertmanager
        lane = _lane(ev.org, self.lanes)
        for c in changes:
            self.queues[lane].append((index, alert_json(c)))
        self.wake[lane].set()

    def backlog(self) -> int:
        return sum(len(q) for q in self.queues) + sum(self.in_flight)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.lanes):
                tg.create_task(self._lane_loop(i))

    async def _lane_loop(self, lane: int) -> None:
        q, wake = self.queues[lane], self.wake[lane]
        conn = Http1Connection(self.url)
        sent = self.log.sent
        try:
            while True:
                if not q:
                    wake.clear()
                    await wake.wait()
                    continue
                items = [q.popleft() for _ in range(min(self.batch, len(q)))]
                self.in_flight[lane] = len(items)
                body = b"[" + b",".join(a for _, a in items) + b"]"
                while True:
                    start = time.time()
                    try:
                        status, text = await conn.post("/api/v2/alerts", body, self.headers)
                    except HttpError as exc:
                        self.retries += 1
                        log.debug("push lane %d: %s; retrying", lane, exc)
                        await asyncio.sleep(0.2)
                        continue
                    if status == 200:
                        break
                    if status in (429, 500, 502, 503, 504):
                        self.retries += 1
                        await asyncio.sleep(0.2)
                        continue
                    self.rejected += len(items)
                    log.warning("push lane %d: %d %s; %d alerts dropped", lane, status, text[:200], len(items))
                    break
                for i, _ in items:
                    sent[i] = start
                self.requests += 1
                self.alerts += len(items)
                self.in_flight[lane] = 0
        finally:
            await conn.close()


def planned_times(steps: Sequence[tuple[float, float]]) -> Iterator[float]:
    """Event times of a piecewise-constant rate: ``steps`` of (events per second, seconds)."""
    start = 0.0
    for rate, seconds in steps:
        if not (rate > 0 and seconds >= 0):
            raise ValueError("steps need a rate > 0 and a duration >= 0")
        for j in range(int(rate * seconds)):
            yield start + j / rate
        start += seconds


async def open_loop(fleet: Fleet, events: EventLog, steps: Sequence[tuple[float, float]], sender: Sender,
                    *, tick: float = 0.005, clock: Callable[[], float] = time.time) -> int:
    """Generate events at the ``steps``' rates from ``events.t0``, handing each to ``sender`` at
    its planned time (late ticks catch up). Returns the count."""
    n = 0
    for at in planned_times(steps):
        while clock() - events.t0 < at:
            await asyncio.sleep(tick)
        sender.submit(events.add(fleet.next_event(at)))
        n += 1
        if n % 256 == 0:
            await asyncio.sleep(0)  # behind schedule: still let the senders run
    return n
