"""Quiet groups: the filter re-evaluates them on their grid, where Alertmanager would.

Alertmanager runs a group's notification pipeline on every ``group_interval`` tick. The
router flushes a group only when something in it changed (:mod:`stages.router.groups`);
on the other ticks Alertmanager's pipeline can only notify for two reasons, both known
here: the repeat interval passed, or the muting of an alert changed (a silence, an
inhibition, an acknowledgement or a time interval ended). So the filter keeps each
group's last flush (:class:`LastFlush`, its firing alerts) and a timer at the tick it must
be looked at again:

- every tick, while an alert of it is not in an integration's notification log (it was
  muted, or the group was never notified): an unmute notifies at the next tick;
- otherwise at the first tick after the repeat interval (or the log entry's expiry).

A re-evaluation is the filter's ordinary flush evaluation at the tick's time. Its timer
fires a moment after the tick (:func:`tick_grace`), so a flush the router makes at the
same tick arrives first and replaces it; send ids of a re-evaluation end in
``<flush_seq>.<tick number>``.
"""

from __future__ import annotations

import math

import msgspec

from contracts.messages import GroupFlush

__all__ = ["LastFlush", "first_tick_after", "first_tick_from", "last_flush_key", "send_seq", "tick_grace"]


def last_flush_key(org: str, group_id: str) -> str:
    return f"flush/{org}/{group_id}"


def send_seq(flush_seq: int, tick: int) -> str:
    """The flush part of a send id: the router's flush sequence, ``.<k>`` for the filter's
    re-evaluation ``k`` ticks after that flush."""
    return f"{flush_seq}.{tick}" if tick else str(flush_seq)


def tick_grace(group_interval: float) -> float:
    """How long after a tick its re-evaluation waits for a flush of the router at that tick."""
    return min(group_interval / 4, 1.0)


def first_tick_after(t: float, interval: float, x: float) -> float:
    """The first tick ``t + k * interval`` (k >= 1) strictly after ``x``."""
    k = max(1, math.floor((x - t) / interval) + 1)
    g = t + k * interval
    return g if g > x else g + interval


def first_tick_from(t: float, interval: float, x: float) -> float:
    """The first tick ``t + k * interval`` (k >= 1) at or after ``x``."""
    k = max(1, math.ceil((x - t) / interval))
    g = t + k * interval
    return g if g >= x else g + interval


class LastFlush(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="l"):
    """A group's last flush from the router (firing alerts only) and its next re-evaluation."""

    flush: GroupFlush
    next: float | None  # the tick to re-evaluate it at; None: not before the router flushes

    @property
    def due_at(self) -> float | None:
        return None if self.next is None else self.next + tick_grace(self.flush.group_interval)
