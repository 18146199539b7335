"""The event rules one organisation sees: its layers merged by name, indexed by reason.

Layers (:class:`stages.rules.rules.Layer`) come in order ``builtin``, ``file``, ``api`` (the
organisation's own); a template or rule of a later layer replaces the one of the same name.
Then, for an event:

- its ``reason`` fires the one template that lists it in ``fire`` (two templates firing one
  reason is an error where they are written; should it happen anyway, as when two API writes
  race, the later layer and then the smaller name wins, so the result is still deterministic);
- the rules naming that template whose scope matches the event (the org, and the matchers over
  the event's labels, then its fields for names that are not labels) apply, most specific first:
  higher ``priority``, then scoped to the org, then more matchers, then the later layer, then
  the name. Each parameter comes from the first of them that sets it, else from the template,
  else its default. No enabled rule: the template does not fire;
- a ``resolve`` reason resolves the groups of every template that lists it, ``resolve_all``
  every group of the resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.matchers import Matcher, MatcherError, parse_matcher
from contracts.messages import Event
from stages.rules import rules as file_rules
from stages.rules.defs import (
    SOURCES,
    DefinitionError,
    Rule,
    Template,
    check_rule,
    compare,
)
from stages.rules.rules import Layer, RulesConfigError, RuleSet, builtin_layer, file_layer
from stages.rules.textfmt import Text, parse_text

__all__ = [
    "Action",
    "Catalog",
    "FireAction",
    "Params",
    "ResolveAction",
    "ResolveAllAction",
    "RuleBook",
    "RuleEntry",
    "TemplateEntry",
    "label_value",
    "load_checked_rules",
    "match_labels",
]


@dataclass(frozen=True, slots=True)
class Params:
    """A template's parameters for one event, after its rules."""

    threshold: float | None = None
    comparison: str = ">"
    value_field: str = ""
    for_: float = 0.0
    keep_firing_for: float = 0.0
    severity: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "comparison": self.comparison, "value_field": self.value_field,
                "for": self.for_, "keep_firing_for": self.keep_firing_for, "severity": self.severity}

    def fires(self, value: float) -> bool:
        return self.threshold is None or compare(value, self.comparison, self.threshold)


_PARAM_FIELDS = ("threshold", "comparison", "value_field", "for_", "keep_firing_for", "severity")


@dataclass(frozen=True, slots=True)
class RuleEntry:
    rule: Rule
    source: str
    matchers: tuple[Matcher, ...]

    def applies(self, org: str, labels: Mapping[str, str]) -> bool:
        return (not self.rule.scope.org or self.rule.scope.org == org) and all(m.matches(labels) for m in self.matchers)

    def order(self) -> tuple[Any, ...]:
        r = self.rule
        return (-r.priority, not r.scope.org, -len(self.matchers), -SOURCES.index(self.source), r.name)


@dataclass(frozen=True)
class TemplateEntry:
    template: Template
    source: str
    rules: tuple[RuleEntry, ...]  # the enabled rules naming it, most specific first
    labels: dict[str, Text] = field(default_factory=dict)
    annotations: dict[str, Text] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.template.group_name

    @property
    def matched(self) -> bool:
        """Whether a rule of it has matchers (else only the org decides)."""
        return any(r.matchers for r in self.rules)


@dataclass(frozen=True, slots=True)
class FireAction:
    entry: TemplateEntry

    @property
    def group(self) -> str:
        return self.entry.group


@dataclass(frozen=True, slots=True)
class ResolveAction:
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResolveAllAction:
    pass


Action = FireAction | ResolveAction | ResolveAllAction


