"""Route tree compilation and matching (pipeline.foundation.amconfig.routes) against conformance fixtures."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.matchers import matchers_match
from pipeline.foundation.amconfig import (
    RouteNode,
    compile_routes,
    group_key,
    group_key_hash,
    group_labels,
    load_config_text,
    render_matching_tree,
    render_routes_test,
    render_routes_tree,
    route_index,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alertmanager" / "routes"


def _cases() -> list[Any]:
    out = []
    for path in sorted(FIXTURES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for case in doc["cases"]:
            out.append(pytest.param(doc["config"], case, id=f"{path.stem}-{case['name']}"))
    return out


@pytest.mark.parametrize(("config_text", "case"), _cases())
def test_route_conformance(config_text: str, case: dict[str, Any]) -> None:
    root = compile_routes(load_config_text(config_text, "routes.yml"))
    labels = {k: str(v) for k, v in case["labels"].items()}
    matched = root.match(labels)
    if "receivers" in case:
        assert [r.receiver for r in matched] == case["receivers"]
        assert render_routes_test(root, labels) == ",".join(case["receivers"])
    if "expect" in case:
        assert [r.receiver for r in matched] == [e["receiver"] for e in case["expect"]]
        for route, exp in zip(matched, case["expect"], strict=True):
            if "group_by" in exp:
                assert sorted(route.group_by) == exp["group_by"]
            for field in ("group_by_all", "group_wait", "group_interval", "repeat_interval", "key"):
                if field in exp:
                    assert getattr(route, field) == exp[field], field
            if "group_key" in exp:
                assert group_key(route, labels) == exp["group_key"]


ROUTE_ID_CONFIG = """
route:
  receiver: default
  routes:
  - continue: true
    matchers: [foo=bar]
    receiver: test1
    routes:
    - matchers: [bar=baz]
  - continue: true
    matchers: [foo=bar]
    receiver: test1
    routes:
    - matchers: [bar=baz]
  - continue: true
    matchers: [bar=baz]
    receiver: test3
    routes:
    - matchers: [baz=qux]
    - matchers: [qux=corge]
  - continue: true
    matchers: ['qux=~"[a-zA-Z0-9]+"']
  - continue: true
    matchers: ['corge!~"[0-9]+"']
receivers: [{name: default}, {name: test1}, {name: test3}]
"""


def test_ids_keys_and_indices() -> None:
    root = compile_routes(load_config_text(ROUTE_ID_CONFIG))
    nodes = list(root.walk())
    # Alertmanager's Route.ID(): the key with sibling positions (from its TestRouteID).
    assert [n.am_id for n in nodes] == [
        "{}",
        '{}/{foo="bar"}/0',
        '{}/{foo="bar"}/0/{bar="baz"}/0',
        '{}/{foo="bar"}/1',
        '{}/{foo="bar"}/1/{bar="baz"}/0',
        '{}/{bar="baz"}/2',
        '{}/{bar="baz"}/2/{baz="qux"}/0',
        '{}/{bar="baz"}/2/{qux="corge"}/1',
        '{}/{qux=~"[a-zA-Z0-9]+"}/3',
        '{}/{corge!~"[0-9]+"}/4',
    ]
    assert [n.id for n in nodes] == ["0", "0.0", "0.0.0", "0.1", "0.1.0", "0.2", "0.2.0", "0.2.1", "0.3", "0.4"]
    # Sibling routes with equal matchers share a key (hence group keys), as in Alertmanager.
    assert nodes[1].key == nodes[3].key == '{}/{foo="bar"}'
    # Post-order indices: children before parents, root last.
    assert [n.idx for n in nodes] == [9, 1, 0, 3, 2, 6, 4, 5, 7, 8]
    assert route_index(root)["0.2.1"] is nodes[7]
    assert nodes[7].parent is nodes[5]


def test_time_intervals_are_not_inherited_but_labels_are() -> None:
    text = """
route:
  receiver: r
  labels: {tier: one}
  routes:
    - matchers: [a=1]
      mute_time_intervals: [t]
      active_time_intervals: [t]
      labels: {team: x}
      routes:
        - matchers: [b=1]
          labels: {tier: two}
