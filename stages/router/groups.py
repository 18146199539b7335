"""Aggregation groups: insert an alert, flush a group, retire it, and the read view of groups.

This is Alertmanager's ``aggrGroup`` over durable state (see :mod:`stages.router.state`):

- a new group's first flush is due ``group_wait`` after its creation, or at once when an
  alert inserted before the first flush started more than ``group_wait`` ago;
- then on a grid of ``group_interval`` ticks while it holds alerts; an alert change never
  brings a flush forward;
- a tick flushes only a group that changed since its last flush (an alert added, updated or
  resolved, its ``ends_at`` included) or was made under another configuration. A group
  with nothing new is *quiet*: it has no timer and costs nothing. Alertmanager re-runs its
  pipeline on every tick of such a group, where only a repeat or a change of muting (a
  silence, inhibition, acknowledgement or time interval) can make it notify; the filter,
  which knows both, re-evaluates quiet groups itself on the same grid (see
  :mod:`stages.filter.ticks`);
- a flush carries every alert of the group (firing ones with ``ends_at`` cleared, as
  Alertmanager sends them), then drops the alerts that were resolved in it; a group left
  empty is deleted and its flush count kept in a :class:`RetiredMark`;
- a group made under another configuration (``GroupHead.cfg`` differs from the table's
  version) is re-checked when it next flushes: every alert is routed again and inserted
  into the groups it now belongs to, alerts that no longer belong here leave, and a group
  left with no alerts is retired without a flush (see :meth:`RouterCore.fire`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

import msgspec

from contracts.messages import Alert, GroupFlush
from pipeline.foundation.runtime.step import Out, Step
from stages.router.config import RouteTable, Target
from stages.router.state import (
    INLINE,
    SHARDS,
    AlertEntry,
    AlertShard,
    GroupHead,
    RetiredMark,
    StateValue,
    group_prefix,
    head_key,
    mark_key,
    shard_key,
    shard_of,
)

__all__ = [
    "GroupView",
    "Txn",
    "alert_order",
    "flush_group",
    "group_alerts",
    "grid_tick",
    "groups_view",
    "insert_alert",
    "quiet_tick",
]

_replace = msgspec.structs.replace


class Txn:
    """The state as seen through the changes of one step, and the step's outputs."""

    __slots__ = ("changes", "outputs", "state")

    def __init__(self, state: Mapping[str, StateValue]) -> None:
        self.state = state
        self.changes: dict[str, StateValue | None] = {}
        self.outputs: list[Out] = []

    def get(self, key: str) -> StateValue | None:
        if key in self.changes:
            return self.changes[key]
        return self.state.get(key)

    def set(self, key: str, value: StateValue | None) -> None:
        if value is None and key not in self.state:
            self.changes.pop(key, None)  # made and dropped within this step: nothing to store
        else:
            self.changes[key] = value

    def result(self) -> Step[StateValue]:
        return Step(changes=self.changes, outputs=self.outputs)


def _same_version(a: AlertEntry, b: AlertEntry) -> bool:
    """Whether two versions of an alert look the same downstream (trace and step time aside)."""
    return (a.updated_at == b.updated_at and a.starts_at == b.starts_at and a.ends_at == b.ends_at
            and a.annotations == b.annotations and a.generator_url == b.generator_url)


def grid_tick(anchor: float, interval: float, at: float) -> float:
    """The first tick at or after ``at`` on the grid ``anchor + k * interval``."""
    if anchor >= at or interval <= 0:
        return max(anchor, at)
    t = anchor + math.ceil((at - anchor) / interval) * interval
    return t if t >= at else t + interval


def group_alerts(view: Txn | Mapping[str, StateValue], gid: str, head: GroupHead) -> dict[str, AlertEntry]:
    """All alerts of a group by fingerprint (its head's, or those of the shards it says are in use)."""
    if head.inline:
        return dict(head.inline)
    get, org, shards = view.get, head.org, head.shards
    out: dict[str, AlertEntry] = {}
    for i in range(SHARDS):
        if shards >> i & 1:
            shard = get(shard_key(org, gid, i))
            if isinstance(shard, AlertShard):
                out.update(shard.alerts)
    return out


