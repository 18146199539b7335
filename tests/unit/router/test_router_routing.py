"""Routing an alert to its aggregation groups (stages.router.config.RouteTable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from router_fold import table

from pipeline.foundation.amconfig import compile_routes, group_key, load_config_text
from stages.router.config import RouteTable, group_id_of

CONFIG = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: [team="db"]
      receiver: db
      group_by: [alertname, cluster]
      routes:
        - matchers: [severity="critical"]
          receiver: db-pager
          continue: true
        - matchers: ['severity=~"critical|warning"']
          receiver: db-chat
          group_by: []
    - matchers: [team="web"]
      receiver: web
      group_by: ['...']
      continue: true
    - matchers: [team="web"]
      receiver: web-audit
      continue: true
    - matchers: [team="api"]
      receiver: api-chat
      continue: true
    - matchers: [team="api"]
      receiver: api-pager
    - matchers: ['team=~"web|api"']
      receiver: frontline
receivers:
  - {name: default}
  - {name: db}
  - {name: db-pager}
  - {name: db-chat}
  - {name: web}
  - {name: web-audit}
  - {name: api-chat}
  - {name: api-pager}
  - {name: frontline}
"""

ACME = """
route:
  receiver: acme-all
  group_by: []
  routes:
    - matchers: [severity="page"]
      receiver: acme-pager
      group_by: [alertname]
receivers: [{name: acme-all}, {name: acme-pager}]
"""

# (labels, org, [(receiver, route id, group key)]) written from Alertmanager's rules:
# first matching child wins unless continue, a parent with no matching child is the match,
# group labels are the alert's labels named in group_by (all of them with '...').
CASES = [
    pytest.param({"alertname": "A", "team": "db", "severity": "critical", "cluster": "c1"}, "o1", [
        ("db-pager", "0.0.0", '{}/{team="db"}/{severity="critical"}:{alertname="A", cluster="c1"}'),
        ("db-chat", "0.0.1", '{}/{team="db"}/{severity=~"critical|warning"}:{}'),
    ], id="nested-continue-then-next-sibling"),
    pytest.param({"alertname": "A", "team": "db", "severity": "info"}, "o1", [
        ("db", "0.0", '{}/{team="db"}:{alertname="A"}'),
    ], id="parent-when-no-child-matches-missing-group-label"),
    pytest.param({"alertname": "B", "team": "web", "instance": "i1"}, "o1", [
        ("web", "0.1", '{}/{team="web"}:{alertname="B", instance="i1", team="web"}'),
        ("web-audit", "0.2", '{}/{team="web"}:{alertname="B"}'),
        ("frontline", "0.5", '{}/{team=~"web|api"}:{alertname="B"}'),
    ], id="group-by-all-and-continue-chain"),
    pytest.param({"alertname": "C", "team": "api"}, "o1", [
        ("api-chat", "0.3", '{}/{team="api"}:{alertname="C"}'),
        ("api-pager", "0.4", '{}/{team="api"}:{alertname="C"}'),
    ], id="same-key-two-receivers"),
    pytest.param({"alertname": "D"}, "o1", [("default", "0", '{}:{alertname="D"}')], id="root"),
    pytest.param({"alertname": 'say "hi"\n', "x": "é"}, "o1", [
        ("default", "0", '{}:{alertname="say \\"hi\\"\\n"}'),
    ], id="go-quoting"),
    pytest.param({"alertname": "E", "severity": "page"}, "acme", [
        ("acme-pager", "0.0", '{}/{severity="page"}:{alertname="E"}'),
    ], id="org-tree"),
    pytest.param({"alertname": "E", "team": "db"}, "acme", [("acme-all", "0", "{}:{}")], id="org-tree-root"),
    pytest.param({"alertname": "E", "severity": "page"}, "zeta", [("default", "0", '{}:{alertname="E"}')],
                 id="other-org-uses-default"),
]


@pytest.fixture(scope="module")
def routes() -> RouteTable:
    return table(CONFIG, {"acme": ACME})


@pytest.mark.parametrize(("labels", "org", "want"), CASES)
def test_targets(routes: RouteTable, labels: dict[str, str], org: str,
                 want: list[tuple[str, str, str]]) -> None:
    got = routes.targets(org, labels)
    assert [(t.route.receiver, t.route.id, t.group_key) for t in got] == want
    for t in got:
        assert t.group_id == group_id_of(org, t.route.receiver, t.group_key)
        assert len(t.group_id) == 16 and all(c in "0123456789abcdef" for c in t.group_id)
        named = set(labels) if t.route.group_by_all else t.route.group_by & set(labels)
        assert t.group_labels == {k: labels[k] for k in named}


