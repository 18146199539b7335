"""The chart's deployment switch: separate (a Deployment per stateful stage) or chained (one, `chain`)."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import Rendered, container, render

pytestmark = pytest.mark.integration

NATS = {"nats": {"url": "nats://nats:4222"}}


def by_stage(r: Rendered, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in r.of_kind(kind)
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component")}


@pytest.mark.parametrize("deployment,stages", [
    ("separate", {"rules", "router", "filter", "notifier", "api"}),
    ("chained", {"chain", "notifier", "api"}),
])
def test_the_deployment_picks_the_stateful_stages(deployment: str, stages: set[str]) -> None:
    r = render({**NATS, "deployment": deployment})
    deployments = by_stage(r, "Deployment")
    assert set(deployments) == stages
    for stage, d in deployments.items():
        args = container(d)["args"]
        assert args[:2] == ["run", stage] and f"--deployment={deployment}" in args, stage
    stateful = {"rules", "router", "filter", "chain"}
    assert set(by_stage(r, "PodDisruptionBudget")) & stateful == stages & stateful


def test_an_unknown_deployment_is_refused() -> None:
    with pytest.raises(Exception, match="deployment"):
        render({**NATS, "deployment": "fused"})