def insert_alert(txn: Txn, table: RouteTable, org: str, target: Target, fp: str, entry: AlertEntry,
                 now: float) -> None:
    """Put one version of an alert into the group ``target`` (creating the group if needed).

    A version older than the one held (by ``updated_at``) is ignored; the same version again
    stores nothing but, like any insert, can make a group that has not flushed yet due at once.
    """
    gid, route = target.group_id, target.route
    hkey = head_key(org, gid)
    head = txn.get(hkey)
    if not isinstance(head, GroupHead):
        seq = head.seq if isinstance(head, RetiredMark) else 0  # the new head replaces the mark
        mkey = mark_key(org, gid)  # where older builds kept the mark
        mark = txn.get(mkey)
        if isinstance(mark, RetiredMark):
            seq = max(seq, mark.seq)
            txn.set(mkey, None)
        deadline = now + route.group_wait
        # Alertmanager: an alert older than group_wait, inserted before the first flush, flushes at once.
        if entry.starts_at + route.group_wait < now:
            deadline = min(deadline, now)
        # A new group holds this alert alone, inline (INLINE >= 1): its head is written once.
        txn.set(hkey, GroupHead(org=org, group_key=target.group_key, receiver=route.receiver, route_id=route.id,
                                labels=dict(target.group_labels), created=now, deadline=deadline,
                                seq=seq, flushed=False, shards=0, cfg=table.version(org), dirty=True,
                                interval=route.group_interval, inline={fp: entry}))
        return
    inline = head.shards == 0 and (fp in head.inline or len(head.inline) < INLINE)
    if not inline and head.inline:  # grown past INLINE: its alerts move to shards
        head = _replace(head, inline={}, shards=_write_alerts(txn, org, gid, 0, head.inline, range(SHARDS)))
        txn.set(hkey, head)
    shard_no, skey = 0, ""
    if inline:
        alerts = head.inline
    else:
        shard_no = shard_of(fp)
        skey = shard_key(org, gid, shard_no)
        shard = txn.get(skey) if head.shards >> shard_no & 1 else None
        alerts = shard.alerts if isinstance(shard, AlertShard) else {}
    old = alerts.get(fp)
    if old is not None and old.updated_at > entry.updated_at:
        return
    changed = old is None or not _same_version(old, entry)
    kept_inline = {**alerts, fp: entry} if changed and inline else head.inline
    if changed and not inline:
        txn.set(skey, AlertShard({**alerts, fp: entry}))
    deadline = head.deadline
    # Alertmanager: an alert older than group_wait, inserted before the first flush, flushes at once.
    if not head.flushed and entry.starts_at + route.group_wait < now:
        deadline = min(deadline, now)
    if changed and head.flushed and not head.dirty:  # a quiet group wakes up at its next tick
        deadline = grid_tick(head.deadline, head.interval, now)
    dirty = head.dirty or changed
    shards = head.shards if inline else head.shards | (1 << shard_no)
    if (deadline != head.deadline or shards != head.shards or dirty != head.dirty
            or kept_inline is not head.inline):
        txn.set(hkey, _replace(head, deadline=deadline, shards=shards, dirty=dirty, inline=kept_inline))


def _write_alerts(txn: Txn, org: str, gid: str, before: int, alerts: Mapping[str, AlertEntry],
                  touched: Iterable[int]) -> int:
    """Rewrite the shards in ``touched`` from ``alerts``; return the new shard mask."""
    by_shard: dict[int, dict[str, AlertEntry]] = {}
    for fp, entry in alerts.items():
        by_shard.setdefault(shard_of(fp), {})[fp] = entry
    mask = before
    for i in touched:
        kept = by_shard.get(i)
        txn.set(shard_key(org, gid, i), AlertShard(kept) if kept else None)
        mask = mask | (1 << i) if kept else mask & ~(1 << i)
    return mask


def _retire(txn: Txn, org: str, gid: str, head: GroupHead, seq: int, now: float, retention: float) -> None:
    # The mark takes the head's key: one write retires the group, one re-creates it.
    txn.set(head_key(org, gid), RetiredMark(seq=seq, expires=now + retention) if seq > 0 else None)
    for i in range(SHARDS):
        if head.shards >> i & 1:
            txn.set(shard_key(org, gid, i), None)


