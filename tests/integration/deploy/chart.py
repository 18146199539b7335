"""Rendering the Helm chart with real Helm (the ``helm-python-sdk`` library) for the chart tests.

Offline: the NATS subchart is not vendored (``helm dependency update`` fetches it), so renders
hold Tocsin's own objects only; lint's one finding about it is expected.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHART",
    "DEFAULT_DEPLOYMENT",
    "MISSING_NATS",
    "RELEASE",
    "NAMESPACE",
    "STAGES",
    "STAGES_OF",
    "Rendered",
    "ci_values",
    "container",
    "env_of",
    "load_values",
    "merge_values",
    "render",
]

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "tocsin"
# The stages of each deployment (values `deployment`), in pipeline order; STAGES: all of them.
STAGES_OF = {"chained": ("source", "chain", "notifier", "api"),
             "separate": ("source", "rules", "router", "filter", "notifier", "api")}
DEFAULT_DEPLOYMENT = "chained"
STAGES = ("source", "rules", "router", "filter", "chain", "notifier", "api")
RELEASE = "tocsin"
NAMESPACE = "monitoring"
# helm lint's finding while the optional NATS subchart has not been fetched.
MISSING_NATS = "chart directory is missing these dependencies: nats"


@functools.cache
def _chart() -> Any:
    import helm_python

    return helm_python.Chart.load(str(CHART))


def load_values(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: values must be a mapping"
    return data


def ci_values() -> list[Path]:
    """Every ci/*-values.yaml of the chart (chart-testing's convention)."""
    return sorted((CHART / "ci").glob("*-values.yaml"))


@dataclass(frozen=True)
class Rendered:
    files: dict[str, str]  # template path -> rendered text
    objects: list[dict[str, Any]]  # every Kubernetes object, tests hooks included

    @property
    def notes(self) -> str:
        return next((text for name, text in self.files.items() if name.endswith("NOTES.txt")), "")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        assert found is not None, f"no {kind} {name}; have {[o['metadata']['name'] for o in self.of_kind(kind)]}"
        return found

    def stage_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Objects of ``kind`` that belong to a stage, by stage (app.kubernetes.io/component)."""
        out: dict[str, dict[str, Any]] = {}
        for o in self.of_kind(kind):
            stage = o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
            if stage in STAGES:
                assert stage not in out, f"two {kind}s for stage {stage}"
                out[stage] = o
        return out


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE) -> Rendered:
    """`helm template` of the chart; raises helm_python's HelmValuesError / HelmRenderError."""
    files = _chart().render(values=values, name=release, namespace=namespace)
    objects: list[dict[str, Any]] = []
    for name, text in files.items():
        if name.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(files=files, objects=objects)


def merge_values(values: dict[str, Any] | None) -> dict[str, Any]:
    """The chart's defaults coalesced with ``values``, as an install computes them."""
    merged: dict[str, Any] = _chart().merge_values(values)
    return merged


def container(obj: dict[str, Any]) -> dict[str, Any]:
    """The single container of a Deployment or Pod."""
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
    containers = spec["containers"]
    assert len(containers) == 1, f"{obj['metadata']['name']}: expected one container"
    c: dict[str, Any] = containers[0]
    return c


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {e["name"]: e for e in c.get("env", [])}
