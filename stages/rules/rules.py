"""Event rules as configuration, and the default rule set.

An event (one committed row of an events table) is matched by its ``reason`` to one of:

- a *fire rule* of a :class:`RuleGroup`: the event fires that rule's alert for its resource.
  The fire rules of one group are mutually exclusive per resource: when another rule of the
  group fires, the group's current alert is resolved and the new one fires;
- a *resolve reason* of one or more groups: resolves the group's alert of the resource;
- a *resolve-all reason*: resolves every alert of the resource (and cancels pending ones).

A fire rule may compare a number carried by the event (``value_field``, e.g.
``cpu_percent``) with a ``threshold``: above fires, at or below resolves the group. It may
hold the alert pending for ``for`` seconds before it fires, and delay a resolve by
``keep_firing_for`` seconds. These three parameters take per-resource-group or
per-organisation values through ``overrides``: the first override that matches the event
and sets a parameter gives its value, else the rule's own value applies::

    groups:
      - name: cpu_usage
        fire:
          - reason: DeviceCPUUsage
            severity: warning
            value_field: cpu_percent
            threshold: 90
            overrides:
              - {org: acme, threshold: 70}
              - {match: {environment: production}, threshold: 80, for: 300}
              - {match: {environment: development}, threshold: 95}

``match`` compares label values of the alert (including ``field_labels``) and, for names
that are not labels, the event's ``fields``. Durations are seconds.

Alert labels: ``alertname`` (the reason), ``org_id``, ``resource``, ``resource_kind``,
``severity`` (the rule's, else the event's), plus ``field_labels`` (label name -> event
field). Empty values are dropped, as Alertmanager does. Annotation: ``summary`` = the
event's message.

:data:`DEFAULT_RULES` reproduces the alert table of the device-management platform the
reference ``events`` table comes from (its alert exporter): connectivity, application
status, CPU, memory and disk groups, and ResourceDeleted/DeviceDecommissioned resolving
everything of a resource. That exporter sets no severity; the default set adds
``critical``/``warning`` by the reason's name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from contracts.messages import Event

__all__ = [
    "DEFAULT_RULES",
    "RESERVED_LABELS",
    "Action",
    "CompiledRules",
    "FireAction",
    "FireRule",
    "Override",
    "Params",
    "ResolveAction",
    "ResolveAllAction",
    "RuleGroup",
    "RuleSet",
    "RulesConfigError",
    "compile_rules",
    "event_annotations",
    "event_labels",
    "event_value",
    "load_rules",
]

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Op = Literal["insert", "update", "delete"]

#: labels every event alert gets from the event itself; field_labels cannot override them
RESERVED_LABELS = frozenset({"alertname", "org_id", "resource", "resource_kind", "severity"})

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RulesConfigError(ValueError):
    """The rules configuration is invalid; the message says where and why."""


class Override(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameter values for one organisation and/or one group of resources."""

    org: str | None = None  # only events of this organisation
    match: dict[str, str] = {}  # label (or event field) name -> value, all must be equal
    threshold: float | None = None
    for_: Seconds | None = msgspec.field(default=None, name="for")
    keep_firing_for: Seconds | None = None

    def __post_init__(self) -> None:
        if self.org is None and not self.match:
            raise ValueError("an override needs `org` or `match` (the rule's own values are the default)")
        if self.threshold is None and self.for_ is None and self.keep_firing_for is None:
            raise ValueError("an override must set threshold, for or keep_firing_for")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")


class FireRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Events with this reason fire an alert named after the reason."""

    reason: str
    severity: str = ""  # label; empty: the event's severity
    value_field: str = ""  # event field compared with threshold (above fires, at/below resolves)
    threshold: float | None = None
    for_: Seconds = msgspec.field(default=0.0, name="for")
    keep_firing_for: Seconds = 0.0
    overrides: list[Override] = []

    def __post_init__(self) -> None:
        if not self.reason:
            raise ValueError("reason must not be empty")
        if bool(self.value_field) != (self.threshold is not None):
            raise ValueError(f"rule {self.reason}: value_field and threshold go together")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"rule {self.reason}: threshold must be a finite number")
        if not self.value_field and any(o.threshold is not None for o in self.overrides):
            raise ValueError(f"rule {self.reason}: an override sets a threshold but the rule has no value_field")


class RuleGroup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fire rules that exclude each other per resource, and the reasons that resolve them."""

    name: str
    fire: list[FireRule]
    resolve: list[str] = []

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("group name must not be empty")
        if not self.fire:
            raise ValueError(f"group {self.name}: needs at least one fire rule")


class RuleSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All event rules of a deployment."""

    groups: list[RuleGroup] = []
    resolve_all: list[str] = []  # reasons that resolve every alert of the resource
    field_labels: dict[str, str] = {}  # label name -> event field name
    ops: list[Op] = msgspec.field(default_factory=lambda: ["insert"])  # row changes that count as events

    def __post_init__(self) -> None:
        seen_groups: set[str] = set()
        fires: dict[str, str] = {}  # reason -> group it fires in
        resolves: dict[str, list[str]] = {}  # reason -> groups it resolves
        for g in self.groups:
            if g.name in seen_groups:
                raise ValueError(f"group {g.name} is defined twice")
            seen_groups.add(g.name)
            for rule in g.fire:
                if rule.reason in fires:
                    raise ValueError(f"reason {rule.reason} fires in two groups: {fires[rule.reason]} and {g.name}")
                fires[rule.reason] = g.name
            for reason in g.resolve:
                if not reason:
                    raise ValueError(f"group {g.name}: empty resolve reason")
                if g.name in resolves.get(reason, []):
                    raise ValueError(f"group {g.name}: resolve reason {reason} is listed twice")
                resolves.setdefault(reason, []).append(g.name)
        for reason, groups in resolves.items():
            if reason in fires:
                raise ValueError(f"reason {reason} both fires in group {fires[reason]} and resolves {groups[0]}")
        for reason in self.resolve_all:
            if not reason:
                raise ValueError("resolve_all: empty reason")
            if reason in fires or reason in resolves:
                raise ValueError(f"reason {reason} is in resolve_all and also fires or resolves a group")
        if len(set(self.resolve_all)) != len(self.resolve_all):
            raise ValueError("resolve_all lists a reason twice")
        for label, field in self.field_labels.items():
            if label in RESERVED_LABELS:
                raise ValueError(f"field_labels: {label} is set from the event itself and cannot be mapped")
            if not _LABEL_NAME.match(label):
                raise ValueError(f"field_labels: {label!r} is not a valid label name")
            if not field:
                raise ValueError(f"field_labels: label {label} maps an empty field name")


def load_rules(obj: Any) -> RuleSet:
    """A :class:`RuleSet` from parsed YAML/JSON (a dict); unknown keys are errors."""
    try:
        return msgspec.convert(obj, RuleSet)
    except msgspec.ValidationError as exc:
        hint = ""
        if "got `str`" in str(exc) and ("for`" in str(exc) or "keep_firing_for`" in str(exc)):
            hint = " (durations are numbers of seconds)"
        raise RulesConfigError(f"invalid event rules: {exc}{hint}") from None


def _group(name: str, fires: list[tuple[str, str]], resolve: str) -> RuleGroup:
    return RuleGroup(name=name, fire=[FireRule(reason=r, severity=s) for r, s in fires], resolve=[resolve])


DEFAULT_RULES = RuleSet(
    groups=[
        _group("connectivity", [("DeviceDisconnected", "critical")], "DeviceConnected"),
        _group(
            "application",
            [("DeviceApplicationError", "critical"), ("DeviceApplicationDegraded", "warning")],
            "DeviceApplicationHealthy",
        ),
        _group("cpu", [("DeviceCPUCritical", "critical"), ("DeviceCPUWarning", "warning")], "DeviceCPUNormal"),
        _group(
            "memory",
            [("DeviceMemoryCritical", "critical"), ("DeviceMemoryWarning", "warning")],
            "DeviceMemoryNormal",
        ),
        _group("disk", [("DeviceDiskCritical", "critical"), ("DeviceDiskWarning", "warning")], "DeviceDiskNormal"),
    ],
    resolve_all=["ResourceDeleted", "DeviceDecommissioned"],
)


# ---------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Params:
    """A fire rule's parameters for one event."""

    threshold: float | None
    for_: float
    keep_firing_for: float