def label_value(value: Any) -> str | None:
    """An event field as a label value: text as is, numbers and booleans as JSON writes them."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def match_labels(ev: Event, field_labels: Mapping[str, str]) -> dict[str, str]:
    """The labels an event's alert has whatever template fires it: ``field_labels`` and the
    built-in ones (``severity`` is the event's: the template's comes from its parameters)."""
    labels: dict[str, str] = {}
    for label, name in field_labels.items():
        value = label_value(ev.fields.get(name))
        if value:
            labels[label] = value
    labels["alertname"] = ev.reason
    labels["org_id"] = ev.org
    labels["resource"] = ev.resource_name
    labels["resource_kind"] = ev.resource_kind
    if ev.severity:
        labels["severity"] = ev.severity
    return {k: v for k, v in labels.items() if v}


class RuleBook:
    """The merged layers of one organisation (or of every one: the built-in and file layers),
    with what is wrong in them (``problems``: never raised here, so an event always finds a
    deterministic answer; the API and the file loader refuse what would add one)."""

    def __init__(self, layers: Sequence[Layer], *, field_labels: Mapping[str, str], ops: Sequence[str]) -> None:
        self.layers = tuple(layers)
        self.field_labels = dict(field_labels)
        self.ops = frozenset(ops)
        self.problems: list[tuple[str, str, str]] = []  # (kind/name, field, message)
        templates: dict[str, tuple[Template, str]] = {}
        rules: dict[str, tuple[Rule, str]] = {}
        resolve_all: list[str] = []
        for layer in layers:
            for name, t in layer.templates.items():
                templates[name] = (t, layer.source)
            for name, r in layer.rules.items():
                rules[name] = (r, layer.source)
            resolve_all += [r for r in layer.resolve_all if r not in resolve_all]
        self.templates = templates
        self.rules = rules
        by_template: dict[str, list[RuleEntry]] = {}
        for name, (r, source) in sorted(rules.items()):
            found = templates.get(r.template)
            try:
                check_rule(r, found[0] if found else None)
                matchers = tuple(parse_matcher(m) for m in r.scope.matchers)
            except DefinitionError as exc:
                self.problems.append((f"rule/{name}", exc.field, exc.message))
                continue
            except MatcherError as exc:  # (checked when written: only a hand-made layer gets here)
                self.problems.append((f"rule/{name}", "scope.matchers", str(exc)))
                continue
            if r.enabled:
                by_template.setdefault(r.template, []).append(RuleEntry(r, source, matchers))
        fires: dict[str, TemplateEntry] = {}
        resolves: dict[str, list[str]] = {}
        # later layers first, then by name: the winner of a (refused) conflict is deterministic
        for name, (t, source) in sorted(templates.items(), key=lambda x: (-SOURCES.index(x[1][1]), x[0])):
            entry = TemplateEntry(
                t, source, tuple(sorted(by_template.get(name, []), key=RuleEntry.order)),
                {k: parse_text(v) for k, v in t.labels.items()},
                {k: parse_text(v) for k, v in t.annotations.items()})
            for reason in t.fire:
                other = fires.get(reason)
                if other is not None:
                    self.problems.append((f"template/{name}", "fire", f"reason {reason} is fired by template "
                                          f"{other.template.name} ({other.source}) too; override that template by "
                                          "its name instead"))
                    continue
                fires[reason] = entry
            for reason in t.resolve:
                if t.group_name not in resolves.setdefault(reason, []):
                    resolves[reason].append(t.group_name)
        actions: dict[str, Action] = {}
        for reason, groups in sorted(resolves.items()):
            if reason in fires:
                self.problems.append((f"template/{fires[reason].template.name}", "fire",
                                      f"reason {reason} fires here and resolves group {groups[0]}"))
                continue
            actions[reason] = ResolveAction(tuple(sorted(groups)))
        for reason, entry in fires.items():
            actions[reason] = FireAction(entry)
        for reason in resolve_all:
            if reason in actions:
                self.problems.append(("settings", "resolve_all", f"reason {reason} is in resolve_all and also "
                                      "fires or resolves a group"))
                continue
            actions[reason] = ResolveAllAction()
        self.actions = actions
        self.resolve_all = tuple(resolve_all)
        self.entries = {e.template.name: e for e in fires.values()}

    def action(self, reason: str) -> Action | None:
        return self.actions.get(reason)

    def with_layer(self, layer: Layer) -> RuleBook:
        return RuleBook([*self.layers, layer], field_labels=self.field_labels, ops=sorted(self.ops))

    # ------------------------------------------------------------------ one event

    def applying(self, entry: TemplateEntry, org: str, labels: Mapping[str, str],
                 fields: Mapping[str, Any]) -> list[RuleEntry]:
        """The rules of ``entry`` whose scope matches, most specific first (labels, then the
        event's fields for names that are not labels)."""
        if not entry.matched:  # (most templates: no rule has matchers) no label view to build per event
            return [r for r in entry.rules if not r.rule.scope.org or r.rule.scope.org == org]
        view = {**{k: v for k, f in fields.items() if (v := label_value(f)) is not None}, **labels}
        return [r for r in entry.rules if r.applies(org, view)]

    def params(self, entry: TemplateEntry, rules: Sequence[RuleEntry]) -> Params:
        values: dict[str, Any] = {}
        for source in [*(r.rule.params for r in rules), entry.template.params]:
            for name in _PARAM_FIELDS:
                v = getattr(source, name)
                if name not in values and not _unset(v):
                    values[name] = v
        for name in ("for_", "keep_firing_for"):
            if name in values:
                values[name] = float(values[name])
        return Params(**values)

    def render(self, entry: TemplateEntry, ev: Event, labels: Mapping[str, str], params: Params,
               value: float | None) -> tuple[dict[str, str], dict[str, str]]:
        """The alert's labels (its identity) and annotations for an event that fires ``entry``."""
        if not entry.labels and not entry.annotations:  # the built-in templates: nothing to render
            out = dict(labels)
            out["severity"] = params.severity or ev.severity
            return {k: v for k, v in out.items() if v}, {"summary": ev.message}
        data = {"Reason": ev.reason, "Org": ev.org, "ResourceKind": ev.resource_kind,
                "ResourceName": ev.resource_name, "Message": ev.message, "Severity": ev.severity, "ID": ev.id,
                "Value": value, "Fields": ev.fields, "Labels": labels, "Params": params.as_dict()}
        out = dict(labels)
        for name, text in entry.labels.items():
            out[name] = text.render(data)
        out["severity"] = params.severity or ev.severity
        annotations = {"summary": ev.message}
        for name, text in entry.annotations.items():
            annotations[name] = text.render(data)
        return {k: v for k, v in out.items() if v}, annotations

    # ------------------------------------------------------------------ the effective view

    def effective(self, org: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every rule that applies to a resource of ``org`` with ``labels``, most specific first
        per template (templates by name), each with where it and its template come from and the
        parameters an event of that resource gets."""
        out: list[dict[str, Any]] = []
        for name in sorted(self.entries):
            entry = self.entries[name]
            rules = self.applying(entry, org, labels, {})
            params = self.params(entry, rules).as_dict() if rules else None
            for rank, r in enumerate(rules):
                out.append({"rule": r.rule.name, "source": r.source, "template": name,
                            "template_source": entry.source, "rank": rank + 1, "scope": _builtins(r.rule.scope),
                            "priority": r.rule.priority, "params": _builtins(r.rule.params),
                            "effective_params": params, "fire": list(entry.template.fire),
                            "resolve": list(entry.template.resolve), "group": entry.group})
        return out


def _unset(v: Any) -> bool:
    return v is msgspec.UNSET


def _builtins(v: Any) -> Any:
    return msgspec.to_builtins(v)


class Catalog:
    """The built-in and file layers and the settings of every organisation, and each
    organisation's book with its own (API) layer, compiled once per version of that layer."""

    def __init__(self, rules: RuleSet | None) -> None:
        rules = rules or RuleSet()
        layers = [builtin_layer()] if rules.builtin else []
        layers.append(file_layer(rules))
        self.base = RuleBook(layers, field_labels=rules.field_labels, ops=rules.ops)
        self._books: dict[str, tuple[object, RuleBook]] = {}

    def book(self, org: str, api: Layer | None, version: object = None) -> RuleBook:
        """The book of ``org`` given its API layer; ``version`` (the state value it came from)
        keeps the compiled book while it is the same object."""
        if api is None or (not api.templates and not api.rules):
            return self.base
        hit = self._books.get(org)
        if hit is not None and hit[0] is version:
            return hit[1]
        book = self.base.with_layer(api)
        if len(self._books) >= 4096:  # organisations with rules of their own: keep the latest
            self._books.pop(next(iter(self._books)))
        self._books[org] = (version, book)
        return book


def load_checked_rules(obj: Any) -> RuleSet:
    """``tocsin.rules`` loaded (:func:`stages.rules.rules.load_rules`) and checked as a whole
    with the built-in rules: a rule naming a template that exists nowhere, or a reason two
    templates fire, is an error (:class:`RulesConfigError`) here, at start or reload."""
    rules = file_rules.load_rules(obj)
    problems = Catalog(rules).base.problems
    if problems:
        raise RulesConfigError("invalid event rules: " + "; ".join(
            f"{where.replace('/', ' ', 1)}: {field + ': ' if field else ''}{message}"
            for where, field, message in problems))
    return rules
