"""Event rules as data (issue #25): templates and rules, their validation, their layers (built-in,
file, API) and their application by the rules core at a point of its input stream."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rules_fold import Fold, changes, ev, payloads

from contracts.labels import fingerprint
from contracts.messages import RuleCommand
from pipeline.foundation.runtime.step import Reject
from stages.rules.core import RulesCore, defs_key
from stages.rules.defs import DefinitionError, convert_definition
from stages.rules.effective import Catalog, load_checked_rules
from stages.rules.rules import RulesConfigError
from stages.rules.state import RuleDefs, StateValue
from stages.rules.textfmt import TemplateSyntaxError, parse_text

CPU = {"name": "cpu-high", "fire": ["DeviceCPUUsage"], "resolve": ["DeviceCPUNormal"], "group": "cpu-usage",
       "params": {"value_field": "cpu_percent", "threshold": 90, "severity": "warning"},
       "labels": {"team": "{{ .Fields.team }}"},
       "annotations": {"summary": "CPU at {{ .Value }}% on {{ .ResourceName }} (over {{ .Params.threshold }})"}}
PROD = {"name": "cpu-production", "template": "cpu-high", "scope": {"org": "o1", "matchers": ['env="production"']},
        "params": {"threshold": 80, "for": "5m"}}
DEV = {"name": "cpu-development", "template": "cpu-high", "scope": {"org": "o1", "matchers": ['env="development"']},
       "params": {"threshold": 95, "for": "10m"}}


def put(kind: str, spec: dict[str, Any], org: str = "o1", rid: str = "") -> RuleCommand:
    return RuleCommand(action="put", org=org, kind=kind, name=spec["name"], at=0.0, spec=spec,  # type: ignore[arg-type]
                       request_id=rid or f"req-{spec['name']}")


def delete(kind: str, name: str, org: str = "o1") -> RuleCommand:
    return RuleCommand(action="delete", org=org, kind=kind, name=name, at=0.0)  # type: ignore[arg-type]


def cpu(at: float, value: float, env: str, *, org: str = "o1", name: str = "d1") -> Any:
    return ev("DeviceCPUUsage", at, org=org, name=name, fields={"cpu_percent": value, "env": env, "team": "infra"})


# ---------------------------------------------------------------------------- label and annotation text


@pytest.mark.parametrize(("text", "data", "want"), [
    ("plain", {}, "plain"),
    ("{{ .ResourceName }}", {"ResourceName": "d1"}, "d1"),
    ("{{.Fields.cpu}}%", {"Fields": {"cpu": 85.0}}, "85%"),
    ("{{ .Fields.cpu }}", {"Fields": {"cpu": 85.5}}, "85.5"),
    ('{{ index .Fields "a-b" }}', {"Fields": {"a-b": True}}, "true"),
    ("{{ .Fields.missing }}", {"Fields": {}}, ""),
    ("a  {{- .Org -}}  b", {"Org": "o"}, "aob"),
    ("x{{/* note */}}y", {}, "xy"),
], ids=["literal", "top", "field-int", "field-float", "index", "missing", "trim", "comment"])
def test_text_renders(text: str, data: dict[str, Any], want: str) -> None:
    assert parse_text(text).render(data) == want


@pytest.mark.parametrize(("text", "message"), [
    ("{{ .Nope }}", "unknown field .Nope"),
    ("{{ .Fields }}", "is a map"),
    ("{{ .Org.x }}", "has no field"),
    ("{{ .Fields.a | toUpper }}", "unsupported action"),
    ("{{ if .Org }}x{{ end }}", "unsupported action"),
    ("{{ .Org ", "unclosed action"),
    ("{{ }}", "empty action"),
], ids=["unknown", "map", "scalar-field", "pipe", "if", "unclosed", "empty"])
def test_text_refuses(text: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=message):
        parse_text(text)


# ---------------------------------------------------------------------------- validation with the field


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = msgspec.json.decode(msgspec.json.encode(base))
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize(("kind", "doc", "field"), [
    ("template", _with(CPU, "params.threshold", "high"), "params.threshold"),
    ("template", _with(CPU, "params.comparison", "=>"), "params.comparison"),
    ("template", _with(CPU, "params.for", "5 minutes"), "params.for"),
    ("template", _with(CPU, "params.keep_firing_for", -1), "params.keep_firing_for"),
    ("template", _with(CPU, "labels.team", "{{ .Fields.team | lower }}"), "labels.team"),
    ("template", _with(CPU, "annotations.summary", "{{ .Oops }}"), "annotations.summary"),
    ("template", _with(CPU, "labels.severity", "x"), "labels.severity"),
    ("template", _with(CPU, "params.value_field", ""), "params.threshold"),
    ("template", _with(CPU, "fire", []), "fire"),
    ("template", _with(CPU, "resolve", ["DeviceCPUUsage"]), "resolve"),
    ("template", _with(CPU, "name", "a b"), "name"),
    ("template", _with(CPU, "colour", "red"), "colour"),
    ("template", {"fire": ["X"]}, "name"),
    ("rule", _with(PROD, "scope.matchers", ["env=~\"(\""]), "scope.matchers[0]"),
    ("rule", _with(PROD, "scope.matchers", ["ok=\"1\"", "no quotes"]), "scope.matchers[1]"),
    ("rule", _with(PROD, "params.threshold", [80]), "params.threshold"),
    ("rule", _with(PROD, "scope.org", "a/b"), "scope.org"),
    ("rule", {"name": "r"}, "template"),
    ("rule", _with(PROD, "priority", 2**63), "priority"),
], ids=["threshold-type", "comparison", "duration", "negative-duration", "label-parse", "annotation-parse",
        "reserved-label", "threshold-without-field", "no-fire", "fire-and-resolve", "bad-name", "unknown-key",
        "missing-name", "matcher-regex", "matcher-second", "rule-param-type", "bad-org", "missing-template",
        "huge-priority"])
def test_definition_errors_name_the_field(kind: str, doc: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        convert_definition(kind, doc)  # type: ignore[arg-type]
    assert info.value.field == field, str(info.value)


def test_durations_become_seconds() -> None:
    rule = convert_definition("rule", PROD)
    assert rule.params.for_ == 300.0  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the file form


def test_file_extends_the_builtin_rules() -> None:
    rules = load_checked_rules({"templates": [CPU],
                                "rules": [_with(PROD, "scope.org", ""), _with(DEV, "scope.org", "")]})
    book = Catalog(rules).base
    assert book.templates["cpu-high"][1] == "file" and book.templates["DeviceDisconnected"][1] == "builtin"
    f = Fold(RulesCore(rules))
    assert changes(f.step(ev("DeviceDisconnected", 1.0), 1.0)) == [("fired", "DeviceDisconnected")]
    f.step(cpu(2.0, 85, "production"), 2.0)  # pending for 5 minutes
    assert changes(f.advance(302.0)) == [("fired", "DeviceCPUUsage")]


def test_file_overrides_a_builtin_template_by_name() -> None:
    over = {"name": "DeviceDisconnected", "fire": ["DeviceDisconnected"], "resolve": ["DeviceConnected"],
            "group": "connectivity", "params": {"severity": "page", "for": 60}}
    f = Fold(RulesCore(load_checked_rules({"templates": [over]})))
    assert f.step(ev("DeviceDisconnected", 1.0), 1.0) == []  # now held for a minute
    [p] = payloads(f.advance(61.0))
    assert p.alert.labels["severity"] == "page"


@pytest.mark.parametrize(("doc", "message"), [
    ({"rules": [{"name": "r", "template": "nowhere"}]}, "unknown template 'nowhere'"),
    ({"templates": [{"name": "mine", "fire": ["DeviceDisconnected"]}]}, "is fired by template"),
    ({"templates": [CPU, CPU]}, "defined twice"),
    ({"builtin": False, "resolve_all": ["DeviceCPUUsage"], "templates": [CPU]}, "resolve_all"),
], ids=["unknown-template", "reason-fired-twice", "template-twice", "resolve-all-conflict"])
def test_file_refuses_an_inconsistent_set(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesConfigError, match=message):
        load_checked_rules(doc)


def test_builtin_false_leaves_the_builtin_rules_out() -> None:
    f = Fold(RulesCore(load_checked_rules({"builtin": False, "templates": [CPU]})))
    assert f.step(ev("DeviceDisconnected", 1.0), 1.0) == []


def test_builtin_alerts_keep_their_identity() -> None:
    """Built-in templates make the same labels (so the same fingerprints) as before templates."""
    [p] = payloads(Fold(RulesCore()).step(ev("DeviceCPUWarning", 1.0, message="hot"), 1.0))
    labels = {"alertname": "DeviceCPUWarning", "org_id": "o1", "resource": "d1", "resource_kind": "Device",
              "severity": "warning"}
    assert p.alert.labels == labels and p.alert.fingerprint == fingerprint(labels)
    assert p.alert.annotations == {"summary": "hot"}


# ---------------------------------------------------------------------------- API layer, applied in order


def test_a_rule_applies_from_its_command_on_for_its_group_only() -> None:
    f = Fold(RulesCore())
    assert f.step(cpu(1.0, 99, "production"), 1.0) == []  # no rule yet: the template does not even exist
    f.step(put("template", _with(CPU, "params.threshold", 90)), 2.0)
    f.step(put("rule", _with(PROD, "params.for", 0)), 3.0)
    out = f.step(cpu(4.0, 85, "production"), 4.0)
    [p] = payloads(out)
    assert p.change == "fired" and p.alert.labels["team"] == "infra" and p.alert.labels["severity"] == "warning"
    assert p.alert.annotations["summary"] == "CPU at 85% on d1 (over 80)"
    assert f.step(cpu(5.0, 99, "staging", name="d2"), 5.0) == []  # no rule for that group
    assert f.step(cpu(6.0, 99, "production", org="o2", name="d3"), 6.0) == []  # nor in another org
    assert changes(f.step(cpu(7.0, 70, "production"), 7.0)) == [("resolved", "DeviceCPUUsage")]


def test_a_threshold_change_applies_to_the_events_after_it() -> None:
    f = Fold(RulesCore())
    f.step(put("template", CPU), 1.0)
    f.step(put("rule", _with(PROD, "params.for", 0)), 1.0)
    assert f.step(cpu(2.0, 75, "production"), 2.0) == []
    f.step(put("rule", _with(_with(PROD, "params.for", 0), "params.threshold", 70), rid="v2"), 3.0)
    assert changes(f.step(cpu(4.0, 75, "production"), 4.0)) == [("fired", "DeviceCPUUsage")]
    assert f.state[defs_key("o1")].applied == {"rule/cpu-production": "v2", "template/cpu-high": "req-cpu-high"}


def test_the_accelerator_cluster_example() -> None:
    """One CPU template; production fires at 80% after 5 minutes, development at 95% after 10."""
    f = Fold(RulesCore())
    for cmd in (put("template", CPU), put("rule", PROD), put("rule", DEV)):
        f.step(cmd, 0.0)
    f.step(cpu(10.0, 85, "production", name="p1"), 10.0)
    f.step(cpu(10.0, 85, "development", name="d1"), 10.0)
    f.step(cpu(10.0, 96, "development", name="d2"), 10.0)
    assert changes(f.advance(309.0)) == []
    assert [p.alert.labels["resource"] for p in payloads(f.advance(310.0))] == ["p1"]
    assert [p.alert.labels["resource"] for p in payloads(f.advance(610.0))] == ["d2"]


def test_delete_and_disable() -> None:
    f = Fold(RulesCore())
    f.step(put("template", CPU), 0.0)
    f.step(put("rule", _with(PROD, "params.for", 0)), 0.0)
    f.step(delete("rule", "cpu-production"), 1.0)
    assert f.step(cpu(2.0, 99, "production"), 2.0) == []
    # an org turns a built-in rule off by overriding it by name
    f.step(put("rule", {"name": "DeviceCPUWarning", "template": "DeviceCPUWarning", "enabled": False}), 3.0)
    assert f.step(ev("DeviceCPUWarning", 4.0), 4.0) == []
    assert changes(f.step(ev("DeviceCPUWarning", 4.0, org="o2"), 4.0)) == [("fired", "DeviceCPUWarning")]
    f.step(delete("rule", "DeviceCPUWarning"), 5.0)
    f.step(delete("template", "cpu-high"), 5.0)
    assert defs_key("o1") not in f.state  # nothing of its own left
    assert changes(f.step(ev("DeviceCPUWarning", 6.0), 6.0)) == [("fired", "DeviceCPUWarning")]


def test_builtin_rules_keep_firing_beside_api_rules() -> None:
    f = Fold(RulesCore(load_checked_rules({"templates": [_with(CPU, "name", "file-cpu")]})))
    f.step(put("template", CPU), 0.0)
    f.step(put("rule", _with(PROD, "params.for", 0)), 0.0)
    assert changes(f.step(ev("DeviceDisconnected", 1.0), 1.0)) == [("fired", "DeviceDisconnected")]
    assert changes(f.step(ev("DeviceMemoryCritical", 1.0), 1.0)) == [("fired", "DeviceMemoryCritical")]


def test_most_specific_rule_first_and_parameters_cascade() -> None:
    f = Fold(RulesCore())
    f.step(put("template", _with(CPU, "params.for", 0)), 0.0)
    f.step(put("rule", {"name": "org-wide", "template": "cpu-high", "params": {"severity": "critical"}}), 0.0)
    f.step(put("rule", _with(PROD, "params", {"threshold": 50})), 0.0)
    [p] = payloads(f.step(cpu(1.0, 60, "production"), 1.0))  # 50 from the specific rule, critical from the other
    assert p.alert.labels["severity"] == "critical"
    book = f.core.book(f.state, "o1")
    eff = book.effective("o1", {"env": "production"})
    assert [(r["rule"], r["rank"], r["source"]) for r in eff if r["template"] == "cpu-high"] == [
        ("cpu-production", 1, "api"), ("org-wide", 2, "api")]
    assert next(r for r in eff if r["template"] == "cpu-high")["effective_params"]["threshold"] == 50
    assert {r["template_source"] for r in eff if r["template"] == "DeviceDisconnected"} == {"builtin"}


@pytest.mark.parametrize(("comparison", "value", "fires"), [
    ("<", 10, True), ("<", 30, False), (">=", 20, True), ("<=", 21, False), ("==", 20, True), ("!=", 20, False),
], ids=["lt", "lt-no", "ge", "le-no", "eq", "ne-no"])
def test_comparisons(comparison: str, value: float, fires: bool) -> None:
    f = Fold(RulesCore())
    low = {"name": "battery", "fire": ["Battery"], "params": {"value_field": "pct", "threshold": 20,
                                                                "comparison": comparison}}
    f.step(put("template", low), 0.0)
    f.step(put("rule", {"name": "all", "template": "battery"}), 0.0)
    out = f.step(ev("Battery", 1.0, fields={"pct": value}), 1.0)
    assert changes(out) == ([("fired", "Battery")] if fires else [])


def test_bad_commands_are_rejected_and_races_stay_deterministic() -> None:
    core = RulesCore()
    with pytest.raises(Reject, match=r"params\.threshold"):
        core.step({}, put("template", _with(CPU, "params.threshold", "x")), 0.0)
    # a rule whose template was deleted meanwhile (two writers) is kept but ignored
    f = Fold(core)
    f.step(put("rule", _with(PROD, "params.for", 0)), 0.0)
    assert f.step(cpu(1.0, 99, "production"), 1.0) == []
    assert ("rule/cpu-production", "template", "unknown template 'cpu-high'") in core.book(f.state, "o1").problems
    f.step(put("template", CPU), 2.0)
    assert changes(f.step(cpu(3.0, 99, "production"), 3.0)) == [("fired", "DeviceCPUUsage")]


def test_rule_state_round_trips_through_its_encoding() -> None:
    f = Fold(RulesCore())
    f.step(put("template", CPU), 0.0)
    f.step(put("rule", PROD), 0.0)
    value = f.state[defs_key("o1")]
    again = msgspec.json.decode(msgspec.json.encode(value), type=StateValue)
    assert isinstance(again, RuleDefs) and again == value


# ---------------------------------------------------------------------------- property: no hidden state


_step = st.one_of(
    st.tuples(st.just("put-rule"), st.sampled_from([60.0, 80.0, 95.0]), st.sampled_from(["production", ""])),
    st.tuples(st.just("delete-rule"), st.just(0.0), st.just("")),
    st.tuples(st.just("event"), st.sampled_from([50.0, 85.0, 99.0]), st.sampled_from(["production", "dev"])),
    st.tuples(st.just("normal"), st.just(0.0), st.just("")),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, max_size=25))
def test_a_fresh_core_at_every_step_decides_the_same(steps: list[tuple[str, float, str]]) -> None:
    """The core's compiled books are a cache: a restarted stage (a fresh core, state read back)
    decides exactly what a long-running one does, so a crash around a change changes nothing."""
    rules_file = load_checked_rules({"templates": [_with(CPU, "params.for", 0)]})
    long_running = Fold(RulesCore(rules_file))
    restarted = Fold(RulesCore(rules_file))
    for i, (what, x, env) in enumerate(steps):
        t = float(i + 1)
        if what == "put-rule":
            spec = {"name": "r", "template": "cpu-high", "params": {"threshold": x},
                    "scope": {"matchers": [f'env="{env}"'] if env else []}}
            inp: Any = put("rule", spec, rid=f"q{i}")
        elif what == "delete-rule":
            inp = delete("rule", "r")
        elif what == "event":
            inp = cpu(t, x, env)
        else:
            inp = ev("DeviceCPUNormal", t)
        restarted.core = RulesCore(rules_file)
        restarted.state = msgspec.json.decode(msgspec.json.encode(restarted.state), type=dict[str, StateValue])
        a = [(o.msg_id, msgspec.json.encode(o.payload)) for o in long_running.step(inp, t)]
        b = [(o.msg_id, msgspec.json.encode(o.payload)) for o in restarted.step(inp, t)]
        assert a == b
    assert long_running.state == restarted.state
