"""The load test's oracle: which notifications must arrive, and what arrived instead.

It is a small model written from the rules as documented (the brief and the default rule
table of the device platform), deliberately NOT importing the pipeline's stages, so a bug
there cannot hide in here.

**Alert model** (events of one resource in commit order):

- a *fire reason* (``DeviceDisconnected``, ``DeviceCPUWarning``...) fires the alert
  ``{alertname: reason, org_id, resource, resource_kind, severity}`` of its rule group; if the
  group's active alert is another reason, that one resolves at the same moment (exclusive
  group); if it is the same reason, nothing happens (the same occurrence reported again);
- a *resolve reason* (``DeviceConnected``, ``DeviceCPUNormal``...) resolves its group's alert;
- ``ResourceDeleted`` / ``DeviceDecommissioned`` resolve every alert of the resource.

One firing of an alert, from the event that fired it to the event that resolved it, is a
*lifecycle*, named by the id of the event that fired it (the generator puts
``lt:<that id>`` in the summary annotation of every event at a firing level).

**Notification model**, for the route the load test configures (``group_by: ['...']``: one
group per alert; ``group_wait: 0s``; ``repeat_interval`` longer than the run;
``send_resolved: true``): every lifecycle is notified exactly once ``firing`` (the group's
first flush, at once) and, when it resolved, exactly once ``resolved`` (the group's next
``group_interval`` tick, after which the group is gone). This holds when two changes of one
alert are far enough apart that the first is flushed before the second reaches the router
(otherwise Alertmanager semantics legitimately fold them: a firing that resolved before
its first flush is never notified; an alert that fires again before the tick that would
announce its resolution is folded into the same group). The runtime fires a due timer
before any later input, so a fire and its resolve are never folded; an alert must not fire
again within ``group_interval`` of its resolution: the generator's *dwell* (longer than the
interval) guarantees that in event time, and :func:`spacing` measures it on the actual
commit (push) times, so a run shows the precondition held.

:func:`check` compares deliveries (one per alert of each webhook received) with the
expectations: *missing* (never delivered), *duplicated* (delivered under two or more
different idempotency keys; without keys, as Alertmanager sends, delivered twice),
*repeats* (the same idempotency key delivered again: hop C allows this only when a
notifier died during that request), *unexpected* (not expected at all) and latency from
the event's commit (push) to the first delivery.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "FIRE",
    "RESOLVE",
    "RESOLVE_ALL",
    "AlertModel",
    "Change",
    "Delivery",
    "Expectation",
    "Lifecycle",
    "Spacing",
    "Verdict",
    "check",
    "deliveries_from_webhook",
    "expectations",
    "lifecycle_of",
    "spacing",
]

Status = Literal["firing", "resolved"]

# The device platform's alert table (default event rules), written out independently.
FIRE: Final[Mapping[str, tuple[str, str]]] = {  # reason -> (rule group, severity label)
    "DeviceDisconnected": ("connectivity", "critical"),
    "DeviceApplicationError": ("application", "critical"),
    "DeviceApplicationDegraded": ("application", "warning"),
    "DeviceCPUCritical": ("cpu", "critical"),
    "DeviceCPUWarning": ("cpu", "warning"),
    "DeviceMemoryCritical": ("memory", "critical"),
    "DeviceMemoryWarning": ("memory", "warning"),
    "DeviceDiskCritical": ("disk", "critical"),
    "DeviceDiskWarning": ("disk", "warning"),
}
RESOLVE: Final[Mapping[str, str]] = {  # reason -> the rule group it resolves
    "DeviceConnected": "connectivity",
    "DeviceApplicationHealthy": "application",
    "DeviceCPUNormal": "cpu",
    "DeviceMemoryNormal": "memory",
    "DeviceDiskNormal": "disk",
}
RESOLVE_ALL: Final = frozenset({"ResourceDeleted", "DeviceDecommissioned"})
_PREFIX: Final = "lt:"


@dataclass
class Lifecycle:
    """One firing of one alert: fired by event ``id``, resolved by ``resolve_id`` (if it was)."""

    id: str
    labels: dict[str, str]
    starts_at: float
    fire_sent: float
    resolve_id: str | None = None
    ends_at: float | None = None
    resolve_sent: float | None = None


@dataclass(frozen=True)
class Change:
    """What one event did to one alert: ``fire``, ``resolve``, or ``refresh`` (reported again)."""

    kind: Literal["fire", "resolve", "refresh"]
    lifecycle: Lifecycle


class AlertModel:
    """The alert state of every resource, fed events in commit order."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str, str, str], Lifecycle] = {}  # (org, kind, name, group) -> firing
        self.lifecycles: list[Lifecycle] = []
        self.last_time: dict[tuple[str, str, str], float] = {}
        self.out_of_order = 0  # events older than an earlier event of their resource
        self.message_mismatch = 0  # firing-level events whose summary names another lifecycle

    def apply(self, event_id: str, org: str, kind: str, name: str, reason: str, message: str,
              occurred_at: float, sent_at: float) -> list[Change]:
        """The alert changes of one event (``sent_at``: when it was committed or pushed)."""
        resource = (org, kind, name)
        if occurred_at < self.last_time.get(resource, -math.inf):
            self.out_of_order += 1
        self.last_time[resource] = max(occurred_at, self.last_time.get(resource, -math.inf))
        changes: list[Change] = []
        if reason in FIRE:
            group, severity = FIRE[reason]
            key = (*resource, group)
            cur = self.active.get(key)
            if cur is not None and cur.labels["alertname"] == reason:
                if message != _PREFIX + cur.id:
                    self.message_mismatch += 1
                return [Change("refresh", cur)]
            if cur is not None:
                changes.append(self._resolve(key, cur, event_id, occurred_at, sent_at))
            labels = {"alertname": reason, "org_id": org, "resource": name, "resource_kind": kind,
                      "severity": severity}
            new = Lifecycle(id=event_id, labels={k: v for k, v in labels.items() if v}, starts_at=occurred_at,
                            fire_sent=sent_at)
            if message != _PREFIX + event_id:
                self.message_mismatch += 1
            self.active[key] = new
            self.lifecycles.append(new)
            changes.append(Change("fire", new))
        elif reason in RESOLVE:
            key = (*resource, RESOLVE[reason])
            cur = self.active.get(key)
            if cur is not None:
                changes.append(self._resolve(key, cur, event_id, occurred_at, sent_at))
        elif reason in RESOLVE_ALL:
            for group in sorted({g for g, _ in FIRE.values()}):
                key = (*resource, group)
                cur = self.active.get(key)
                if cur is not None:
                    changes.append(self._resolve(key, cur, event_id, occurred_at, sent_at))
        return changes

    def _resolve(self, key: tuple[str, str, str, str], lc: Lifecycle, event_id: str, at: float,
                 sent_at: float) -> Change:
        del self.active[key]
        lc.resolve_id, lc.ends_at, lc.resolve_sent = event_id, at, sent_at
        return Change("resolve", lc)


