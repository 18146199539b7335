"""Event rules in the configuration file (``tocsin.rules``), and the built-in device rules.

The file form holds the same templates and rules as the API (:mod:`stages.rules.defs`), plus
the settings of every event rule: which row changes count as events (``ops``), event fields
mapped to labels (``field_labels``) and the reasons that resolve every alert of a resource
(``resolve_all``)::

    templates:
      - name: cpu-high
        fire: [DeviceCPUUsage]
        resolve: [DeviceCPUNormal]
        params: {value_field: cpu_percent, threshold: 90, severity: warning}
        annotations: {summary: "CPU at {{ .Fields.cpu_percent }}% on {{ .ResourceName }}"}
    rules:
      - {name: cpu-production, template: cpu-high, scope: {matchers: ['environment="production"']},
         params: {threshold: 80, for: 5m}}

The file *extends* the built-in templates and rules and overrides those of the same name;
``builtin: false`` leaves the built-in ones out (what a ``tocsin.rules`` section did before
templates existed).

The older form, ``groups`` of fire rules with ``overrides``, keeps working: each fire rule
becomes a template named after its reason (so it overrides the built-in template of that
reason), one rule for every organisation, and one rule per override, ordered as the
overrides were (the first override that matches and sets a parameter gives its value)::

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

:data:`DEFAULT_RULES` reproduces the alert table of the device-management platform the
reference ``events`` table comes from (its alert exporter): connectivity, application
status, CPU, memory and disk groups, and ResourceDeleted/DeviceDecommissioned resolving
everything of a resource. That exporter sets no severity; the default set adds
``critical``/``warning`` by the reason's name.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET

from contracts.messages import Event
from stages.rules.defs import (
    RESERVED_LABELS,
    DefinitionError,
    ParamValues,
    Rule,
    Scope,
    Template,
    check_template,
    convert_definition,
    equal_matcher,
)

__all__ = [
    "DEFAULT_RULES",
    "RESERVED_LABELS",
    "FireRule",
    "Layer",
    "Override",
    "RuleGroup",
    "RuleSet",
    "RulesConfigError",
    "builtin_layer",
    "event_value",
    "file_layer",
    "legacy_layer",
    "load_rules",
]

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Op = Literal["insert", "update", "delete"]

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
    """The ``tocsin.rules`` section: templates and rules (and older ``groups``), and the settings
    of every event rule."""

    templates: list[Template] = []
    rules: list[Rule] = []
    builtin: bool = True  # false: without the built-in templates and rules
    groups: list[RuleGroup] = []  # the older form (see the module)
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
        for kind, items in (("templates", self.templates), ("rules", self.rules)):
            names = [x.name for x in items]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{kind}: {twice[0]} is defined twice")
        legacy = {r.reason for g in self.groups for r in g.fire}
        clash = sorted(legacy & {t.name for t in self.templates})
        if clash:
            raise ValueError(f"templates: {clash[0]} is also a fire reason of groups (whose templates are named "
                             "after their reasons); keep one")


def load_rules(obj: Any) -> RuleSet:
    """A :class:`RuleSet` from parsed YAML/JSON (a dict), every template and rule validated, and
    checked as a whole with the built-in ones (:func:`stages.rules.effective.check_file` does
    that; this checks each on its own). Unknown keys are errors."""
    if not isinstance(obj, dict):
        raise RulesConfigError("invalid event rules: expected a mapping (templates:, rules:, ...)")
    try:
        plain = {k: v for k, v in obj.items() if k not in ("templates", "rules")}
        rules = msgspec.convert(plain, RuleSet)
    except msgspec.ValidationError as exc:
        hint = ""
        if "got `str`" in str(exc) and ("for`" in str(exc) or "keep_firing_for`" in str(exc)):
            hint = " (durations are numbers of seconds)"
        raise RulesConfigError(f"invalid event rules: {exc}{hint}") from None
    converted: dict[str, list[Any]] = {"templates": [], "rules": []}
    for kind in ("templates", "rules"):
        items = obj.get(kind) or []
        if not isinstance(items, list):
            raise RulesConfigError(f"invalid event rules: {kind} is a list")
        for i, item in enumerate(items):
            try:
                converted[kind].append(convert_definition("template" if kind == "templates" else "rule", item))
            except DefinitionError as exc:
                raise RulesConfigError(f"invalid event rules: {kind}[{i}]"
                                       f"{'.' + exc.field if exc.field else ''}: {exc.message}") from None
    try:
        return msgspec.structs.replace(rules, templates=converted["templates"], rules=converted["rules"])
    except ValueError as exc:
        raise RulesConfigError(f"invalid event rules: {exc}") from None


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


# ---------------------------------------------------------------------------- as layers


class Layer(msgspec.Struct, frozen=True, kw_only=True):
    """The templates and rules of one source (``builtin``, ``file``, or one org's ``api``)."""

    source: str
    templates: dict[str, Template] = {}
    rules: dict[str, Rule] = {}
    resolve_all: tuple[str, ...] = ()


def legacy_layer(groups: list[RuleGroup], source: str, resolve_all: list[str] | tuple[str, ...] = ()) -> Layer:
    """The older ``groups`` as templates named after their reasons, each with one rule for every
    organisation and one per override (``<reason>:override<n>``), in their order (priority)."""
    templates: dict[str, Template] = {}
    rules: dict[str, Rule] = {}
    for g in groups:
        for r in g.fire:
            params = ParamValues(
                threshold=r.threshold if r.value_field else UNSET, value_field=r.value_field or UNSET,
                for_=r.for_ or UNSET, keep_firing_for=r.keep_firing_for or UNSET, severity=r.severity or UNSET)
            templates[r.reason] = Template(name=r.reason, fire=[r.reason], resolve=list(g.resolve), group=g.name,
                                           params=params)
            rules[r.reason] = Rule(name=r.reason, template=r.reason)
            n = len(r.overrides)
            for i, o in enumerate(r.overrides):
                name = f"{r.reason}:override{i + 1}"
                rules[name] = Rule(
                    name=name, template=r.reason, priority=n - i,
                    scope=Scope(org=o.org or "", matchers=[equal_matcher(k, v) for k, v in o.match.items()]),
                    params=ParamValues(threshold=UNSET if o.threshold is None else o.threshold,
                                       for_=UNSET if o.for_ is None else o.for_,
                                       keep_firing_for=UNSET if o.keep_firing_for is None else o.keep_firing_for))
    return Layer(source=source, templates=templates, rules=rules, resolve_all=tuple(resolve_all))


def builtin_layer() -> Layer:
    """The built-in device rules (:data:`DEFAULT_RULES`) as templates and rules."""
    return _BUILTIN


def file_layer(rules: RuleSet) -> Layer:
    """The file's templates and rules (its older groups converted first, so that a template of
    the same name in ``templates`` would be an error: :class:`RuleSet` checks that)."""
    legacy = legacy_layer(rules.groups, "file")
    templates = {**legacy.templates, **{t.name: check_template(t) for t in rules.templates}}
    return Layer(source="file", templates=templates, rules={**legacy.rules, **{r.name: r for r in rules.rules}},
                 resolve_all=tuple(rules.resolve_all))


# ---------------------------------------------------------------------------- events to alerts


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


_BUILTIN = legacy_layer(DEFAULT_RULES.groups, "builtin", DEFAULT_RULES.resolve_all)
