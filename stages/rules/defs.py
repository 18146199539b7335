"""Event rules as data: *templates* and *rules*, their validation, and where each comes from.

A **template** is reusable: the event reasons that fire its alert and those that resolve it,
the exclusive group its alert takes per resource, typed parameters with defaults
(:class:`ParamValues`) and the text of its labels and annotations (:mod:`stages.rules.textfmt`).
A **rule** applies a template to a *scope* (an organisation, or every one, and optionally
matchers over the event's labels) with its own parameter values; a template fires only
through rules.

Three sources, each extending or overriding the one before *by name*, never replacing it:

- ``builtin``: the device platform's alert table (:data:`stages.rules.rules.DEFAULT_RULES`), one
  template per fire reason, named after the reason, and one rule per template for every org;
- ``file``: ``tocsin.rules`` in the configuration (its older ``groups`` form becomes templates
  and rules the same way: :func:`from_legacy`);
- ``api``: one organisation's templates and rules, changed at run time through ``RuleCommand``
  messages the rules stage applies in stream order (:mod:`stages.rules.effective`).

Errors are :class:`DefinitionError`: ``field`` is the path of the offending value
(``params.threshold``, ``scope.matchers[1]``), for the API's 422 answers.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from contracts.ids import check_org
from contracts.matchers import Matcher, MatcherError, MatchType, parse_matcher
from pipeline.foundation.amconfig.durations import parse_duration
from stages.rules.textfmt import TemplateSyntaxError, parse_text

__all__ = [
    "COMPARISONS",
    "NAME_RE",
    "RESERVED_LABELS",
    "SOURCES",
    "Comparison",
    "DefinitionError",
    "ParamValues",
    "Rule",
    "Scope",
    "Source",
    "Template",
    "check_rule",
    "check_template",
    "compare",
    "convert_definition",
    "equal_matcher",
    "parse_scope_matchers",
]

Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
COMPARISONS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=")
Source = Literal["builtin", "file", "api"]
SOURCES: tuple[str, ...] = ("builtin", "file", "api")  # in the order they override each other

#: labels every event alert gets from the event itself; templates and field_labels cannot set them
RESERVED_LABELS = frozenset({"alertname", "org_id", "resource", "resource_kind", "severity"})
#: names of templates and rules: safe in subjects, URLs, headers and file names (\Z: "$" would
#: also match before a trailing newline)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_TEXT = 4096


class DefinitionError(ValueError):
    """An invalid template or rule: ``field`` names the value (``params.for``), the message why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


Duration = float | str  # seconds, or a Prometheus duration such as "5m"


