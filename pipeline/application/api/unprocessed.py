"""Alerts accepted by ``POST /api/v2/alerts`` that the rules stage has not applied yet.

Alertmanager puts a pushed alert into its store before it answers, and its API computes an
alert's status when it is read; the state ``unprocessed`` is what its marker says for an
alert no silence or inhibition check has seen yet. Tocsin's store is the rules stage's state
in TOCSIN_ALERTS, one hop behind EVENTS, where a push lands. What ``unprocessed`` means here:

    an alert is *unprocessed* when its push is in EVENTS after the rules stage's progress
    on the organisation's partition (accepted, not yet applied) and the rules state holds
    no firing alert with its fingerprint (a pending update of a known alert leaves the
    known alert, with its status, in the answer).

A read first waits up to ``READ_WAIT`` seconds for the rules stage to reach the last push it
can see, so in normal operation a read after a write sees the alert processed, with its
real status (as in Alertmanager); only when the rules stage lags or is down do accepted
alerts show as ``unprocessed`` instead of missing. They are shown as the rules stage will
store them (the times filled in and merged as Alertmanager does: the rules stage's view
``stages.rules.views.unprocessed_alerts``),
and ``unprocessed=false`` leaves them out. At most ``MAX_PENDING`` pushes per partition are
read, so a long backlog costs a read a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import anyio
import msgspec
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import PushedAlerts, decode
from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.partition import Progress
from pipeline.foundation.runtime.subjects import EVENTS, StreamNames

__all__ = ["MAX_PENDING", "READ_WAIT", "Backlog", "pending_pushes", "wait_for_rules"]

RULES_INPUT = "events"  # the rules stage's input name in its progress record
READ_WAIT = 2.0
MAX_PENDING = 1000
_progress = msgspec.json.Decoder(Progress)


class Backlog(msgspec.Struct, frozen=True):
    """Pushes of one partition the rules stage has not consumed: EVENTS sequences in (consumed, last]."""

    partition: int
    consumed: int
    last: int

    @property
    def empty(self) -> bool:
        return self.last <= self.consumed


async def _last(js: JetStreamContext, stream: str, subject: str) -> tuple[int, bytes] | None:
    try:
        return await last_message(js, stream, subject)
    except NoRespondersError:  # no such stream (yet): the stage never ran
        return None


async def _consumed(js: JetStreamContext, p: int, alerts: StreamNames) -> int:
    raw = await _last(js, alerts.stream, alerts.progress(p))
    return _progress.decode(raw[1]).inputs.get(RULES_INPUT, 0) if raw is not None and raw[1] else 0


async def _last_push(js: JetStreamContext, p: int) -> int:
    raw = await _last(js, EVENTS.stream, EVENTS.out(p, "alerts"))
    return raw[0] if raw is not None else 0


async def wait_for_rules(js: JetStreamContext, partitions: Iterable[int], timeout: float = READ_WAIT, *,
                         alerts: StreamNames) -> list[Backlog]:
    """Wait (up to ``timeout``) until the rules stage consumed every push now in EVENTS for
    ``partitions`` (its progress is in ``alerts``, the rules stage's output stream in this
    deployment); the backlogs left when it did not."""
    lasts = {p: await _last_push(js, p) for p in sorted(set(partitions))}
    backlogs = {p: Backlog(p, 0, last) for p, last in lasts.items() if last}
    give_up = time.monotonic() + timeout
    while True:
        for p, b in list(backlogs.items()):
            backlogs[p] = Backlog(p, await _consumed(js, p, alerts), b.last)
            if backlogs[p].empty:
                del backlogs[p]
        if not backlogs or time.monotonic() >= give_up:
            return list(backlogs.values())
        await anyio.sleep(0.02)


async def pending_pushes(js: JetStreamContext, backlog: Backlog,
                         limit: int = MAX_PENDING) -> list[tuple[float, PushedAlerts]]:
    """The pushes of ``backlog``, oldest first (at most ``limit``), each with the time the
    stream stored it: the ``now`` the rules stage will apply it at."""
    out: list[tuple[float, PushedAlerts]] = []
    seq, subject = backlog.consumed + 1, EVENTS.out(backlog.partition, "alerts")
    while seq <= backlog.last and len(out) < limit:
        try:
            raw = await js.get_msg(EVENTS.stream, seq=seq, subject=subject, next=True, direct=True)
        except (NotFoundError, NoRespondersError):
            break
        if not raw.seq or raw.seq > backlog.last:
            break
        try:
            msg = decode(bytes(raw.data or b""))
        except (msgspec.DecodeError, msgspec.ValidationError):
            msg = None  # not a push this API wrote: the rules stage dead-letters it
        if isinstance(msg, PushedAlerts):
            out.append((raw.time.timestamp() if raw.time else msg.received_at, msg))
        seq = raw.seq + 1
    return out
