"""A crash test around rule changes (issue #25): thresholds of API rules change mid-stream while
``tocsin run rules`` is SIGKILLed at random moments and restarted; its outputs equal those of a
calm run over the same inputs, none twice.

A change is a ``RuleCommand`` in the stage's input stream (EVENTS, the organisation's partition),
applied into the stage's state in the same atomic commit as its progress: the events before it
are judged by the old rule and those after it by the new one, whenever the process died. The
servers and helpers are the stateful stages' crash test's (tests/integration/stages/test_stage_crash.py);
the kills here come after every chunk of inputs, so each restarted process judges events by
rules an earlier one applied.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from contracts import Event, RuleCommand, encode
from contracts.partition import partition_of
from pipeline.foundation.embedded import start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.subjects import EVENTS, StreamNames
from tests.integration.stages.test_stage_crash import CONFIG, T0, Inputs, P, drained, normalise

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHUNK = 250  # inputs published between two kills (each holds about ten rule changes)
TEMPLATE = {"name": "cpu-high", "fire": ["DeviceCPUUsage"], "resolve": ["DeviceCPUNormal"],
            "params": {"value_field": "cpu_percent", "threshold": 90, "severity": "warning"},
            "annotations": {"summary": "CPU {{ .Fields.cpu_percent }}% over {{ .Params.threshold }}"}}


def inputs(rng: random.Random, n: int = 2000) -> Inputs:
    orgs = [f"org{i}" for i in range(12)]
    out: Inputs = [("events", RuleCommand(action="put", org=org, kind="template", name="cpu-high", at=T0,
                                          spec=TEMPLATE, request_id=f"t-{org}")) for org in orgs]
    for i in range(n):
        org = rng.choice(orgs)
        if i % 25 == 0:  # a change of one org's rule: its threshold, its `for`, or gone
            grp = rng.choice(["grp-1", "grp-2"])
            name = f"cpu-{grp}"
            if rng.random() < 0.15:
                out.append(("events", RuleCommand(action="delete", org=org, kind="rule", name=name, at=T0 + i)))
            else:
                spec = {"name": name, "template": "cpu-high", "scope": {"org": org, "matchers": [f'group_id="{grp}"']},
                        "params": {"threshold": rng.choice([60, 70, 80, 90]), "for": rng.choice([0, 0, 30])}}
                out.append(("events", RuleCommand(action="put", org=org, kind="rule", name=name, at=T0 + i,
                                                  spec=spec, request_id=f"r{i}")))
            continue
        dev = f"dev{rng.randrange(6)}"
        reason = rng.choice(["DeviceCPUUsage", "DeviceCPUUsage", "DeviceCPUUsage", "DeviceCPUNormal",
                             "DeviceDisconnected", "DeviceConnected"])
        fields = {"group_id": f"grp-{1 + int(dev[-1]) % 2}", "cpu_percent": rng.choice([55, 65, 75, 85, 95])}
        out.append(("events", Event(id=f"e{i}", org=org, reason=reason, resource_kind="device", resource_name=dev,
                                    occurred_at=T0 + i, message=f"m{i}", fields=fields)))
    return out


async def run_rules(feed: Inputs, tmp: Path, rng: random.Random, *, kill: bool) -> list[tuple[str, Any]]:
    """The outputs (and dead letters) of ``tocsin run rules`` over ``feed``, published in chunks.
    With ``kill``, the process is SIGKILLed after each chunk is published (at once or a moment
    later: while it is applying the chunk, its rule changes included) and started again, so
    every later event depends on rules applied by an earlier process."""
    async with start_nats(tmp / "nats") as ns:
        nc = await connect(ns.url)
        js = nc.jetstream()
        await ensure_partitions(js, nc, P)
        await ensure_stream(js, EVENTS)
        (tmp / "am.yml").write_text(CONFIG)
        args = [sys.executable, "-m", "pipeline.application.cli", "run", "rules", "--nats-url", ns.url,
                "--partitions", str(P), "--config.file", str(tmp / "am.yml"), "--storage.path", str(tmp / "w"),
                "--log-level", "warning", "--deployment", "separate"]
        log = open(tmp / "stage.log", "ab")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            for c in range(0, len(feed), CHUNK):
                for j, (_, msg) in enumerate(feed[c:c + CHUNK], c):
                    await js.publish(EVENTS.out(partition_of(msg.org, P), "x", str(j)),  # type: ignore[attr-defined]
                                     encode(msg))
                if kill and c:
                    await anyio.sleep(rng.choice([0.0, 0.02, 0.05, 0.1, 0.2]))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
                with anyio.fail_after(120):
                    while not await drained(nc, "rules", ["events"]):
                        await anyio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
        out = StreamNames("alerts")
        msgs: list[tuple[str, Any]] = []
        async for m in read_messages(js, out.stream, f"{out.prefix}.out.>"):
            msgs.append(((m.headers or {}).get("Nats-Msg-Id", ""), normalise(m.data)))
        async for m in read_messages(js, out.stream, f"{out.prefix}.dlq.>"):
            msgs.append(("dlq", msgspec.json.decode(m.data)["reason"]))
        await nc.close()
        return msgs


async def test_rule_changes_survive_crashes(tmp_path: Path) -> None:
    rng = random.Random("crash-rule-changes")
    feed = inputs(rng)
    calm = await run_rules(feed, tmp_path / "calm", rng, kill=False)
    crashed = await run_rules(feed, tmp_path / "crashed", rng, kill=True)
    fired_by_rules = [m for i, m in calm if i != "dlq" and m["alert"]["labels"]["alertname"] == "DeviceCPUUsage"]
    assert len(fired_by_rules) > 100, "the API rules made too few alerts to tell"
    assert not [m for i, m in calm if i == "dlq"], "a rule command was dead-lettered"
    ids = collections.Counter(i for i, _ in crashed if i != "dlq")
    assert not [i for i, n in ids.items() if n > 1], "an output was published twice"
    key = lambda x: msgspec.json.encode(x)  # noqa: E731
    assert sorted(crashed, key=key) == sorted(calm, key=key)