class ParamValues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Parameter values: a template's defaults, or the ones a rule sets (the rest are inherited).

    ``threshold`` (a number, or null for none) is compared with the event's ``value_field`` by
    ``comparison`` (default ``>``): true fires, false resolves the group. ``for`` holds an alert
    pending, ``keep_firing_for`` delays its resolve (seconds or ``5m``); ``severity`` is the
    alert's severity label (empty: the event's own)."""

    threshold: float | UnsetType | None = UNSET
    comparison: Comparison | UnsetType = UNSET
    value_field: str | UnsetType = UNSET
    for_: Duration | UnsetType = msgspec.field(default=UNSET, name="for")
    keep_firing_for: Duration | UnsetType = UNSET
    severity: str | UnsetType = UNSET


class Template(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    fire: list[str]  # reasons that fire the alert (named after the reason)
    resolve: list[str] = []  # reasons that resolve the group's alert of the resource
    group: str = ""  # exclusive group (default: the name): one alert per resource and group
    params: ParamValues = ParamValues()
    labels: dict[str, str] = {}  # label -> text (stages.rules.textfmt)
    annotations: dict[str, str] = {}  # annotation -> text; summary defaults to the event's message
    description: str = ""

    @property
    def group_name(self) -> str:
        return self.group or self.name


class Scope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    org: str = ""  # "" (file and built-in rules only): every organisation
    matchers: list[str] = []  # Alertmanager matchers over the event's labels, e.g. 'group_id="grp-123"'


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    template: str
    scope: Scope = Scope()
    params: ParamValues = ParamValues()
    enabled: bool = True  # false: overrides a rule of the same name and turns it off
    # higher comes first, before specificity (older `overrides` keep their order); bounded like
    # a 32-bit integer so that a definition stays a small, portable document
    priority: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] = 0
    description: str = ""


def compare(value: float, comparison: str, threshold: float) -> bool:
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    if comparison == "<=":
        return value <= threshold
    if comparison == "==":
        return value == threshold
    return value != threshold


_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def convert_definition(kind: Literal["template", "rule"], obj: Any) -> Template | Rule:
    """A template or rule from parsed JSON/YAML, typed and validated on its own (references to
    other definitions are checked by :func:`check_rule` against the set it joins)."""
    if not isinstance(obj, dict):
        raise DefinitionError("", f"a {kind} is an object")
    try:
        value: Template | Rule = (msgspec.convert(obj, Template) if kind == "template"
                                  else msgspec.convert(obj, Rule))
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text)
        path = (m.group(1) if m else "").replace("for_", "for")
        message = text[:m.start()] if m else text
        for start, meaning in (("Object missing required field", "is required"),
                               ("Object contains unknown field", "is not a field of a " + kind)):
            if message.startswith(start):
                key = message.split("`")[1]
                path, message = f"{path}.{key}" if path else key, meaning
        raise DefinitionError(path, message) from None
    if isinstance(value, Template):
        return check_template(value)
    assert isinstance(value, Rule)
    return _normalised_rule(value)


def _duration(field: str, value: Duration | UnsetType) -> float | UnsetType:
    if isinstance(value, UnsetType):
        return value
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise DefinitionError(field, str(exc)) from None
    else:
        seconds = float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise DefinitionError(field, "must be a non-negative duration (seconds, or such as 5m)")
    return seconds


def _normalised_params(params: ParamValues, at: str) -> ParamValues:
    """Durations in seconds; thresholds finite."""
    if isinstance(params.threshold, float | int) and not math.isfinite(params.threshold):
        raise DefinitionError(f"{at}.threshold", "must be a finite number")
    if isinstance(params.value_field, str) and params.value_field != params.value_field.strip():
        raise DefinitionError(f"{at}.value_field", "has white space at an end")
    return msgspec.structs.replace(params, for_=_duration(f"{at}.for", params.for_),
                                   keep_firing_for=_duration(f"{at}.keep_firing_for", params.keep_firing_for))


def _check_name(field: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise DefinitionError(field, f"{name!r} is not a valid name: 1 to 128 of letters, digits and _ . : - "
                                     "(starting with a letter or digit)")


def check_template(t: Template) -> Template:
    """``t`` validated on its own, with durations in seconds (raises :class:`DefinitionError`)."""
    _check_name("name", t.name)
    if t.group:
        _check_name("group", t.group)
    if not t.fire:
        raise DefinitionError("fire", "needs at least one reason")
    for field, reasons in (("fire", t.fire), ("resolve", t.resolve)):
        for i, reason in enumerate(reasons):
            if not reason or reason != reason.strip():
                raise DefinitionError(f"{field}[{i}]", "a reason is a non-empty name without white space at its ends")
        if len(set(reasons)) != len(reasons):
            raise DefinitionError(field, "lists a reason twice")
    both = sorted(set(t.fire) & set(t.resolve))
    if both:
        raise DefinitionError("resolve", f"reason {both[0]} both fires and resolves")
    params = _normalised_params(t.params, "params")
    _coherent(params, "params")
    for name, text in t.labels.items():
        field = f"labels.{name}"
        if name in RESERVED_LABELS:
            raise DefinitionError(field, "is set from the event itself (severity: the severity parameter)")
        if not _LABEL_NAME.match(name):
            raise DefinitionError(field, f"{name!r} is not a valid label name")
        _check_text(field, text)
    for name, text in t.annotations.items():
        if not name:
            raise DefinitionError("annotations", "an annotation name is empty")
        _check_text(f"annotations.{name}", text)
    return msgspec.structs.replace(t, params=params)


def _check_text(field: str, text: str) -> None:
    if len(text) > _MAX_TEXT:
        raise DefinitionError(field, f"is longer than {_MAX_TEXT} characters")
    try:
        parse_text(text)
    except TemplateSyntaxError as exc:
        raise DefinitionError(field, f"template does not parse: {exc}") from None


def _coherent(params: ParamValues, at: str) -> None:
    """A threshold needs a value field to compare (with the values a rule inherits merged in)."""
    if isinstance(params.threshold, float | int) and not params.value_field:
        raise DefinitionError(f"{at}.threshold", "a threshold needs a value_field (the event field it compares)")


def parse_scope_matchers(matchers: list[str]) -> list[Matcher]:
    out = []
    for i, text in enumerate(matchers):
        try:
            out.append(parse_matcher(text))
        except MatcherError as exc:
            raise DefinitionError(f"scope.matchers[{i}]", f"invalid matcher {text!r}: {exc}") from None
    return out


def _normalised_rule(r: Rule) -> Rule:
    _check_name("name", r.name)
    _check_name("template", r.template)
    if r.scope.org and (problem := check_org(r.scope.org)):
        raise DefinitionError("scope.org", problem)
    parse_scope_matchers(r.scope.matchers)
    return msgspec.structs.replace(r, params=_normalised_params(r.params, "params"))


def check_rule(r: Rule, template: Template | None) -> None:
    """``r`` against the template it names (None: no such template in its organisation's set)."""
    if template is None:
        raise DefinitionError("template", f"unknown template {r.template!r}")
    merged = msgspec.structs.replace(template.params, **{
        f: getattr(r.params, f) for f in r.params.__struct_fields__ if not isinstance(getattr(r.params, f), UnsetType)})
    _coherent(merged, "params")


def equal_matcher(name: str, value: str) -> str:
    """The text of ``name="value"`` (the older ``match`` maps)."""
    return str(Matcher(name, MatchType.EQUAL, value))