@dataclass(frozen=True)
class Expectation:
    """A notification that must arrive: lifecycle ``lifecycle`` with this status, caused at ``sent_at``."""

    lifecycle: str
    status: Status
    labels: Mapping[str, str]
    sent_at: float


def expectations(lifecycles: Iterable[Lifecycle]) -> dict[tuple[str, str], Expectation]:
    """Every lifecycle notifies ``firing`` once and, if it resolved, ``resolved`` once."""
    out: dict[tuple[str, str], Expectation] = {}
    for lc in lifecycles:
        out[(lc.id, "firing")] = Expectation(lc.id, "firing", lc.labels, lc.fire_sent)
        if lc.resolve_sent is not None:
            out[(lc.id, "resolved")] = Expectation(lc.id, "resolved", lc.labels, lc.resolve_sent)
    return out


@dataclass(frozen=True)
class Delivery:
    """One alert of one received webhook."""

    at: float  # arrival time
    key: str  # the request's Idempotency-Key ("" when the sender gives none)
    lifecycle: str  # from the summary annotation ("" when it names none)
    status: str
    labels: Mapping[str, str]


def lifecycle_of(annotations: Mapping[str, Any]) -> str:
    summary = annotations.get("summary")
    if isinstance(summary, str) and summary.startswith(_PREFIX):
        return summary[len(_PREFIX):]
    return ""