def test_group_ids_separate_orgs_and_receivers(routes: RouteTable) -> None:
    labels = {"alertname": "C", "team": "api"}
    a, b = routes.targets("o1", labels)
    assert a.group_key == b.group_key and a.group_id != b.group_id
    other = routes.targets("o2", labels)
    assert {t.group_id for t in other}.isdisjoint({a.group_id, b.group_id})


def test_version_follows_membership_not_timers() -> None:
    base = table(CONFIG)
    timers = table(CONFIG.replace("group_wait: 30s", "group_wait: 1m").replace("repeat_interval: 4h",
                                                                               "repeat_interval: 1h"))
    renamed = table(CONFIG.replace("receiver: db-chat", "receiver: db").replace("- {name: db-chat}", ""))
    regrouped = table(CONFIG.replace("group_by: [alertname, cluster]", "group_by: [cluster]"))
    assert base.version("o1") == timers.version("o1")
    assert base.version("o1") != renamed.version("o1")
    assert base.version("o1") != regrouped.version("o1")
    per_org = table(CONFIG, {"acme": ACME})
    assert per_org.version("acme") != per_org.version("o1") == base.version("o1")


def test_route_lookup(routes: RouteTable) -> None:
    route = routes.route("o1", "0.0.1")
    assert route is not None and route.receiver == "db-chat"
    assert routes.route("o1", "0.9") is None
    acme = routes.route("acme", "0.0")
    assert acme is not None and acme.receiver == "acme-pager"


# --------------------------------------------------------------------------- against amconfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alertmanager" / "routes"


# Wide fan-outs where children test one label for equality, interleaved with children that
# do not (the router indexes such children by that label's value).
WIDE = """
route:
  receiver: default
  routes:
    - {matchers: [team="a"], receiver: a1, continue: true}
    - {matchers: ['env!="prod"'], receiver: nonprod, continue: true}
    - {matchers: [team="b", env="prod"], receiver: b1}
    - {matchers: [team="a", severity="critical"], receiver: a2}
    - {matchers: ['team=~"a|b"'], receiver: ab, continue: true}
    - {matchers: [team=""], receiver: noteam, continue: true}
    - matchers: [team="b"]
      receiver: b2
      routes:
        - {matchers: [severity="critical"], receiver: b2c, continue: true}
        - {matchers: [severity="warning"], receiver: b2w}
        - {matchers: [severity=~"crit.*"], receiver: b2r}
    - {matchers: [env="prod"], receiver: prod}
receivers: [{name: default}, {name: a1}, {name: a2}, {name: b1}, {name: b2}, {name: b2c}, {name: b2w},
            {name: b2r}, {name: ab}, {name: noteam}, {name: nonprod}, {name: prod}]
"""


def _fixture_configs() -> list[Any]:
    found = [pytest.param(yaml.safe_load(p.read_text())["config"], id=p.stem)
             for p in sorted(FIXTURES.glob("*.yml"))]
    return [*found, pytest.param(CONFIG, id="router-config"), pytest.param(WIDE, id="wide")]


def _values(config_text: str) -> list[str]:
    """Label values that occur in a config (so generated alerts hit its matchers), and some others."""
    found = set()
    for token in config_text.replace("|", " ").replace('"', " ").replace("'", " ").replace("=", " ").split():
        found.add(token.strip("[]{},~!:"))
    return sorted(found | {"", "x", "prod", "critical"})


@pytest.mark.parametrize("config_text", _fixture_configs())
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_matching_equals_amconfig(config_text: str, data: st.DataObject) -> None:
    root = compile_routes(load_config_text(config_text))
    routes = RouteTable(root)
    values = _values(config_text)
    names = [v for v in values if v and v[0].isalpha()][:12]
    labels = data.draw(st.dictionaries(st.sampled_from(names), st.sampled_from(values), max_size=6),
                       label="labels")
    expected = root.match(labels)
    assert routes.match("o1", labels) == expected
    keys: list[tuple[str, str]] = []
    for route in expected:
        key = group_key(route, labels)
        gid = group_id_of("o1", route.receiver, key)
        if gid not in {g for _, g in keys}:
            keys.append((key, gid))
    assert [(t.group_key, t.group_id) for t in routes.targets("o1", labels)] == keys