receivers: [{name: r}]
time_intervals: [{name: t, time_intervals: [{weekdays: [monday]}]}]
"""
    nodes = route_index(compile_routes(load_config_text(text)))
    assert nodes["0.0"].mute_time_intervals == ("t",)
    assert nodes["0.0"].active_time_intervals == ("t",)
    assert nodes["0.0.0"].mute_time_intervals == ()
    assert nodes["0.0.0"].active_time_intervals == ()
    assert dict(nodes["0.0.0"].labels) == {"tier": "two", "team": "x"}
    assert dict(nodes["0"].labels) == {"tier": "one"}


def test_group_labels_and_hash() -> None:
    root = compile_routes(load_config_text("route: {receiver: r, group_by: [a, b]}\nreceivers: [{name: r}]\n"))
    assert group_labels(root, {"a": "1", "c": "3"}) == {"a": "1"}
    key = group_key(root, {"a": "1", "c": "3"})
    assert key == '{}:{a="1"}'
    assert group_key_hash(key) == hashlib.sha256(b'{}:{a="1"}').hexdigest()
    assert group_key_hash(key) != group_key_hash('{}:{a="2"}')


SHOW_CONFIG = """
route:
  receiver: default
  routes:
    - matchers: [service="db"]
      receiver: db
      routes:
        - matchers: [severity="critical"]
          receiver: pager
          continue: true
        - matchers: ['severity=~"critical|warning"']
          receiver: chat
    - matchers: ['{service="web", env!="dev"}']
      receiver: web
      continue: true
receivers: [{name: default}, {name: db}, {name: pager}, {name: chat}, {name: web}]
"""


def test_render_routes_tree_like_amtool() -> None:
    assert render_routes_tree(compile_routes(load_config_text(SHOW_CONFIG))) == (
        "Routing tree:\n"
        ".\n"
        "└── default-route  receiver: default\n"
        '    ├── {service="db"}  receiver: db\n'
        '    │\u00a0\u00a0 ├── {severity="critical"}  continue: true  receiver: pager\n'
        '    │\u00a0\u00a0 └── {severity=~"critical|warning"}  receiver: chat\n'
        '    └── {env!="dev",service="web"}  continue: true  receiver: web\n'
        "\n"  # amtool (treeprint) pads continuing branches with no-break spaces and ends with a blank line
    )


def test_render_matching_tree_like_amtool() -> None:
    root = compile_routes(load_config_text(SHOW_CONFIG))
    labels = {"service": "db", "severity": "critical"}
    assert render_routes_test(root, labels) == "pager,chat"
    assert render_matching_tree(root, labels) == (
        "Matching routes:\n"
        ".\n"
        "└── default-route\n"
        '    └── {service="db"}\n'
        '        ├── {severity="critical"}  receiver: pager\n'
        '        └── {severity=~"critical|warning"}  receiver: chat\n'
        "\n"
    )
    assert render_routes_test(root, {"service": "x"}) == "default"


# --------------------------------------------------------------------------- properties

_NAMES = ["a", "b", "c"]
_VALUES = ["", "1", "2"]
_matcher_text = st.builds(
    lambda n, op, v: f'{n}{op}"{v}"',
    st.sampled_from(_NAMES),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(["1", "2", "1|2", ".*", ""]),
)


@st.composite
def route_trees(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = {
        "matchers": draw(st.lists(_matcher_text, min_size=1, max_size=2)),
        "continue": draw(st.booleans()),
    }
    if depth < 2:
        node["routes"] = draw(st.lists(route_trees(depth + 1), max_size=3))
    return node


def _tree_config(children: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"route": {"receiver": "r", "routes": children}, "receivers": [{"name": "r"}]})


def _ancestors(node: RouteNode) -> list[RouteNode]:
    out = []
    while node is not None:
        out.append(node)
        node = node.parent  # type: ignore[assignment]
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(route_trees(), max_size=4), st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(_VALUES), max_size=3)
)
def test_match_invariants(children: list[dict[str, Any]], labels: dict[str, str]) -> None:
    root = compile_routes(load_config_text(_tree_config(children)))
    matched = root.match(labels)
    assert matched, "the root always matches"
    for route in matched:
        # A matched route and all its ancestors match the labels...
        assert all(matchers_match(n.matchers, labels) for n in _ancestors(route))
        # ...and it is a leaf of the matching: none of its children match.
        assert not any(matchers_match(c.matchers, labels) for c in route.routes)
    ids = [r.id for r in matched]
    assert ids == sorted(set(ids), key=lambda i: [int(p) for p in i.split(".")]), "tree order, no duplicates"
    if not any(n.continue_ for n in root.walk()):
        assert len(matched) == 1
