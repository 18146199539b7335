"""`tocsin alerts ...` as a runbook uses it, against a running pipeline with static tokens:
fire, list, ack/unack (by fingerprint, matchers, group), resolve, escalation-test, storm-test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

TOKENS = """
- {token: rob-token, subject: rob, orgs: [acme], role: responder, push: true}
- {token: viv-token, subject: viv, orgs: [acme], role: viewer}
"""


def config(url: str) -> str:
    return f"""
route:
  receiver: team
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs: [{{url: {url}/team}}]
  - name: oncall
    webhook_configs: [{{url: {url}/oncall}}]
  - name: manager
    webhook_configs: [{{url: {url}/manager}}]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [instance]
tocsin:
  default_org: acme
  auth:
    mode: static
    static:
      tokens_file: tokens.yml
  escalation:
    policies:
      - name: critical
        matchers: ['severity="critical"']
        steps:
          - {{after: 1m, receivers: [oncall]}}
          - {{after: 2m, receivers: [manager]}}
"""


@pytest.fixture
async def env(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[str, Path, Receiver]]:
    async with http_receiver() as rx:
        (tmp_path / "tokens.yml").write_text(TOKENS)
        (tmp_path / "rob").write_text("rob-token\n")
        (tmp_path / "am.yml").write_text(config(rx.url))
        settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                            loaded=load(tmp_path / "am.yml"), config_file=tmp_path / "am.yml", partitions=2)
        async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep:
            yield ep.api_url, tmp_path / "rob", rx


async def cli(url: str, *args: str, token_file: Path | None = None, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipeline.application.cli", "alerts", "--url", url]
    if token_file is not None:
        cmd += ["--token-file", str(token_file)]
    return await anyio.to_thread.run_sync(lambda: subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}))


async def listed(url: str, token: Path) -> list[dict]:
    r = await cli(url, "list", "--json", token_file=token)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


async def test_runbook(env: tuple[str, Path, Receiver]) -> None:
    url, token, _ = env
    r = await cli(url, "fire", "critical_api_down", token_file=token)
    assert r.returncode == 0 and "alertname=ApiDown" in r.stdout, r.stderr
    assert (await cli(url, "fire", "alertname=Custom", "severity=info", token_file=token)).returncode == 0
    with anyio.fail_after(10):
        while len(rows := await listed(url, token)) < 2:
            await anyio.sleep(0.1)
    api_down = next(x for x in rows if x["labels"]["alertname"] == "ApiDown")
    assert (api_down["state"], api_down["level"], api_down["policy"]) == ("firing", 0, "critical")
    # the token from the environment; a viewer may list but not ack
    r = await cli(url, "ack", api_down["fingerprint"], env={"TOCSIN_TOKEN": "viv-token"})
    assert r.returncode == 1 and "403" in r.stderr
    r = await cli(url, "ack", api_down["fingerprint"], "--comment", "on it", token_file=token)
    assert r.returncode == 0, r.stderr
    with anyio.fail_after(5):
        while next(x for x in await listed(url, token) if x["labels"]["alertname"] == "ApiDown")["state"] \
                != "acknowledged":
            await anyio.sleep(0.1)
    assert (await cli(url, "unack", api_down["fingerprint"], token_file=token)).returncode == 0
    assert (await cli(url, "ack", "--matchers", 'alertname="Custom"', token_file=token)).returncode == 0
    assert (await cli(url, "ack", "--group", api_down["group"], token_file=token)).returncode == 0
    with anyio.fail_after(5):
        while {x["state"] for x in await listed(url, token)} != {"acknowledged"}:
            await anyio.sleep(0.1)
    text = (await cli(url, "list", token_file=token)).stdout
    assert text.startswith("FINGERPRINT") and "acknowledged" in text
    r = await cli(url, "resolve", api_down["fingerprint"], token_file=token)
    assert r.returncode == 0, r.stderr
    with anyio.fail_after(5):
        while any(x["labels"]["alertname"] == "ApiDown" for x in await listed(url, token)):
            await anyio.sleep(0.1)
    r = await cli(url, "ack", token_file=token)
    assert r.returncode == 1 and "exactly one" in r.stderr
    r = await cli("http://127.0.0.1:9", "list", token_file=token)
    assert r.returncode == 1 and "cannot reach" in r.stderr


async def test_escalation_test_prints_each_level(env: tuple[str, Path, Receiver]) -> None:
    url, token, _ = env
    r = await cli(url, "escalation-test", "critical", "--speed", "60", token_file=token)  # 1 s and 2 s
    assert r.returncode == 0, (r.stdout, r.stderr)
    rows = [re.match(r"\+\s*([\d.]+)s\s+level (\d) +(\S+)", line) for line in r.stdout.splitlines()]
    steps = [(float(m[1]), m[2], m[3]) for m in rows if m]
    assert [(lv, rcv) for _, lv, rcv in steps] == [("0", "team"), ("1", "oncall"), ("2", "manager")], r.stdout
    elapsed = [t for t, _, _ in steps]
    assert 0.8 <= elapsed[1] <= 2.0 and 1.8 <= elapsed[2] <= 3.0, elapsed
    assert (await cli(url, "escalation-test", "nope", token_file=token)).returncode == 1


async def test_storm_test_shows_grouping_and_inhibition(env: tuple[str, Path, Receiver]) -> None:
    url, token, _ = env
    r = await cli(url, "storm-test", "--alerts", "120", "--rate", "400", token_file=token)
    assert r.returncode == 0, r.stderr
    assert "pushed 120 alerts" in r.stdout
    assert "120 active, in 4 group(s)" in r.stdout  # grouped by alertname
    assert "; 90 suppressed" in r.stdout  # the 3 warnings of each instance: its critical inhibits them
