"""Escalation steps are durable timers: the filter stage (`tocsin run filter`, its own process)
SIGKILLed again and again around the steps' deadlines still sends each step of each group
exactly once (one output per step id in the sends stream, none missing, none twice)."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from contracts import Alert, GroupFlush
from contracts.labels import fingerprint
from pipeline.foundation.embedded import start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.subjects import StreamNames
from tests.integration.stages.test_stage_crash import Inputs, P, drained, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = (2.0, 3.5, 5.0)
CONFIG = f"""
route:
  receiver: level0
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 4h
receivers:
  - name: level0
    webhook_configs: [{{url: 'http://127.0.0.1:9/0'}}]
  - name: level1
    webhook_configs: [{{url: 'http://127.0.0.1:9/1'}}]
  - name: level2
    webhook_configs: [{{url: 'http://127.0.0.1:9/2'}}]
  - name: level3
    webhook_configs: [{{url: 'http://127.0.0.1:9/3'}}]
tocsin:
  escalation:
    policies:
      - name: critical
        matchers: ['severity="critical"']
        steps:
          - {{after: {int(STEPS[0] * 1000)}ms, receivers: [level1]}}
          - {{after: {int(STEPS[1] * 1000)}ms, receivers: [level2]}}
          - {{after: {int(STEPS[2] * 1000)}ms, receivers: [level3]}}
"""
GROUPS = 60


def flushes(t: float) -> Inputs:
    out: Inputs = []
    for i in range(GROUPS):
        org, labels = f"org{i % 12}", {"alertname": f"A{i}", "severity": "critical"}
        alert = Alert(fingerprint=fingerprint(labels), org=org, labels=labels, starts_at=t)
        out.append(("groups", GroupFlush(
            org=org, group_key=f'{{}}:{{alertname="A{i}"}}', group_id=f"g{i}", route_id="0", receiver="level0",
            group_labels={"alertname": f"A{i}"}, alerts=[alert], flush_seq=1, flushed_at=t + (i % 5) * 0.2,
            group_interval=3600, repeat_interval=4 * 3600)))
    return out


async def test_each_step_is_sent_once_across_sigkills(tmp_path: Path) -> None:
    rng = random.Random("escalation-crash")
    async with start_nats(tmp_path / "nats") as ns:
        nc = await connect(ns.url)
        js = nc.jetstream()
        await ensure_partitions(js, nc, P)
        for name in ("groups", "alerts", "commands"):
            await ensure_stream(js, StreamNames(name))
        (tmp_path / "am.yml").write_text(CONFIG)
        args = [sys.executable, "-m", "pipeline.application.cli",
                "run", "filter", "--nats-url", ns.url, "--partitions", str(P),
                "--config.file", str(tmp_path / "am.yml"), "--storage.path", str(tmp_path / "w"),
                "--log-level", "warning", "--deployment", "separate"]
        log = open(tmp_path / "stage.log", "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        kills = 0
        try:
            with anyio.fail_after(60):
                while not await drained(nc, "filter", ["groups"]):  # started: its consumers exist
                    await anyio.sleep(0.2)
            t = time.time()
            inputs = flushes(t)
            await publish(nc, inputs)
            # kill it at random moments until past the last step (each restart replays what was not committed)
            while time.time() < t + STEPS[-1] + 1.5:
                await anyio.sleep(rng.uniform(0.2, 0.7))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            expected = {f"org{i % 12}/g{i}/level{k}/webhook/0/{'1' if k == 0 else f'esc1.{k - 1}'}"
                        for i in range(GROUPS) for k in range(4)}
            sends = StreamNames("sends")
            ids: collections.Counter[str] = collections.Counter()
            with anyio.fail_after(60):
                while set(ids) != expected:
                    await anyio.sleep(0.5)
                    ids = collections.Counter()
                    async for m in read_messages(js, sends.stream, f"{sends.prefix}.out.>"):
                        ids[(m.headers or {}).get("Nats-Msg-Id", "")] += 1
                    if set(ids) - expected:
                        break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
        async for m in read_messages(js, sends.stream, f"{sends.prefix}.out.>"):
            doc = msgspec.json.decode(m.data)
            assert doc["receiver"] == f"level{doc.get('escalation_level', 0)}"
        await nc.close()
    assert kills >= 5
    assert set(ids) == expected, sorted(set(ids) ^ expected)[:10]
    assert [i for i, n in ids.items() if n > 1] == [], "a step was sent twice"
