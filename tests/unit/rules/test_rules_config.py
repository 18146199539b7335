"""Event rule configuration: loading, strictness, the default set, parameter resolution."""

from __future__ import annotations

from typing import Any

import pytest

from stages.rules.effective import Catalog, FireAction, ResolveAction, ResolveAllAction, RuleBook
from stages.rules.rules import (
    DEFAULT_RULES,
    FireRule,
    Override,
    RuleGroup,
    RulesConfigError,
    legacy_layer,
    load_rules,
)

GOOD: dict[str, Any] = {
    "groups": [
        {
            "name": "cpu_usage",
            "fire": [
                {
                    "reason": "DeviceCPUUsage",
                    "severity": "warning",
                    "value_field": "cpu_percent",
                    "threshold": 90,
                    "for": 30,
                    "keep_firing_for": 60,
                    "overrides": [
                        {"org": "acme", "threshold": 70},
                        {"match": {"environment": "production"}, "threshold": 80, "for": 0},
                    ],
                }
            ],
            "resolve": ["DeviceRebooted"],
        },
        {"name": "mem", "fire": [{"reason": "MemHigh"}], "resolve": ["DeviceRebooted"]},
    ],
    "resolve_all": ["ResourceDeleted"],
    "field_labels": {"environment": "env"},
}


def test_load_good_config() -> None:
    rules = load_rules(GOOD)
    rule = rules.groups[0].fire[0]
    assert rule.for_ == 30 and rule.keep_firing_for == 60 and rule.overrides[1].for_ == 0
    c = Catalog(rules).base
    fire = c.action("DeviceCPUUsage")
    assert isinstance(fire, FireAction) and fire.group == "cpu_usage"
    assert fire.entry.template.name == "DeviceCPUUsage" and fire.entry.source == "file"
    assert c.action("DeviceRebooted") == ResolveAction(("cpu_usage", "mem"))
    assert c.action("ResourceDeleted") == ResolveAllAction()
    assert c.action("Nope") is None
    # the file extends the built-in rules (it used to replace them)
    assert isinstance(c.action("DeviceDisconnected"), FireAction)
    assert c.action("DeviceDecommissioned") == ResolveAllAction()
    assert not c.problems


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    import copy

    cfg = copy.deepcopy(GOOD)
    node: Any = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({**GOOD, "grups": []}, "unknown field `grups`"),
        (_with(["groups", 0, "fire", 0, "treshold"], 1), "unknown field `treshold`"),
        (_with(["groups", 0, "fire", 0, "overrides", 0, "mach"], {}), "unknown field `mach`"),
        (_with(["groups", 0, "fire", 0, "for"], -1), "for"),
        (_with(["groups", 0, "fire", 0, "for"], "5m"), "durations are numbers of seconds"),
        (_with(["groups", 0, "fire", 0, "threshold"], None), "value_field and threshold go together"),
        (_with(["groups", 0, "fire", 0, "overrides"], [{"threshold": 1}]), "needs `org` or `match`"),
        (_with(["groups", 0, "fire", 0, "overrides"], [{"org": "a"}]), "must set threshold"),
        (_with(["groups", 1, "fire"], [{"reason": "DeviceCPUUsage"}]), "fires in two groups"),
        (_with(["groups", 1, "name"], "cpu_usage"), "defined twice"),
        (_with(["groups", 1, "fire"], []), "at least one fire rule"),
        (_with(["resolve_all"], ["MemHigh"]), "resolve_all"),
        (_with(["groups", 1, "resolve"], ["MemHigh"]), "both fires"),
        (_with(["field_labels"], {"severity": "sev"}), "cannot be mapped"),
        (_with(["field_labels"], {"bad-name": "x"}), "not a valid label name"),
        (_with(["groups", 1, "fire", 0, "overrides"], [{"org": "a", "threshold": 3}]), "no value_field"),
    ],
    ids=[
        "unknown-top", "unknown-rule", "unknown-override", "negative-for", "duration-text",
        "threshold-without-value", "override-unscoped", "override-empty", "reason-twice", "group-twice",
        "empty-group", "resolve-all-conflict", "fire-and-resolve", "reserved-label", "bad-label",
        "threshold-override-without-field",
    ],
)
def test_load_rejects(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesConfigError, match=message):
        load_rules(cfg)


def test_default_rules_shape() -> None:
    c = Catalog(None).base
    groups = {g.name: sorted(r.reason for r in g.fire) for g in DEFAULT_RULES.groups}
    assert groups == {
        "connectivity": ["DeviceDisconnected"],
        "application": ["DeviceApplicationDegraded", "DeviceApplicationError"],
        "cpu": ["DeviceCPUCritical", "DeviceCPUWarning"],
        "memory": ["DeviceMemoryCritical", "DeviceMemoryWarning"],
        "disk": ["DeviceDiskCritical", "DeviceDiskWarning"],
    }
    assert c.action("DeviceConnected") == ResolveAction(("connectivity",))
    assert c.action("DeviceDecommissioned") == ResolveAllAction()
    # the default set round-trips through its own config format
    import msgspec

    assert load_rules(msgspec.to_builtins(DEFAULT_RULES)) == DEFAULT_RULES


RULE = FireRule(
    reason="R",
    value_field="v",
    threshold=90,
    for_=10,
    keep_firing_for=20,
    overrides=[
        Override(org="acme", threshold=70),
        Override(match={"env": "prod"}, threshold=80, for_=0),
        Override(match={"env": "prod", "tier": "gold"}, threshold=50, keep_firing_for=5),
        Override(match={"site": "lab"}, keep_firing_for=1),
    ],
)


@pytest.mark.parametrize(
    ("org", "labels", "fields", "want"),
    [
        ("o", {}, {}, (90, 10, 20)),
        ("acme", {}, {}, (70, 10, 20)),
        ("acme", {"env": "prod"}, {}, (70, 0, 20)),  # first match per parameter
        ("o", {"env": "prod", "tier": "gold"}, {}, (80, 0, 5)),
        ("o", {"env": "dev"}, {"site": "lab"}, (90, 10, 1)),  # fields match names that are not labels
        ("o", {"site": "x"}, {"site": "lab"}, (90, 10, 20)),  # a label shadows a field of the same name
    ],
    ids=["default", "org", "org-then-group", "per-parameter", "field", "label-shadows-field"],
)
def test_params_resolution(
    org: str, labels: dict[str, str], fields: dict[str, Any], want: tuple[float, float, float]
) -> None:
    book = RuleBook([legacy_layer([RuleGroup(name="g", fire=[RULE])], "file")], field_labels={}, ops=["insert"])
    entry = book.entries["R"]
    p = book.params(entry, book.applying(entry, org, labels, fields))
    assert (p.threshold, p.for_, p.keep_firing_for) == want
