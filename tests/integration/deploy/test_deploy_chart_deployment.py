"""The chart's deployment switch: chained (the default: one stateful Deployment, `chain`) or
separate (a Deployment per stateful stage); every pod is told which, and Tocsin's alerting rules
and dashboard read in both."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, DEFAULT_DEPLOYMENT, Rendered, container, render

pytestmark = pytest.mark.integration

NATS = {"nats": {"url": "nats://nats:4222"}}
SOURCE = {"stages": {"source": {"enabled": True}}, "postgres": {"existingSecret": "pg"}}
DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "tocsin-dashboard.json"


def by_stage(r: Rendered, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in r.of_kind(kind)
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component")}


@pytest.mark.parametrize("deployment,stages", [
    (None, {"source", "chain", "notifier", "api"}),
    ("chained", {"source", "chain", "notifier", "api"}),
    ("separate", {"source", "rules", "router", "filter", "notifier", "api"}),
], ids=["default", "chained", "separate"])
def test_the_deployment_picks_the_stateful_stages(deployment: str | None, stages: set[str]) -> None:
    r = render({**NATS, **SOURCE, **({} if deployment is None else {"deployment": deployment})})
    deployment = deployment or "chained"
    deployments = by_stage(r, "Deployment")
    assert set(deployments) == stages
    for stage, d in deployments.items():
        args = container(d)["args"]
        assert args[:2] == ["run", stage], stage
        # the value recorded in TOCSIN_META: every pod, the source and the API too, must say the same
        assert [a for a in args if a.startswith("--deployment")] == [f"--deployment={deployment}"], stage
    for kind in ("PodDisruptionBudget", "Service"):  # the metrics Services: one job per stage
        assert set(by_stage(r, kind)) == stages, kind
    assert f"deployment={deployment}: " in r.notes


def test_the_default_is_chained() -> None:
    assert DEFAULT_DEPLOYMENT == "chained"
    assert yaml.safe_load((CHART / "values.yaml").read_text())["deployment"] == "chained"
    assert json.loads((CHART / "values.schema.json").read_text())["properties"]["deployment"]["default"] == "chained"


def test_autoscaling_follows_the_deployment() -> None:
    hpa = {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}}
    values = {**NATS, "stages": {"chain": hpa, "rules": hpa}}
    assert set(by_stage(render(values), "HorizontalPodAutoscaler")) == {"chain"}
    assert set(by_stage(render({**values, "deployment": "separate"}), "HorizontalPodAutoscaler")) == {"rules"}


def test_an_unknown_deployment_is_refused() -> None:
    with pytest.raises(Exception, match="deployment"):
        render({**NATS, "deployment": "fused"})


def _exprs() -> list[str]:
    rules = yaml.safe_load((CHART / "files" / "tocsin-rules.yml").read_text())
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [r["expr"] for g in rules["groups"] for r in g["rules"]] + [t["expr"] for p in panels for t in p["targets"]]


def test_rules_and_dashboard_read_the_stage_label_in_both_deployments() -> None:
    """The stage a metric is about is its `stage` label (chain, or rules/router/filter), never a
    job or pod name, and no query names one deployment's stages: the same rules fit both."""
    exprs = _exprs()
    assert any("by (stage" in e for e in exprs)
    for e in exprs:
        assert not re.search(r"\bstage\s*[=!]~?\s*\"", e), e  # e.g. stage="router": gone when chained
        assert not re.search(r"\b(job|pod|component)\b", e), e
