"""Poison inputs never block a partition: an input too large to keep, an input whose output or
state is too large to publish, an undecodable or deeply nested one each becomes one dead letter
that fits in a NATS message, and the partition goes on, across restarts, with no stream edit.

Issue #27, item 3 ("an oversized message blocks a partition ... with no dead letter").
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS

from contracts import DeadLetter, Event, encode
from contracts.partition import partition_of
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream, last_message
from pipeline.foundation.runtime.metrics import REGISTRY, stage_metrics
from pipeline.foundation.runtime.partition import Input, PartitionWorker, Progress, StageSpec
from pipeline.foundation.runtime.step import Out, Step
from pipeline.foundation.runtime.subjects import StreamNames
from stages.counter.core import Count

from .helpers import COUNTS, EVENTS, Worker, event, read_all, wait_ready

pytestmark = [pytest.mark.integration]

P = 4
MiB = 1024 * 1024


def org_in(p: int, prefix: str) -> str:
    """An organisation name of partition ``p``."""
    return next(f"{prefix}{i}" for i in range(10_000) if partition_of(f"{prefix}{i}", P) == p)


async def publish_raw(nc: NATS, p: int, data: bytes) -> int:
    """Publish ``data`` on partition ``p``'s input subject; its stream sequence."""
    ack = await nc.jetstream().publish(EVENTS.out(p, "event"), data, timeout=10)
    return ack.seq


async def dead_letters(nc: NATS, names: StreamNames = COUNTS) -> list[tuple[DeadLetter, int]]:
    """Every dead letter of the stream, with its stored size (headers included)."""
    out = []
    for _, data, headers in await read_all(nc, names, f"{names.prefix}.dlq.>"):
        headers = {k: v for k, v in headers.items() if k != "stored_at"}
        size = len(data) + 12 + sum(len(f"{k}: {v}\r\n".encode()) for k, v in headers.items())  # as the server counts
        out.append((msgspec.json.decode(data, type=DeadLetter), size))
    return out


async def outputs(nc: NATS, names: StreamNames = COUNTS) -> list[Count]:
    return [msgspec.json.decode(d, type=Count) for _, d, _ in await read_all(nc, names, f"{names.prefix}.out.>")]


async def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.2)


async def setup(nats_server: NatsServer) -> NATS:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    return nc


def canary_seen(nc: NATS, resource: str) -> Any:
    async def check() -> bool:
        try:
            return any(c.key.endswith(f"/{resource}") for c in await outputs(nc))
        except Exception:  # the worker has not made its stream yet
            return False
    return check


# ---------------------------------------------------------------------- the counter stage, a process

async def test_an_oversized_input_is_one_dead_letter_that_fits(nats_server: NatsServer, tmp_path: Path) -> None:
    """A 7.5 MiB message on the input subject: its dead letter used to be 10 MiB (base64), too
    large to write, and the partition looped on it; now it keeps an excerpt, size and digest."""
    nc = await setup(nats_server)
    p = 1
    poison = b"\xfe" + b"x" * (15 * MiB // 2 - 1)  # not JSON
    seq = await publish_raw(nc, p, poison)
    await publish_raw(nc, p, encode(event(1, org_in(p, "canary"), "canary")))
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=3600)
    worker.start()
    await wait_for("the canary after the poison", canary_seen(nc, "canary"))
    [(dl, stored)] = await dead_letters(nc)
    assert stored <= nc.max_payload
    assert (dl.stage, dl.cause, dl.subject, dl.stream_seq) == ("counter", "undecodable", EVENTS.out(p, "event"), seq)
    assert dl.size == len(poison) and dl.digest == "sha256:" + hashlib.sha256(poison).hexdigest()
    assert dl.payload == poison[:4096]
    assert "cannot decode" in dl.reason
    worker.stop()
    assert "re-acquiring" not in worker.output()
    await nc.close()


