"""A seeded, reproducible synthetic device fleet: the events a device-management platform writes.

Organisations have Zipf-distributed sizes (a few large tenants, a long tail of small ones);
every event picks a device uniformly, so an organisation's share of the traffic is its
share of the fleet. Each device has five rule groups, as the default event rules know them:

- connectivity: connected / disconnected (``DeviceConnected`` / ``DeviceDisconnected``);
- cpu, memory, disk: a utilisation value in a normal / warning / critical band
  (``DeviceCPUNormal`` / ``DeviceCPUWarning`` / ``DeviceCPUCritical``, ...), the value in
  ``fields`` (``cpu_percent``, ...);
- application: healthy / degraded / error.

An event either *changes* one group's level (a flap: a disconnect, a threshold crossed, an
application going bad) or *reports* the current level again (a heartbeat: no alert change).
A deletion (``ResourceDeleted`` / ``DeviceDecommissioned``) resolves everything of a device,
which is then replaced by a new device (a new name) of the same organisation.

**Dwell**: a group changes at most once per ``dwell`` seconds, and a device is deleted only
when none of its groups changed in the last ``dwell`` seconds. So two changes of one alert
are at least ``dwell`` apart: long enough for the pipeline to notify each of them (see
``loadtest.oracle`` for why that makes the expected notifications exact).

Every event has a run-unique id (``lt_id`` in ``fields``). An event at a firing level carries
``message = "lt:<id of the event that started this firing>"``, which becomes the alert's
``summary``: a notification names the event that fired it.

The fleet is a pure state machine: :meth:`Fleet.next_event` takes the event's time (seconds
since the run's start) and draws from its own seeded RNG, so the same seed and the same times
give the same events. :func:`schedule` gives the open-loop times of a rate and a duration.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

__all__ = [
    "GROUPS",
    "LEVEL_REASONS",
    "LEVEL_SEVERITY",
    "RESOLVE_ALL_REASONS",
    "VALUE_FIELDS",
    "burst_events",
    "Fleet",
    "FleetSpec",
    "GenEvent",
    "Mix",
    "org_sizes",
    "schedule",
]

#: rule groups of a device, in a fixed order
GROUPS: Final = ("connectivity", "cpu", "memory", "disk", "application")
#: reason reported at each level (0 = fine) of each group
LEVEL_REASONS: Final[Mapping[str, tuple[str, ...]]] = {
    "connectivity": ("DeviceConnected", "DeviceDisconnected"),
    "cpu": ("DeviceCPUNormal", "DeviceCPUWarning", "DeviceCPUCritical"),
    "memory": ("DeviceMemoryNormal", "DeviceMemoryWarning", "DeviceMemoryCritical"),
    "disk": ("DeviceDiskNormal", "DeviceDiskWarning", "DeviceDiskCritical"),
    "application": ("DeviceApplicationHealthy", "DeviceApplicationDegraded", "DeviceApplicationError"),
}
#: the severity label the default rules give each firing level
LEVEL_SEVERITY: Final[Mapping[str, tuple[str, ...]]] = {
    "connectivity": ("", "critical"),
    "cpu": ("", "warning", "critical"),
    "memory": ("", "warning", "critical"),
    "disk": ("", "warning", "critical"),
    "application": ("", "warning", "critical"),
}
RESOLVE_ALL_REASONS: Final = ("ResourceDeleted", "DeviceDecommissioned")
#: the event field holding a group's value
VALUE_FIELDS: Final[Mapping[str, str]] = {"cpu": "cpu_percent", "memory": "memory_percent",
                                          "disk": "disk_percent"}
# value bands of the metric levels: normal, warning, critical
_BANDS: Final = ((5.0, 75.0), (75.0, 90.0), (90.0, 100.0))
_APP_STATUS: Final = ("healthy", "degraded", "error")
KIND: Final = "Device"


class Mix(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Relative weights of what an event is about (the rule group it reports, or a deletion)."""

    connectivity: float = 3.0
    cpu: float = 2.0
    memory: float = 1.5
    disk: float = 1.0
    application: float = 1.5
    delete: float = 0.1

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(not (math.isfinite(w) and w >= 0) for w in weights):
            raise ValueError("mix weights must be finite and >= 0")
        if sum(weights) <= 0:
            raise ValueError("at least one mix weight must be > 0")

    def weights(self) -> tuple[float, ...]:
        """Weights in the order of :data:`GROUPS`, then delete."""
        return (self.connectivity, self.cpu, self.memory, self.disk, self.application, self.delete)

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``"connectivity=3,cpu=2,delete=0"`` (unnamed weights keep their default)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            if not sep:
                raise ValueError(f"mix entry {part!r} is not NAME=WEIGHT")
            try:
                values[name.strip()] = float(raw)
            except ValueError:
                raise ValueError(f"mix weight of {name!r} is not a number: {raw!r}") from None
        try:
            return msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            names = ", ".join(cls.__struct_fields__)
            raise ValueError(f"invalid mix: {exc} (known: {names})") from None


