"""The router's state values: group heads, alert shards and retired-group marks.

State keys (``tok`` is ``pipeline.foundation.runtime.subjects.token(org)``, ``gid`` the group id):

- ``group/<tok>/<gid>`` -> :class:`GroupHead`: the group's identity, route, flush count
  and timer (``deadline``);
- ``group/<tok>/<gid>/<x>`` -> :class:`AlertShard`: the group's alerts whose fingerprint
  falls in shard ``x`` (one hex digit). Sharding keeps each value small (state subjects
  are NATS messages, 1 MiB at most) and an alert change rewrites 1/16th of a large group,
  not all of it. A small group (at most :data:`INLINE` alerts, and never more) keeps its
  alerts in its head instead (``GroupHead.inline``), so that an alert change is one state
  write, not two; a group that grows past that moves them to shards for good;
- ``group/<tok>/<gid>`` -> :class:`RetiredMark` in place of the head once the group is
  deleted: its flush count, kept for a retention period so a group re-created with the same
  id continues its ``flush_seq`` instead of reusing message ids (JetStream's duplicate
  window, and downstream ledgers keyed by flush sequence, would drop the reused ones). It
  shares the head's key so that retiring a group and re-creating it are one write each
  (builds before 2026-11-22 kept it at ``group/<tok>/<gid>/n``, still read: :func:`mark_key`).

All are ``array_like`` (positional on the wire), ``frozen`` (a step never mutates state)
and ``gc=False`` (they hold only strings, numbers and flat dicts: no reference cycles, and
100,000s of them stay out of the cyclic collector's way). A tag tells them apart when the
runtime decodes a state subject (``StateValue``).
"""

from __future__ import annotations

import functools
import zlib
from typing import Final

import msgspec

from pipeline.foundation.runtime.subjects import token

__all__ = [
    "INLINE",
    "SHARDS",
    "AlertEntry",
    "AlertShard",
    "GroupHead",
    "RetiredMark",
    "StateValue",
    "group_prefix",
    "head_key",
    "mark_key",
    "shard_key",
    "shard_of",
]

SHARDS: Final = 16
INLINE: Final = 8  # alerts a group may keep in its head

_token = functools.lru_cache(maxsize=1 << 12)(token)  # organisations repeat; the regex check need not


class AlertEntry(msgspec.Struct, array_like=True, gc=False, frozen=True, omit_defaults=True):
    """One alert of a group (its fingerprint is its key in the shard)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    updated_at: float  # the alert's own updated_at (the event time of the change)
    at: float  # event time of the router step that stored this version: orders "the last change"
    trace: dict[str, str] = {}  # trace context of the change that stored this version


class AlertShard(msgspec.Struct, array_like=True, gc=False, frozen=True, tag="s"):
    """The alerts of one group whose fingerprints fall in one shard, by fingerprint."""

    alerts: dict[str, AlertEntry]


class GroupHead(msgspec.Struct, array_like=True, gc=False, frozen=True, tag="g"):
    """An aggregation group: identity, where it routes, its flush count and its timer."""

    org: str
    group_key: str
    receiver: str
    route_id: str  # path id of the route in the org's tree when ``cfg`` was current
    labels: dict[str, str]  # the group labels
    created: float
    deadline: float  # the next flush
    seq: int  # flushes so far (continues a retired group's count)
    flushed: bool  # this incarnation flushed at least once (Alertmanager's hasFlushed)
    shards: int  # bit i set: shard i holds alerts
    cfg: str  # ``RouteTable.version`` the membership of the group was last checked against
    # Added later (defaults: an older head flushes once more, then goes quiet):
    dirty: bool = True  # an alert changed since the last flush (a quiet group has no timer)
    interval: float = 0.0  # the group_interval of its last flush: the grid of its ticks
    expiry: float | None = None  # earliest future ends_at of its alerts (a resolve by time)
    inline: dict[str, AlertEntry] = {}  # a small group's alerts (then ``shards`` is 0)


class RetiredMark(msgspec.Struct, array_like=True, gc=False, frozen=True, tag="r"):
    """The flush count of a deleted group, until ``expires``."""

    seq: int
    expires: float


StateValue = GroupHead | AlertShard | RetiredMark


def group_prefix(org: str) -> str:
    """Every state key of ``org``'s groups starts with this."""
    return f"group/{_token(org)}/"


def head_key(org: str, gid: str) -> str:
    return f"group/{_token(org)}/{gid}"


def shard_key(org: str, gid: str, shard: int) -> str:
    return f"group/{_token(org)}/{gid}/{shard:x}"


def mark_key(org: str, gid: str) -> str:
    """Where older builds kept a retired group's mark (read, moved, deleted)."""
    return f"group/{_token(org)}/{gid}/n"


def shard_of(fingerprint: str) -> int:
    """The shard of an alert: CRC-32 of its fingerprint (stable across processes)."""
    return zlib.crc32(fingerprint.encode()) % SHARDS