async def test_the_poison_survives_a_restart_without_a_loop(nats_server: NatsServer, tmp_path: Path) -> None:
    """After the dead letter, a restarted worker neither loops nor writes a second one: the
    partition's progress is past the poison, and nobody edited a stream."""
    nc = await setup(nats_server)
    p = 2
    poison_seq = await publish_raw(nc, p, b"[" + b"0," * (7 * MiB // 2) + b"0]")  # JSON, not an event
    await publish_raw(nc, p, encode(event(1, org_in(p, "canary"), "before")))
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=3600)
    worker.start()
    await wait_for("the first canary", canary_seen(nc, "before"))
    assert worker.stop() == 0
    assert len(await dead_letters(nc)) == 1
    await publish_raw(nc, p, encode(event(2, org_in(p, "canary"), "after")))
    (tmp_path / "w-w1" / "endpoints.json").unlink(missing_ok=True)  # the first run's
    worker.start()
    await wait_ready(tmp_path / "w-w1")
    await wait_for("the canary after the restart", canary_seen(nc, "after"))
    raw = await last_message(nc.jetstream(), COUNTS.stream, COUNTS.progress(p))
    assert raw is not None and msgspec.json.decode(raw[1], type=Progress).inputs["events"] > poison_seq
    await anyio.sleep(1.0)  # a loop would write again, or reset, by now
    [(dl, stored)] = await dead_letters(nc)
    assert dl.stream_seq == poison_seq and stored <= nc.max_payload
    worker.stop()
    log = worker.output()
    assert "re-acquiring" not in log and log.count("dead letter (") == 1
    await nc.close()


async def test_undecodable_and_deeply_nested_inputs_are_dead_letters(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await setup(nats_server)
    p = 3
    org = org_in(p, "org")
    nested = msgspec.json.encode(event(1, org, "deep")).replace(
        b'"occurred_at"', b'"fields":{"a":' + b"[" * 5000 + b"]" * 5000 + b'},"occurred_at"')
    seqs = [await publish_raw(nc, p, b"\xff{not json"), await publish_raw(nc, p, nested),
            await publish_raw(nc, p, b'{"type":"event.v1","org":3}')]
    await publish_raw(nc, p, encode(event(2, org_in(p, "canary"), "canary")))
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=3600)
    worker.start()
    await wait_for("the canary", canary_seen(nc, "canary"))
    letters = sorted((dl for dl, _ in await dead_letters(nc)), key=lambda dl: dl.stream_seq)
    assert [(dl.stream_seq, dl.cause) for dl in letters] == [(s, "undecodable") for s in seqs]
    assert "nested" in letters[1].reason and letters[1].payload == nested  # small enough to keep whole
    url = json.loads((tmp_path / "w-w1" / "endpoints.json").read_text())["metrics_url"]
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(url)).text
    assert 'tocsin_stage_dead_letters_total{cause="undecodable",kind="input",stage="counter"} 3.0' in metrics
    worker.stop()
    log = worker.output()
    assert log.count("dead letter (undecodable)") == 3 and "RecursionError" not in log and "Traceback" not in log
    await nc.close()


# ---------------------------------------------------------------------- a stage with large effects, in process

class Blob(msgspec.Struct):
    text: str
    deadline: float | None = None
    timer_output: int = 0


class _Amplifier:
    """Each event: a state value and an output; ``fields`` asks for large ones, or for a timer
    (due at once) with a large output."""

    value_type = Blob

    def step(self, state: Mapping[str, Blob], inp: Event, now: float) -> Step[Blob]:
        key = inp.resource_name
        out = Count(key=key + "x" * int(inp.fields.get("output", 0)), count=1)
        value = Blob("s" * int(inp.fields.get("state", 0)))
        if "timer_output" in inp.fields:
            value = Blob("", deadline=now, timer_output=int(inp.fields["timer_output"]))
        return Step(changes={key: value}, outputs=[Out(out)])

    def fire(self, state: Mapping[str, Blob], key: str, now: float) -> Step[Blob]:
        out = Count(key=key + "t" * state[key].timer_output, timer=now)
        return Step(changes={key: Blob("fired")}, outputs=[Out(out)])

    def deadline(self, key: str, value: Blob) -> float | None:
        return value.deadline


OUT = StreamNames("counts")


async def run_amplifier(nc: NATS, name: str, events: list[Event], expected: int,
                        max_commit_bytes: int | None = None) -> PartitionWorker:
    """Publish ``events`` (one partition), then run the stage until ``expected`` outputs and
    dead letters are in; the worker, stopped."""
    js = nc.jetstream()
    await ensure_stream(js, OUT)
    p = partition_of(events[0].org, P)
    for ev in events:
        await publish_raw(nc, p, encode(ev))
    spec = StageSpec(name=name, core=_Amplifier(), inputs=[Input("events", EVENTS)], output=OUT, partitions=P)
    if max_commit_bytes:
        spec.max_commit_bytes = max_commit_bytes
    w = PartitionWorker(nc, js, spec, p, "a", stage_metrics())

    async def done() -> bool:
        return len(await outputs(nc)) + len(await dead_letters(nc)) >= expected

    async with anyio.create_task_group() as tg:
        await tg.start(w.run)
        await wait_for(f"{expected} outputs and dead letters", done)
        w.stop()
        tg.cancel_scope.cancel()
    return w


