"""Alertmanager's semantics for alerts pushed through ``POST /api/v2/alerts``.

Three steps, as Alertmanager takes them (``api/v2`` postAlertsHandler, ``provider/mem``
``Alerts.Put`` and ``alert.Alert.Merge``), with ``now`` the time of the push:

1. :func:`prepare` fills in the times: a missing startsAt is endsAt when that is given,
   else now; a missing endsAt is ``now + resolve_timeout`` and marks the alert as
   timing out. Empty label values are dropped (they are absent labels), then the alert is
   validated: at least one label, no empty names, endsAt not before startsAt.
2. :func:`put` decides between merging with the stored alert and replacing it: the two
   merge only when their activity ranges overlap (the new end or the new start falls
   strictly inside the stored [start, end]); otherwise the push replaces what was stored,
   which is how a resolved alert that fires again becomes a new occurrence.
3. :func:`merge` keeps the earliest startsAt and takes everything else (annotations,
   generatorURL) from the younger of the two by update time. For endsAt: when the younger
   is resolved, the later end wins only if both are resolved; when the younger is still
   firing, an older end that is later wins only if it was explicit (not a timeout).

"Resolved" is Alertmanager's ``Resolved()``: an end at or before ``now``. A stored alert
whose end is None (an open-ended event alert) counts as ending at +infinity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from contracts.messages import PushedAlert

__all__ = ["InvalidAlert", "Posted", "is_resolved", "merge", "overlaps", "prepare", "put"]

_INF = math.inf


class InvalidAlert(ValueError):
    """A pushed alert Alertmanager's API would refuse (the message says why)."""


class Posted(msgspec.Struct, frozen=True, kw_only=True):
    """An alert's content and time span, as pushed or as stored, ready to merge."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None  # None only for a stored open-ended (event) alert
    generator_url: str = ""
    timeout: bool = False
    updated_at: float = 0.0


def is_resolved(ends_at: float | None, now: float) -> bool:
    """Alertmanager's ``Resolved()``: the end is known and not after ``now``."""
    return ends_at is not None and ends_at <= now


def prepare(alert: PushedAlert, now: float, resolve_timeout: float) -> Posted:
    """The alert as Alertmanager stores it after its API handled the push at ``now``."""
    labels = {name: value for name, value in alert.labels.items() if value != ""}
    if not labels:
        raise InvalidAlert("at least one label pair required")
    if "" in labels:
        raise InvalidAlert("invalid label set: empty label name")
    if "" in alert.annotations:
        raise InvalidAlert("invalid annotations: empty annotation name")
    for name, t in (("startsAt", alert.starts_at), ("endsAt", alert.ends_at)):
        if t is not None and not math.isfinite(t):
            raise InvalidAlert(f"{name} is not a finite time")
    ends_at = alert.ends_at
    starts_at = alert.starts_at
    if starts_at is None:
        starts_at = now if ends_at is None else ends_at
    timeout = ends_at is None
    if ends_at is None:
        ends_at = now + resolve_timeout
    if ends_at < starts_at:
        raise InvalidAlert("start time must be before end time")
    return Posted(
        labels=labels,
        annotations=dict(alert.annotations),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=alert.generator_url,
        timeout=timeout,
        updated_at=now,
    )


def _end(ends_at: float | None) -> float:
    return _INF if ends_at is None else ends_at


def overlaps(old: Posted, new: Posted) -> bool:
    """True when ``new`` continues ``old``: its end or its start lies strictly inside old's span."""
    old_end = _end(old.ends_at)
    return (old.starts_at < _end(new.ends_at) < old_end) or (old.starts_at < new.starts_at < old_end)


def merge(a: Posted, o: Posted, now: float) -> Posted:
    """Merge two versions of one alert (same labels); ``o`` is normally the newer push."""
    if o.updated_at < a.updated_at:
        a, o = o, a  # o is always the younger by update time
    starts_at = min(a.starts_at, o.starts_at)
    ends_at = o.ends_at
    if is_resolved(o.ends_at, now):
        # Both resolved: the latest explicit resolve time wins.
        if is_resolved(a.ends_at, now) and _end(a.ends_at) > _end(o.ends_at):
            ends_at = a.ends_at
    elif _end(a.ends_at) > _end(o.ends_at) and not a.timeout:
        # Still firing: a later end that was set explicitly (not by timeout) rules.
        ends_at = a.ends_at
    return msgspec.structs.replace(o, starts_at=starts_at, ends_at=ends_at)


def put(old: Posted | None, new: Posted, now: float) -> Posted:
    """What the store holds after ``new`` is pushed on top of ``old`` (None: nothing stored)."""
    if old is not None and overlaps(old, new):
        return merge(old, new, now)
    return new
