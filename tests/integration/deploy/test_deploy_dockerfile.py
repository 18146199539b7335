"""deploy/Dockerfile against the project (no Docker engine here): what it copies is what the package
needs and what .dockerignore lets through, and it runs `tocsin` as the user the chart expects."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field

import pytest
import yaml

from tests.integration.deploy.chart import CHART, REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [a for o, a in self.instructions if o == op]


def parse(text: str) -> list[Stage]:
    """Build stages of a Dockerfile: instructions with continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        op, _, rest = logical.partition(" ")
        logical = ""
        if op.upper() == "FROM":
            words = rest.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        else:
            stages[-1].instructions.append((op.upper(), rest.strip()))
    return stages


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_builder_makes_wheels_and_runtime_is_slim_python_311(stages: list[Stage]) -> None:
    assert [(s.base, s.name) for s in stages] == [("python:3.11-slim", "builder"), ("python:3.11-slim", None)]
    assert any("pip wheel" in r for r in stages[0].args("RUN"))
    runtime_runs = " ".join(stages[1].args("RUN"))
    assert "--no-index" in runtime_runs and "from=builder" in runtime_runs


def test_runtime_runs_tocsin_as_the_charts_user(stages: list[Stage]) -> None:
    runtime = stages[-1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert uid == 10001
    assert runtime.args("USER") == [f"{uid}:{uid}"]
    assert f"--uid {uid}" in " ".join(runtime.args("RUN"))
    assert json.loads(runtime.args("ENTRYPOINT")[0]) == ["tocsin"]
    scripts = pyproject()["project"]
    assert isinstance(scripts, dict) and "tocsin" in scripts["scripts"]


def test_builder_copies_every_package_and_dockerignore_lets_them_through(stages: list[Stage]) -> None:
    copied = {src for args in stages[0].args("COPY") for src in args.split()[:-1]}
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    includes = tool["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in includes}
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert copied == packages | {"pyproject.toml", project["readme"]}
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**"  # everything else stays out of the build context
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied == allowed
