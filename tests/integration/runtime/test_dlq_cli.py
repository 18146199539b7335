"""`tocsin dlq list|show|replay|delete` against a real stage's dead letters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from contracts.partition import partition_of
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream

from .helpers import COUNTS, EVENTS, Worker, event, publish_events, read_all, wait_ready

pytestmark = pytest.mark.integration

P = 4


def _dlq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.application.cli", "dlq", *args, "--nats-url", url],
                          capture_output=True, text=True, timeout=60)


async def _letters(nc, p: int, count: int) -> list[tuple[str, bytes, dict[str, str]]]:  # type: ignore[no-untyped-def]
    with anyio.fail_after(20):
        while True:
            dl = await read_all(nc, COUNTS, COUNTS.dlq_filter(p))
            if len(dl) >= count:
                return dl
            await anyio.sleep(0.1)


async def test_list_show_replay_delete(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_partitions(js, nc, P)
    await ensure_stream(js, EVENTS)
    w = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=600)
    w.start()
    await wait_ready(tmp_path / "w-w1")
    p = 1
    org = next(f"o{i}" for i in range(1000) if partition_of(f"o{i}", P) == p)
    await js.publish(EVENTS.out(p, "event"), b"{not json")
    await publish_events(nc, [event(1, org, "r", reason="Poison")], P)
    await _letters(nc, p, 2)

    listed = _dlq(nats_server.url, "list")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["stage"] for r in rows] == ["counter", "counter"]
    assert rows[0]["reason"].startswith("cannot decode") and "poison" in rows[1]["reason"]
    assert all(r["ref"].startswith(f"{COUNTS.stream}:") and r["replayable"] for r in rows)
    assert _dlq(nats_server.url, "list", "--stream", EVENTS.stream).stdout == ""  # a stream with none

    shown = _dlq(nats_server.url, "show", rows[0]["ref"])
    assert shown.returncode == 0, shown.stderr
    full = json.loads(shown.stdout)
    assert full["payload"] == "{not json" and full["input_subject"] == EVENTS.out(p, "event")

    # Replaying the poison event: the stage sees it again (a new input), refuses it again, and
    # the replayed dead letter is gone; replaying it twice is refused, it no longer exists.
    replayed = _dlq(nats_server.url, "replay", rows[1]["ref"])
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {rows[1]['ref']} to {EVENTS.out(p, 'event')}" in replayed.stdout
    with anyio.fail_after(20):  # the replayed one is deleted, the new one comes
        while (dl := await _letters(nc, p, 2))[-1][0] == rows[1]["subject"]:
            await anyio.sleep(0.1)
    again = json.loads(dl[-1][1])
    assert "poison" in again["reason"] and again["stream_seq"] > rows[1]["input_seq"]
    after = [json.loads(line)["ref"] for line in _dlq(nats_server.url, "list").stdout.splitlines()]
    assert rows[1]["ref"] not in after and len(after) == 2
    assert _dlq(nats_server.url, "replay", rows[1]["ref"]).returncode == 1

    deleted = _dlq(nats_server.url, "delete", rows[0]["ref"])
    assert deleted.returncode == 0 and f"deleted {rows[0]['ref']}" in deleted.stdout
    assert len(_dlq(nats_server.url, "list").stdout.splitlines()) == 1
    # Only dead letters can be deleted through it: a stage's progress record is refused.
    progress = await js.get_last_msg(COUNTS.stream, COUNTS.progress(p))
    refused = _dlq(nats_server.url, "delete", f"{COUNTS.stream}:{progress.seq}")
    assert refused.returncode == 1 and "is not a dead letter" in refused.stderr
    assert _dlq(nats_server.url, "show", "nonsense").returncode == 2
    w.stop()
    await nc.close()
