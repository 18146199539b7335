"""Where the latency goes: per-hop times of a sample of firing notifications.

After a run (while the system still runs) the streams are read back for a time window:
every message's JetStream timestamp is when the server stored it, so a firing
notification of lifecycle ``L`` (the event that fired it has ``lt_id == L``; every later
message carries ``summary: "lt:L"``) has these points in time:

1. *sent*: the load generator's commit returned (CDC) or push started (API);
2. *events*: its event (row or push) stored in ``TOCSIN_EVENTS`` by the source / the API;
3. *alerts*: the rules stage's ``fired`` change stored in ``TOCSIN_ALERTS``;
4. *groups*: the router's first flush carrying it firing, in ``TOCSIN_GROUPS``;
5. *sends*: the filter's send request, in ``TOCSIN_SENDS``;
6. *received*: the webhook arrived at the sink.

:func:`hop_points` (pure) extracts the points from decoded messages; :func:`read_window`
reads one stream's output messages between two times.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

__all__ = ["HOPS", "Points", "hop_latencies", "hop_points", "read_window"]

HOPS: Final = ("sent", "events", "alerts", "groups", "sends", "received")
_PREFIX: Final = "lt:"

Points = dict[str, dict[str, float]]  # lifecycle -> hop -> time


class _Annotated(msgspec.Struct):
    annotations: dict[str, str] = {}
    ends_at: float | None = None


class _Msg(msgspec.Struct, tag_field="type"):
    pass


class _Event(_Msg, tag="event.v1"):
    fields: dict[str, Any] = {}


class _Pushed(_Msg, tag="pushed_alerts.v1"):
    alerts: list[_Annotated] = []


class _Change(_Msg, tag="alert_change.v1"):
    change: str = ""
    alert: _Annotated = msgspec.field(default_factory=_Annotated)


class _Flush(_Msg, tag="group_flush.v1"):
    alerts: list[_Annotated] = []


class _Send(_Msg, tag="send_request.v1"):
    status: str = ""
    alerts: list[_Annotated] = []


_DECODER = msgspec.json.Decoder(_Event | _Pushed | _Change | _Flush | _Send)


def _lifecycle(a: _Annotated) -> str:
    s = a.annotations.get("summary", "")
    return s[len(_PREFIX):] if s.startswith(_PREFIX) else ""


def hop_points(stream: str, messages: Iterable[tuple[float, bytes]], sample: set[str], points: Points) -> None:
    """Record, for lifecycles in ``sample``, the first time each appears firing in ``stream``
    (``events``, ``alerts``, ``groups`` or ``sends``); ``messages`` are (timestamp, payload)."""
    for ts, data in messages:
        try:
            msg = _DECODER.decode(data)
        except msgspec.DecodeError:
            continue
        found: list[str] = []
        if isinstance(msg, _Event):
            lt = str(msg.fields.get("lt_id", ""))
            found = [lt]
        elif isinstance(msg, _Pushed):
            found = [_lifecycle(a) for a in msg.alerts if a.ends_at is None]
        elif isinstance(msg, _Change):
            if msg.change == "fired":
                found = [_lifecycle(msg.alert)]
        elif isinstance(msg, _Flush):
            found = [_lifecycle(a) for a in msg.alerts if a.ends_at is None]
        elif isinstance(msg, _Send):
            if msg.status == "firing":
                found = [_lifecycle(a) for a in msg.alerts if a.ends_at is None]
        for lt in found:
            if lt in sample:
                hops = points.setdefault(lt, {})
                hops.setdefault(stream, ts)


def hop_latencies(points: Points, hops_traced: tuple[str, ...] = HOPS) -> dict[str, list[float]]:
    """Seconds spent in each hop (``"sent->events"``...) by the lifecycles that have every point
    of ``hops_traced`` (a chain's deployment has no ``groups``: its flushes are never stored)."""
    out: dict[str, list[float]] = {f"{a}->{b}": [] for a, b in itertools.pairwise(hops_traced)}
    for hops in points.values():
        if not all(h in hops for h in hops_traced):
            continue
        for a, b in itertools.pairwise(hops_traced):
            out[f"{a}->{b}"].append(hops[b] - hops[a])
    return out


async def read_window(nc: Any, stream: str, subject: str, start: float, end: float,
                      idle: float = 2.0) -> list[tuple[float, bytes]]:
    """(timestamp, payload) of the messages of ``subject`` stored from ``start`` until the first
    one after ``end`` (or the stream's end)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    js = nc.jetstream()
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, ack_policy=AckPolicy.NONE,
                            opt_start_time=datetime.fromtimestamp(start, UTC),
                            inactive_threshold=30.0)
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    out: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(1000, timeout=idle)
            except TimeoutError:
                break
            for m in msgs:
                ts = m.metadata.timestamp.timestamp()
                if ts > end:
                    return out
                out.append((ts, m.data))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def sent_points(sample: Mapping[str, float], points: Points) -> None:
    for lt, t in sample.items():
        points.setdefault(lt, {})["sent"] = t
