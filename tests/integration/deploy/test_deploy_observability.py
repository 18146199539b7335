"""Tocsin's own dashboard and alerting rules: the rules load in promtool, the chart ships them,
and every metric the dashboard and the rules query exists in a running Tocsin's /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.application.app import Endpoints, Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer, PostgresServer
from tests.pipeline_process import running

from .chart import CHART, render

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
RULES = CHART / "files" / "tocsin-rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "tocsin-dashboard.json"
_METRIC = re.compile(r"\b(?:tocsin|alertmanager)_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_sum", "_count")


def _exprs() -> list[str]:
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    panels = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return rules + panels


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("TOCSIN_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is required (TOCSIN_REQUIRE_PROMETHEUS) but not installed")
        pytest.skip("promtool (Debian's prometheus) is not installed")
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout


def test_the_chart_ships_the_rules_as_a_prometheus_rule() -> None:
    assert render().of_kind("PrometheusRule") == []  # off by default
    (rule,) = render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}).of_kind("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


@pytest.fixture
async def tocsin(nats_server: NatsServer, postgres_server: PostgresServer, tmp_path: Path) -> AsyncIterator[Endpoints]:
    config = "route: {receiver: r}\nreceivers: [{name: r, webhook_configs: [{url: 'http://127.0.0.1:9/x'}]}]\n"
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, postgres_dsn=postgres_server.dsn,
                        listen="127.0.0.1:0", loaded=load_text(config), partitions=2)
    async with running(settings, ["source", "rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


async def test_every_queried_metric_exists(tocsin: Endpoints) -> None:
    async with httpx.AsyncClient() as http:
        text = (await http.get(tocsin.metrics_url)).text
    exposed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    exposed |= {name.removesuffix("_total") for name in exposed}
    queried = {m for expr in _exprs() for m in _METRIC.findall(expr)}
    assert len(queried) >= 10
    missing = sorted(m for m in queried if m not in exposed and not (
        m.endswith(_SUFFIXES) and m.rsplit("_", 1)[0] in exposed) and m.removesuffix("_total") not in exposed)
    assert missing == [], f"queried but not exposed: {missing}"
