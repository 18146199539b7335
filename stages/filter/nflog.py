"""The notification log: what each integration of each group was last told, and whether a
flush must notify again (Alertmanager's ``DedupStage.needsUpdate``).

An entry holds the firing and resolved fingerprints of the last notification and its
time. It expires :func:`entry_life` after it was written; an expired entry is as good as none.

Entry times are the flush times of the notifications (Alertmanager logs the time the
send finished, a little later); ``repeat_interval`` elapses strictly after it, so a group
flushed on a ``group_interval`` grid repeats at the first flush *after* the interval, as
in Alertmanager.
"""

from __future__ import annotations

import enum
from collections.abc import Set

from stages.filter.state import NflogEntry

__all__ = ["NotifyReason", "entry_life", "live_entry", "needs_update", "new_entry"]


class NotifyReason(enum.Enum):
    NONE = "none"
    FIRST_NOTIFICATION = "first notification"
    NEW_ALERTS = "new alerts added"
    NEW_RESOLVED = "some alerts resolved"
    ALL_RESOLVED = "all alerts resolved"
    REPEAT = "repeat interval elapsed"

    def __bool__(self) -> bool:
        return self is not NotifyReason.NONE


def entry_life(repeat_interval: float, group_interval: float, retention: float) -> float:
    """How long an entry lives after it is written.

    Alertmanager's ``SetNotifiesStage`` logs an entry that expires ``2 * repeat_interval``
    later (at most ``retention``), but its log keeps answering with an expired entry until its
    next garbage collection (``--data.maintenance-interval``, 15 minutes), so the group's
    next ticks still see it. Here an expired entry is gone, so it lives at least until one
    tick past the first tick after the repeat interval (``repeat_interval + 2 *
    group_interval``): by then the group has notified again (a new entry), or it needed the
    entry to say that its alerts resolved. With a repeat interval shorter than the group
    interval (1ms in Alertmanager's own tests), ``2 * repeat_interval`` alone expired the
    entry before the next tick and the resolution was never sent.
    """
    if repeat_interval <= 0:
        return retention
    return min(retention, max(2 * repeat_interval, repeat_interval + 2 * max(group_interval, 0.0)))


def live_entry(entry: NflogEntry | None, t: float) -> NflogEntry | None:
    """The entry if it has not expired at ``t``."""
    return entry if entry is not None and entry.expires_at > t else None


def needs_update(entry: NflogEntry | None, firing: Set[str], resolved: Set[str], *, send_resolved: bool,
                 repeat_interval: float, t: float) -> NotifyReason:
    """Whether a flush with these firing and resolved fingerprints must notify, and why."""
    if entry is None:
        # Never notified: only a firing alert is worth a first notification.
        return NotifyReason.FIRST_NOTIFICATION if firing else NotifyReason.NONE
    last_firing = set(entry.firing)
    if not firing <= last_firing:
        # After a notification that all had resolved, new firing alerts start afresh.
        return NotifyReason.NEW_ALERTS if last_firing else NotifyReason.FIRST_NOTIFICATION
    if not firing:
        # All resolved: notify (whatever send_resolved says, so the log forgets the firing
        # alerts) unless the receiver never heard of them firing.
        return NotifyReason.ALL_RESOLVED if last_firing else NotifyReason.NONE
    if send_resolved and not resolved <= set(entry.resolved):
        return NotifyReason.NEW_RESOLVED
    if entry.at < t - repeat_interval:
        return NotifyReason.REPEAT
    return NotifyReason.NONE


def new_entry(firing: Set[str], resolved: Set[str], t: float, *, repeat_interval: float, group_interval: float,
              retention: float) -> NflogEntry:
    """The entry logged for a notification at ``t``."""
    life = entry_life(repeat_interval, group_interval, retention)
    return NflogEntry(firing=sorted(firing), resolved=sorted(resolved), at=t, expires_at=t + life)