def _recheck(txn: Txn, table: RouteTable, gid: str, head: GroupHead, alerts: dict[str, AlertEntry],
             now: float) -> tuple[Target | None, dict[str, AlertEntry]]:
    """Route a stale group's alerts again: re-insert each into every other group it belongs to now.

    Returns this group's target under the current table (None when no alert belongs here
    any more) and the alerts that stay.
    """
    org = head.org
    mine: Target | None = None
    kept: dict[str, AlertEntry] = {}
    for fp in sorted(alerts):  # sorted: new groups are made in the same order on every redo
        entry = alerts[fp]
        for target in table.targets(org, entry.labels):
            if target.group_id == gid:
                mine = mine or target
                kept[fp] = entry
            else:
                insert_alert(txn, table, org, target, fp, entry, now)
    return mine, kept


def flush_group(txn: Txn, table: RouteTable, gid: str, head: GroupHead, now: float, retention: float) -> None:
    """Flush a due group at ``now``: one ``GroupFlush`` output, then drop what it resolved."""
    org = head.org
    alerts = group_alerts(txn, gid, head)
    version = table.version(org)
    route = table.route(org, head.route_id) if head.cfg == version else None
    if route is None:
        target, kept = _recheck(txn, table, gid, head, alerts, now)
        if target is None:
            # An empty flush: nothing to notify, but the filter forgets the group (and stops
            # re-evaluating it on its ticks).
            seq = head.seq + 1
            txn.outputs.append(Out(payload=GroupFlush(
                org=org, group_key=head.group_key, group_id=gid, route_id=head.route_id, receiver=head.receiver,
                group_labels=head.labels, alerts=[], flush_seq=seq, flushed_at=now, group_interval=head.interval,
                repeat_interval=0.0), msg_id=f"router:{org}:{gid}:{seq}", subject=gid))
            _retire(txn, org, gid, head, seq, now, retention)
            return
        route = target.route
        if len(kept) != len(alerts):
            if head.inline:
                head = _replace(head, inline=kept)
            else:
                gone = {shard_of(fp) for fp in alerts.keys() - kept.keys()}
                head = _replace(head, shards=_write_alerts(txn, org, gid, head.shards, kept, gone))
            alerts = kept
    if not alerts:  # never stored so, but a group without alerts has nothing to say
        _retire(txn, org, gid, head, head.seq, now, retention)
        return
    seq = head.seq + 1
    resolved = {fp for fp, e in alerts.items() if e.ends_at is not None and e.ends_at <= now}
    out = [
        Alert(fingerprint=fp, org=org, labels=e.labels, annotations=e.annotations, starts_at=e.starts_at,
              ends_at=e.ends_at if fp in resolved else None, generator_url=e.generator_url,
              updated_at=e.updated_at)
        for fp, e in alerts.items()
    ]
    if len(out) > 1:
        out.sort(key=alert_order)
        last = max(alerts.items(), key=lambda item: (item[1].at, item[0]))[1]
    else:  # (a group of one, the burst's shape: nothing to order)
        last = next(iter(alerts.values()))
    flush = GroupFlush(
        org=org, group_key=head.group_key, group_id=gid, route_id=route.id, receiver=head.receiver,
        group_labels=head.labels, alerts=out, flush_seq=seq, flushed_at=now,
        group_interval=route.group_interval, repeat_interval=route.repeat_interval,
        mute_time_intervals=list(route.mute_time_intervals),
        active_time_intervals=list(route.active_time_intervals), trace=last.trace,
    )
    txn.outputs.append(Out(payload=flush, msg_id=f"router:{org}:{gid}:{seq}", subject=gid))
    if len(resolved) == len(alerts):
        _retire(txn, org, gid, head, seq, now, retention)
        return
    shards, inline = head.shards, head.inline
    remaining = alerts
    if resolved:
        remaining = {fp: e for fp, e in alerts.items() if fp not in resolved}
        if inline:
            inline = remaining
        else:
            shards = _write_alerts(txn, org, gid, shards, remaining, {shard_of(fp) for fp in resolved})
    txn.set(head_key(org, gid), _replace(head, seq=seq, flushed=True, deadline=now + route.group_interval,
                                         shards=shards, inline=inline, route_id=route.id, cfg=version,
                                         dirty=False, interval=route.group_interval,
                                         expiry=_earliest_end(remaining)))