@dataclass(frozen=True)
class FleetSpec:
    """What fleet to simulate. ``dwell`` and times are seconds; ``flap`` a probability."""

    seed: int = 1
    orgs: int = 200
    devices: int = 20_000
    zipf: float = 1.1
    dwell: float = 5.0
    flap: float = 0.25
    mix: Mix = field(default_factory=Mix)

    def __post_init__(self) -> None:
        if self.orgs < 1 or self.devices < self.orgs:
            raise ValueError("need at least one organisation and one device per organisation")
        if not (self.zipf >= 0 and math.isfinite(self.zipf)):
            raise ValueError("zipf exponent must be finite and >= 0")
        if not (self.dwell >= 0 and math.isfinite(self.dwell)):
            raise ValueError("dwell must be finite and >= 0")
        if not 0 <= self.flap <= 1:
            raise ValueError("flap is a probability (0..1)")


class GenEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One generated event (``at``: seconds since the run's start)."""

    id: str
    at: float
    org: str
    kind: str
    name: str
    reason: str
    message: str
    fields: dict[str, Any]


def org_sizes(orgs: int, devices: int, exponent: float) -> list[int]:
    """Devices per organisation: Zipf weights ``1/rank**exponent``, at least one each, summing
    to ``devices`` (largest remainders get the leftovers)."""
    if orgs < 1 or devices < orgs:
        raise ValueError("need at least one organisation and one device per organisation")
    weights = [1.0 / (rank ** exponent) for rank in range(1, orgs + 1)]
    spare = devices - orgs
    total = sum(weights)
    shares = [spare * w / total for w in weights]
    sizes = [1 + int(s) for s in shares]
    left = devices - sum(sizes)
    by_remainder = sorted(range(orgs), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[:left]:
        sizes[i] += 1
    return sizes


def schedule(rate: float, duration: float) -> Iterator[float]:
    """Open-loop event times: evenly spaced at ``rate`` per second over ``duration`` seconds."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be > 0")
    n = int(rate * duration)
    for i in range(n):
        yield i / rate


class Fleet:
    """The fleet's state; :meth:`next_event` draws the next event at a given time."""

    def __init__(self, spec: FleetSpec, *, id_prefix: str = "") -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.id_prefix = id_prefix
        self.seq = 0
        sizes = org_sizes(spec.orgs, spec.devices, spec.zipf)
        width = len(str(spec.orgs))
        self.org_names = [f"org-{rank:0{width}d}" for rank in range(1, spec.orgs + 1)]
        self.slot_org: list[int] = [o for o, n in enumerate(sizes) for _ in range(n)]
        self.slot_name: list[str] = []
        counters = [0] * spec.orgs
        for o in self.slot_org:
            self.slot_name.append(f"o{o + 1}-d{counters[o]}")
            counters[o] += 1
        self.generation = [0] * len(self.slot_org)
        n = len(self.slot_org)
        self.level = [[0] * n for _ in GROUPS]
        self.changed = [[-math.inf] * n for _ in GROUPS]
        self.fire_id = [[""] * n for _ in GROUPS]
        self.value = [[self.rng.uniform(*_BANDS[0]) if g in VALUE_FIELDS else 0.0 for _ in range(n)]
                      for g in GROUPS]
        weights = spec.mix.weights()
        total = sum(weights)
        acc, cumulative = 0.0, []
        for w in weights:
            acc += w / total
            cumulative.append(acc)
        cumulative[-1] = 1.0
        self._cumulative = cumulative

    @property
    def device_count(self) -> int:
        return len(self.slot_org)

    def _pick_topic(self) -> int:
        r = self.rng.random()
        for i, c in enumerate(self._cumulative):
            if r < c:
                return i
        return len(self._cumulative) - 1

    def _new_id(self) -> str:
        self.seq += 1
        return f"{self.id_prefix}{self.seq}"

    def next_event(self, at: float) -> GenEvent:
        """The next event, happening ``at`` seconds after the start (non-decreasing across calls)."""
        rng = self.rng
        slot = rng.randrange(len(self.slot_org))
        topic = self._pick_topic()
        eid = self._new_id()
        if topic == len(GROUPS):  # deletion
            if all(at - self.changed[g][slot] >= self.spec.dwell for g in range(len(GROUPS))):
                return self._delete(slot, eid, at)
            topic = rng.randrange(len(GROUPS))  # too soon after a change: a heartbeat instead
        g = topic
        changes = at - self.changed[g][slot] >= self.spec.dwell and rng.random() < self.spec.flap
        if changes:
            self.level[g][slot] = self._next_level(g, self.level[g][slot])
            self.changed[g][slot] = at
            self.fire_id[g][slot] = eid if self.level[g][slot] else ""
        return self._report(g, slot, eid, at)

    def _next_level(self, g: int, level: int) -> int:
        if GROUPS[g] == "connectivity":
            return 1 - level
        r = self.rng.random()
        if level == 0:
            return 1 if r < 0.7 else 2
        if level == 1:
            return 0 if r < 0.6 else 2
        return 0 if r < 0.5 else 1

    def _report(self, g: int, slot: int, eid: str, at: float) -> GenEvent:
        group = GROUPS[g]
        level = self.level[g][slot]
        fields: dict[str, Any] = {"lt_id": eid}
        vf = VALUE_FIELDS.get(group)
        if vf is not None:
            lo, hi = _BANDS[level]
            v = self.value[g][slot] + self.rng.uniform(-3.0, 3.0)
            v = min(max(v, lo), hi - 0.01)  # the reported value stays in the level's band
            self.value[g][slot] = v
            fields[vf] = round(v, 2)
        elif group == "application":
            fields["app_status"] = _APP_STATUS[level]
        message = f"lt:{self.fire_id[g][slot]}" if level else ""
        return GenEvent(id=eid, at=at, org=self.org_names[self.slot_org[slot]], kind=KIND,
                        name=self._name(slot), reason=LEVEL_REASONS[group][level], message=message, fields=fields)

    def _name(self, slot: int) -> str:
        gen = self.generation[slot]
        return self.slot_name[slot] if gen == 0 else f"{self.slot_name[slot]}g{gen}"

    def _delete(self, slot: int, eid: str, at: float) -> GenEvent:
        reason = RESOLVE_ALL_REASONS[self.rng.randrange(len(RESOLVE_ALL_REASONS))]
        ev = GenEvent(id=eid, at=at, org=self.org_names[self.slot_org[slot]], kind=KIND, name=self._name(slot),
                      reason=reason, message="", fields={"lt_id": eid})
        self.generation[slot] += 1  # the replacement device: a new name, everything fine
        for g in range(len(GROUPS)):
            self.level[g][slot] = 0
            self.changed[g][slot] = -math.inf
            self.fire_id[g][slot] = ""
            if GROUPS[g] in VALUE_FIELDS:
                self.value[g][slot] = self.rng.uniform(*_BANDS[0])
        return ev


def burst_events(spec: FleetSpec, n: int, first_id: int, at: float, *, resolve: bool) -> list[GenEvent]:
    """A burst for measuring peak throughput: ``n`` devices (Zipf over the organisations) all
    disconnecting at ``at`` (``resolve=False``: n new alerts), or all connecting again
    (``resolve=True``: their n alerts resolve). Ids are ``first_id``, ``first_id + 1``...; a
    resolving burst must come after the firing one with the same ``spec`` and ``n``."""
    sizes = org_sizes(min(spec.orgs, n), n, spec.zipf)
    width = len(str(spec.orgs))
    out = []
    k = 0
    for o, size in enumerate(sizes):
        org = f"org-{o + 1:0{width}d}"
        for _ in range(size):
            eid = str(first_id + k)
            out.append(GenEvent(id=eid, at=at, org=org, kind=KIND, name=f"burst-{k}",
                                reason="DeviceConnected" if resolve else "DeviceDisconnected",
                                message="" if resolve else f"lt:{eid}", fields={"lt_id": eid}))
            k += 1
    return out