def deliveries_from_webhook(body: Mapping[str, Any], at: float, key: str) -> list[Delivery]:
    """The deliveries of one webhook payload (Alertmanager's version 4)."""
    out = []
    for alert in body.get("alerts") or []:
        out.append(Delivery(at=at, key=key, lifecycle=lifecycle_of(alert.get("annotations") or {}),
                            status=str(alert.get("status", "")), labels=dict(alert.get("labels") or {})))
    return out


@dataclass
class Verdict:
    expected: int = 0
    delivered: int = 0  # expected notifications that arrived
    missing: list[tuple[str, str]] = field(default_factory=list)
    duplicated: list[tuple[str, str]] = field(default_factory=list)
    deliveries_of: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)  # duplicated: (key, at)
    repeats: list[tuple[str, str, str, float]] = field(default_factory=list)  # (lifecycle, status, key, at)
    unexpected: list[Delivery] = field(default_factory=list)
    label_mismatch: list[tuple[str, str]] = field(default_factory=list)
    latency: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"firing": [], "resolved": []})  # status -> [(arrival, seconds)]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected or self.label_mismatch)


def check(expected: Mapping[tuple[str, str], Expectation], deliveries: Iterable[Delivery]) -> Verdict:
    """Compare what arrived with what must arrive (see the module doc for the categories)."""
    v = Verdict(expected=len(expected))
    seen: dict[tuple[str, str], list[Delivery]] = {}
    for d in deliveries:
        seen.setdefault((d.lifecycle, d.status), []).append(d)
    for k, ds in seen.items():
        exp = expected.get(k)
        if exp is None:
            v.unexpected.extend(ds)
            continue
        ds.sort(key=lambda d: d.at)
        v.delivered += 1
        v.latency[k[1]].append((ds[0].at, ds[0].at - exp.sent_at))
        if any(dict(d.labels) != dict(exp.labels) for d in ds):
            v.label_mismatch.append(k)
        keys: dict[str, int] = {}
        distinct = 0
        for d in ds:
            if not d.key:
                distinct += 1
                continue
            if d.key in keys:
                v.repeats.append((k[0], k[1], d.key, d.at))
            else:
                distinct += 1
            keys[d.key] = keys.get(d.key, 0) + 1
        if distinct > 1:
            v.duplicated.append(k)
            v.deliveries_of[k] = [(d.key, d.at) for d in ds]
    v.missing = sorted(k for k in expected if k not in seen)
    for lat in v.latency.values():
        lat.sort()
    return v


@dataclass(frozen=True)
class Spacing:
    """How soon an alert fired again after it resolved, in commit (push) time: the model needs
    more than ``group_interval`` (the resolved notification goes out on the group's next tick,
    within one interval; a firing that comes back before it is folded into the same group)."""

    refires: int  # resolve -> next fire pairs of one alert
    min_gap: float  # seconds (inf when there was none)
    below: int  # pairs closer than ``guard``
    guard: float


def spacing(lifecycles: Iterable[Lifecycle], guard: float) -> Spacing:
    """Gaps between the resolve of a lifecycle and the next fire of the same alert."""
    last_resolve: dict[tuple[tuple[str, str], ...], float] = {}
    pairs, below, smallest = 0, 0, math.inf
    for lc in lifecycles:
        alert = tuple(sorted(lc.labels.items()))
        before = last_resolve.pop(alert, None)
        if before is not None:
            pairs += 1
            gap = lc.fire_sent - before
            smallest = min(smallest, gap)
            if gap < guard:
                below += 1
        if lc.resolve_sent is not None:
            last_resolve[alert] = lc.resolve_sent
    return Spacing(refires=pairs, min_gap=smallest, below=below, guard=guard)
