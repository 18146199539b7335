"""The pure core of the router stage: Alertmanager's dispatcher and aggregation groups.

Input: ``contracts.AlertChange`` (the rules stage's output). Each alert is routed through
its organisation's tree (:class:`~stages.router.config.RouteTable`); every route it ends in
(several with ``continue: true``) gives a group per (org, receiver, group key) that the
alert is inserted into (:func:`~stages.router.groups.insert_alert`).

Timers: a group head's ``deadline`` is its next tick; :meth:`RouterCore.fire` flushes it
(``GroupFlush`` output, subject suffix = group id, message id
``router:<org>:<group id>:<flush_seq>``) and sets the next tick ``group_interval`` later.
A group with nothing new since its last flush is quiet: no timer (only one at the tick
after its earliest ``ends_at``), until an alert change wakes it for its next tick on the
same grid (see :mod:`stages.router.groups`).
A step never fires a due timer itself: an alert that arrives after a deadline the runtime
has not fired yet joins that flush, as an alert does in Alertmanager while a flush is
pending. A retired-group mark's deadline is its expiry.

Configuration reload: the runtime builds a new core with a new table; state is untouched,
so existing groups keep their deadlines and flush counts (no early flush, no re-send).
A group whose identity (route key, receiver, group labels) survives the reload carries on
as before. A group made under another configuration is re-checked at its next flush:
its alerts are routed again and inserted into the groups they now belong to (new groups
follow the usual rules, so alerts older than group_wait flush at once, as Alertmanager's
re-created groups do after a reload), alerts that no longer route here leave it, and a
group none of whose alerts route here any more is deleted without a last flush (its route
or receiver is gone, which is what Alertmanager does to all groups on reload).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.messages import AlertChange
from pipeline.foundation.runtime.step import Reject, Step
from stages.router.config import RouteTable
from stages.router.groups import Txn, flush_group, grid_tick, insert_alert, quiet_tick
from stages.router.state import AlertEntry, GroupHead, RetiredMark, StateValue

__all__ = ["DEFAULT_RETENTION", "RouterCore"]

# How long a deleted group's flush count is kept: Alertmanager's notification log retention.
DEFAULT_RETENTION = 120 * 3600.0


class RouterCore:
    """StageCore of the router stage (state values: :data:`~stages.router.state.StateValue`)."""

    value_type: Any = StateValue

    def __init__(self, table: RouteTable, *, retention: float = DEFAULT_RETENTION, since: float = 0.0) -> None:
        self.table = table
        self.retention = retention
        self.since = since  # when this configuration took effect (the runner's clock, at start)

    def step(self, state: Mapping[str, StateValue], inp: AlertChange, now: float) -> Step[StateValue]:
        if not isinstance(inp, AlertChange):
            raise Reject(f"the router routes alert changes, not {type(inp).__name__}")
        alert = inp.alert
        if not alert.labels:
            raise Reject(f"alert {alert.fingerprint!r} of {alert.org!r} has no labels")
        entry = AlertEntry(labels=alert.labels, annotations=alert.annotations, starts_at=alert.starts_at,
                           ends_at=alert.ends_at, generator_url=alert.generator_url,
                           updated_at=alert.updated_at, at=now, trace=inp.trace)
        txn = Txn(state)
        for target in self.table.targets(alert.org, alert.labels):
            insert_alert(txn, self.table, alert.org, target, alert.fingerprint, entry, now)
        return txn.result()

    def fire(self, state: Mapping[str, StateValue], key: str, now: float) -> Step[StateValue]:
        value = state.get(key)
        txn = Txn(state)
        if isinstance(value, GroupHead):
            quiet = self._quiet(value)
            due = self._head_deadline(value, quiet)
            if due is not None and due <= now:
                if quiet:
                    quiet_tick(txn, self.table, key.rsplit("/", 1)[1], value, now, self.retention)
                else:
                    flush_group(txn, self.table, key.rsplit("/", 1)[1], value, now, self.retention)
        elif isinstance(value, RetiredMark) and value.expires <= now:
            txn.set(key, None)
        return txn.result()  # anything else: a timer that changed since it was scheduled

    def deadline(self, key: str, value: StateValue) -> float | None:
        if isinstance(value, GroupHead):
            return self._head_deadline(value, self._quiet(value))
        if isinstance(value, RetiredMark):
            return value.expires
        return None  # alert shards have no timer

    def _head_deadline(self, head: GroupHead, quiet: bool) -> float | None:
        if not quiet:
            if head.flushed and not head.dirty:  # quiet, of an older configuration: re-check it
                return grid_tick(head.deadline, head.interval, self.since)  # (not before that took effect)
            return head.deadline
        return None if head.expiry is None else grid_tick(head.deadline, head.interval, head.expiry)

    def _quiet(self, head: GroupHead) -> bool:
        """Flushed, nothing new since, and made under the current configuration (a group of
        an older one is re-checked at its first tick after the configuration took effect)."""
        return head.flushed and not head.dirty and head.cfg == self.table.version(head.org)