def ev(i: int, resource: str, **fields: int) -> Event:
    return Event(id=str(i), org="acme", reason="Tick", resource_kind="device", resource_name=resource,
                 occurred_at=1000.0 + i, fields=dict(fields))


def sample(name: str, stage: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0


def resets(stage: str) -> float:
    return sample("tocsin_stage_partition_resets_total", stage)


async def test_an_oversized_output_is_a_dead_letter_and_its_neighbours_go_through(nats_server: NatsServer) -> None:
    nc = await setup(nats_server)
    big = ev(2, "big", output=9 * MiB)  # 9 MiB out of a small input: over the 8 MiB max_payload
    w = await run_amplifier(nc, "amp1", [ev(1, "before"), big, ev(3, "after")], expected=3)
    assert sorted(c.key for c in await outputs(nc)) == ["after", "before"]
    [(dl, stored)] = await dead_letters(nc)
    assert dl.cause == "too_large" and "max_payload" in dl.reason and stored <= nc.max_payload
    assert msgspec.json.decode(dl.payload, type=Event).resource_name == "big"  # kept whole: replayable
    assert sorted(w.state) == ["after", "before"]  # the dead-lettered input changed nothing
    assert resets("amp1") == 0  # found before the commit: no redo
    await nc.close()


async def test_an_oversized_state_value_is_a_dead_letter_and_its_neighbours_go_through(
        nats_server: NatsServer) -> None:
    """Found only at the commit (state values are encoded once per commit): the batch is redone
    one input per commit, and the one refused alone is dead-lettered."""
    nc = await setup(nats_server)
    events = [ev(1, "before"), ev(2, "big", state=9 * MiB), ev(3, "after")]
    w = await run_amplifier(nc, "amp2", events, expected=3)
    assert sorted(c.key for c in await outputs(nc)) == ["after", "before"]
    [(dl, _)] = await dead_letters(nc)
    assert dl.cause == "too_large" and "max_payload" in dl.reason and dl.stream_seq > 0
    assert sorted(w.state) == ["after", "before"]
    assert resets("amp2") == 2  # the batch, then the input alone
    assert not w.machine.isolate and not w.machine.poison
    # A new owner (a restart) goes on from there: no second dead letter, no reset.
    w = await run_amplifier(nc, "amp2", [ev(4, "later")], expected=4)
    assert sorted(c.key for c in await outputs(nc)) == ["after", "before", "later"]
    assert len(await dead_letters(nc)) == 1 and resets("amp2") == 2
    await nc.close()


async def test_a_timer_with_an_oversized_output_is_a_dead_letter(nats_server: NatsServer) -> None:
    nc = await setup(nats_server)
    events = [ev(1, "t", timer_output=9 * MiB), ev(2, "after")]
    w = await run_amplifier(nc, "amp5", events, expected=3)  # 2 outputs and the timer's dead letter
    assert sorted(c.key for c in await outputs(nc)) == ["after", "t"]
    [(dl, _)] = await dead_letters(nc)
    assert (dl.cause, dl.key, dl.stream_seq) == ("too_large", "t", 0) and "max_payload" in dl.reason
    assert REGISTRY.get_sample_value("tocsin_stage_dead_letters_total",
                                     {"stage": "amp5", "kind": "timer", "cause": "too_large"}) == 1
    assert w.state["t"].deadline == dl.at  # dropped: its state stays as it was
    assert resets("amp5") == 0
    await nc.close()


async def test_outputs_larger_than_one_commit_are_split(nats_server: NatsServer) -> None:
    nc = await setup(nats_server)
    events = [ev(i, f"r{i}", output=40_000) for i in range(12)]  # 480 KB of outputs
    w = await run_amplifier(nc, "amp3", events, expected=12, max_commit_bytes=256 * 1024)
    assert len(await outputs(nc)) == 12 and not await dead_letters(nc)
    assert sample("tocsin_stage_commits_total", "amp3") >= 4  # ~3 inputs a commit, and the claim
    assert resets("amp3") == 0 and len(w.state) == 12
    await nc.close()


async def test_state_larger_than_one_commit_is_redone_in_parts(nats_server: NatsServer) -> None:
    nc = await setup(nats_server)
    events = [ev(i, f"r{i}", state=100_000) for i in range(4)]  # 400 KB of state in one batch
    w = await run_amplifier(nc, "amp4", events, expected=4, max_commit_bytes=256 * 1024)
    assert len(await outputs(nc)) == 4 and not await dead_letters(nc)
    assert resets("amp4") == 1 and sorted(w.state) == [f"r{i}" for i in range(4)]
    assert not w.machine.isolate and not w.machine.poison  # back to whole batches once past the refused one
    await nc.close()