@dataclass(frozen=True, slots=True)
class FireAction:
    group: str
    rule: FireRule


@dataclass(frozen=True, slots=True)
class ResolveAction:
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResolveAllAction:
    pass


Action = FireAction | ResolveAction | ResolveAllAction


class CompiledRules:
    """A :class:`RuleSet` indexed by reason."""

    __slots__ = ("actions", "field_labels", "ops", "rules")

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.field_labels = dict(rules.field_labels)
        self.ops = frozenset(rules.ops)
        resolves: dict[str, list[str]] = {}
        actions: dict[str, Action] = {}
        for g in rules.groups:
            for rule in g.fire:
                actions[rule.reason] = FireAction(g.name, rule)
            for reason in g.resolve:
                resolves.setdefault(reason, []).append(g.name)
        for reason, groups in resolves.items():
            actions[reason] = ResolveAction(tuple(groups))
        for reason in rules.resolve_all:
            actions[reason] = ResolveAllAction()
        self.actions = actions

    def action(self, reason: str) -> Action | None:
        return self.actions.get(reason)

    def params(self, rule: FireRule, org: str, labels: Mapping[str, str], fields: Mapping[str, Any]) -> Params:
        """The rule's parameters for an event of ``org`` whose alert has ``labels``."""
        threshold, for_, keep = rule.threshold, rule.for_, rule.keep_firing_for
        got_threshold = got_for = got_keep = False
        for o in rule.overrides:
            if not _matches(o, org, labels, fields):
                continue
            if o.threshold is not None and not got_threshold:
                threshold, got_threshold = o.threshold, True
            if o.for_ is not None and not got_for:
                for_, got_for = o.for_, True
            if o.keep_firing_for is not None and not got_keep:
                keep, got_keep = o.keep_firing_for, True
        return Params(threshold=threshold, for_=for_, keep_firing_for=keep)


def compile_rules(rules: RuleSet) -> CompiledRules:
    return CompiledRules(rules)


def _matches(o: Override, org: str, labels: Mapping[str, str], fields: Mapping[str, Any]) -> bool:
    if o.org is not None and o.org != org:
        return False
    for name, want in o.match.items():
        if name in labels:
            got: str | None = labels[name]
        else:
            got = _label_value(fields.get(name))
        if got != want:
            return False
    return True


def _label_value(value: Any) -> str | None:
    """An event field as a label value: text as is, numbers and booleans as JSON writes them."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------- events to alerts


def event_labels(ev: Event, rule: FireRule, field_labels: Mapping[str, str]) -> dict[str, str]:
    """The alert's label set (its identity) for an event that fires ``rule``."""
    labels: dict[str, str] = {}
    for label, field in field_labels.items():
        value = _label_value(ev.fields.get(field))
        if value:
            labels[label] = value
    labels["alertname"] = ev.reason
    labels["org_id"] = ev.org
    labels["resource"] = ev.resource_name
    labels["resource_kind"] = ev.resource_kind
    labels["severity"] = rule.severity or ev.severity
    return {k: v for k, v in labels.items() if v}


def event_annotations(ev: Event) -> dict[str, str]:
    return {"summary": ev.message}


def event_value(ev: Event, field: str) -> float:
    """The number an event carries in ``field``; raises ValueError when there is none."""
    value = ev.fields.get(field)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"event {ev.id}: field {field!r} {'is missing' if value is None else 'is not a number'}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"event {ev.id}: field {field!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"event {ev.id}: field {field!r} is not a finite number")
    return number