def _earliest_end(alerts: Mapping[str, AlertEntry]) -> float | None:
    """The earliest ``ends_at`` of alerts still firing (a quiet group's timer)."""
    return min((e.ends_at for e in alerts.values() if e.ends_at is not None), default=None)


def quiet_tick(txn: Txn, table: RouteTable, gid: str, head: GroupHead, now: float, retention: float) -> None:
    """A quiet group's tick at its earliest ``ends_at``: flush if an alert resolved by time,
    else only note the next ``ends_at`` (the alert was updated since)."""
    alerts = group_alerts(txn, gid, head)
    if any(e.ends_at is not None and e.ends_at <= now for e in alerts.values()):
        flush_group(txn, table, gid, head, now, retention)
        return
    txn.set(head_key(head.org, gid), _replace(head, expiry=_earliest_end(alerts)))


# --------------------------------------------------------------------------- ordering


def _labelset_cmp(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    """Prometheus' ``LabelSet.Before`` as a comparison: fewer labels first, then the first
    differing label in name order (the set lacking it first, else the smaller value)."""
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    for name in sorted(a.keys() | b.keys()):
        if name not in a:
            return -1
        if name not in b:
            return 1
        va, vb = a[name], b[name]
        if va != vb:
            return -1 if va < vb else 1
    return 0


def _alert_cmp(a: Alert, b: Alert) -> int:
    """Alertmanager's ``AlertSlice`` order: by ``job``, then ``instance`` (alerts having the
    label first), then by label set."""
    for name in ("job", "instance"):
        va, vb = a.labels.get(name), b.labels.get(name)
        if va is None and vb is None:
            continue
        if va is None:
            return 1
        if vb is None:
            return -1
        if va != vb:
            return -1 if va < vb else 1
    return _labelset_cmp(a.labels, b.labels)


alert_order = functools.cmp_to_key(_alert_cmp)


# --------------------------------------------------------------------------- read view


class GroupView(msgspec.Struct, kw_only=True):
    """One aggregation group as ``GET /api/v2/alerts/groups`` shows it."""

    org: str
    group_key: str
    group_id: str
    route_id: str
    receiver: str
    labels: dict[str, str]
    alerts: list[Alert]  # as stored (firing alerts keep their expected ``ends_at``)
    flush_seq: int  # flushes so far
    next_flush: float


def _group_cmp(a: GroupView, b: GroupView) -> int:
    c = _labelset_cmp(a.labels, b.labels)
    if c:
        return c
    return -1 if a.receiver < b.receiver else int(a.receiver > b.receiver)


def groups_view(state: Mapping[str, StateValue], org: str, now: float | None = None) -> list[GroupView]:
    """The current groups of ``org`` with their alerts, in Alertmanager's API order.

    With ``now``, alerts resolved at ``now`` are left out and groups left without alerts
    are skipped, as Alertmanager's API does.
    """
    prefix = group_prefix(org)
    views: list[GroupView] = []
    for key, head in state.items():
        if not isinstance(head, GroupHead) or not key.startswith(prefix) or head.org != org:
            continue
        gid = key[len(prefix):]
        alerts = [
            Alert(fingerprint=fp, org=org, labels=e.labels, annotations=e.annotations, starts_at=e.starts_at,
                  ends_at=e.ends_at, generator_url=e.generator_url, updated_at=e.updated_at)
            for fp, e in group_alerts(state, gid, head).items()
            if now is None or e.ends_at is None or e.ends_at > now
        ]
        if not alerts:
            continue
        alerts.sort(key=alert_order)
        views.append(GroupView(org=org, group_key=head.group_key, group_id=gid, route_id=head.route_id,
                               receiver=head.receiver, labels=head.labels, alerts=alerts, flush_seq=head.seq,
                               next_flush=head.deadline if now is None or head.dirty or not head.flushed
                               else grid_tick(head.deadline, head.interval, now)))
    views.sort(key=functools.cmp_to_key(_group_cmp))
    return views
