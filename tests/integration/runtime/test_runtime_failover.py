"""Partition ownership: replicas share partitions, survivors take a dead replica's share, and a
stale owner's commit is rejected by the progress fence."""

from __future__ import annotations

import collections
import random
import signal
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from contracts.partition import partition_of
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import BatchError, connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.machine import CommitDraft
from pipeline.foundation.runtime.metrics import stage_metrics
from pipeline.foundation.runtime.partition import Input, PartitionWorker, Progress, StageSpec
from pipeline.foundation.runtime.subjects import StreamNames
from stages.counter.core import CounterCore

from .helpers import COUNTS, EVENTS, Worker, event, publish_events, read_all
from .test_runtime_crash import decode_outputs, reference_outputs, wait_for_outputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 16


async def owners(nc) -> dict[int, str]:
    """The owner named in each partition's progress record."""
    js = nc.jetstream()
    out = {}
    for p in range(P):
        try:
            raw = await js.get_last_msg(COUNTS.stream, COUNTS.progress(p), direct=True)
        except Exception:
            continue
        out[p] = msgspec.json.decode(raw.data, type=Progress).owner
    return out


def assert_exactly_once(got, expected) -> None:
    dup = {k: v for k, v in collections.Counter(got).items() if v > 1}
    assert not dup, f"duplicated outputs: {list(dup)[:5]}"
    assert sorted(got) == sorted(expected)


async def test_survivor_takes_every_partition_of_a_killed_replica(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    rng = random.Random(7)
    base = time.time()
    events = [event(i, f"org{rng.randrange(50)}", f"d{rng.randrange(10)}", at=base + i * 0.001) for i in range(6000)]
    w1 = Worker(nats_server.url, tmp_path, "w1", partitions=P)
    w2 = Worker(nats_server.url, tmp_path, "w2", partitions=P)
    w1.start()
    w2.start()
    await publish_events(nc, events[:3000], P)
    with anyio.fail_after(30):  # both replicas own a share
        while set((await owners(nc)).values()) != {"w1", "w2"}:
            await anyio.sleep(0.2)
    w1.kill()
    killed_at = time.monotonic()
    await publish_events(nc, events[3000:], P)
    with anyio.fail_after(10):  # the survivor owns every partition within 10 s
        while set((await owners(nc)).values()) != {"w2"} or len(await owners(nc)) != P:
            await anyio.sleep(0.1)
    took = time.monotonic() - killed_at
    _, expected = reference_outputs(events, 0.3)
    got = decode_outputs(await wait_for_outputs(nc, len(expected), timeout=60))
    assert w2.stop() == 0
    assert took < 10
    assert_exactly_once(got, expected)
    await nc.close()


async def test_paused_owner_that_lost_its_partitions_cannot_commit(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    base = time.time()
    events = [event(i, f"org{i % 37}", f"d{i % 5}", at=base + i * 0.001) for i in range(8000)]
    w1 = Worker(nats_server.url, tmp_path, "w1", partitions=P)
    w1.start()
    with anyio.fail_after(30):
        while len(await owners(nc)) != P:
            await anyio.sleep(0.2)

    async def feed(chunk) -> None:
        for i in range(0, len(chunk), 200):
            await publish_events(nc, chunk[i:i + 200], P)
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:  # pause w1 while it is busy
        tg.start_soon(feed, events[:4000])
        await anyio.sleep(0.3)
        w1.signal(signal.SIGSTOP)
    w2 = Worker(nats_server.url, tmp_path, "w2", partitions=P)
    w2.start()
    with anyio.fail_after(20):  # w1's heartbeat expires; w2 claims everything
        while set((await owners(nc)).values()) != {"w2"}:
            await anyio.sleep(0.2)
    await feed(events[4000:6000])
    w1.signal(signal.SIGCONT)
    await feed(events[6000:])
    _, expected = reference_outputs(events, 0.3)
    got = decode_outputs(await wait_for_outputs(nc, len(expected), timeout=60))
    # w2 may have produced every output before the woken w1 got the CPU back (a loaded
    # machine): give w1 the moment it needs to find out, before it is stopped.
    with anyio.move_on_after(20):
        while "re-acquiring" not in w1.output():
            await anyio.sleep(0.2)
    w1.stop()
    w2.stop()
    assert_exactly_once(got, expected)
    # w1 woke up still believing it owned partitions: it had to re-acquire (fence or lost consumer).
    assert "re-acquiring" in w1.output(), w1.output()[-3000:]
    await nc.close()


async def test_stale_owner_commit_is_rejected_by_the_fence(nats_server: NatsServer) -> None:
    """In process and deterministic: B claims the partition, then A's commit fails and stores nothing."""
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_partitions(js, nc, P)
    for names in (EVENTS, COUNTS):
        await ensure_stream(js, names)
    spec = StageSpec(name="counter", core=CounterCore(delay=60), inputs=[Input("events", EVENTS)],
                     output=StreamNames("counts"), partitions=P)
    a = PartitionWorker(nc, js, spec, 3, "a", stage_metrics())
    b = PartitionWorker(nc, js, spec, 3, "b", stage_metrics())
    await a._acquire()
    await b._acquire()
    before = (await js.stream_info(COUNTS.stream)).state.last_seq
    a.progress.inputs["events"] = 99
    with pytest.raises(BatchError) as err:
        await a._commit(CommitDraft())
    assert err.value.fenced
    assert (await js.stream_info(COUNTS.stream)).state.last_seq == before
    await b._commit(CommitDraft())  # the rightful owner still commits
    assert (await js.stream_info(COUNTS.stream)).state.last_seq == before + 1
    progress = await js.get_last_msg(COUNTS.stream, COUNTS.progress(3), direct=True)
    assert msgspec.json.decode(progress.data, type=Progress).owner == "b"
    await a._unsubscribe()
    await b._unsubscribe()
    await nc.close()


async def test_bad_input_goes_to_dead_letters_and_the_partition_goes_on(nats_server: NatsServer,
                                                                       tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_partitions(js, nc, P)
    await ensure_stream(js, EVENTS)
    w = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=600)
    w.start()
    p = 0
    org = next(f"o{i}" for i in range(1000) if partition_of(f"o{i}", P) == p)
    await js.publish(EVENTS.out(p, "event"), b"{not json")
    await js.publish(EVENTS.out(p, "event"), b'{"type":"event.v1","id":"x"}')  # missing fields
    await publish_events(nc, [event(1, org, "r", reason="Poison"), event(2, org, "r")], P)
    got = decode_outputs(await wait_for_outputs(nc, 1, timeout=30))
    assert got == [(f"{org}/r", 1, False)]
    with anyio.fail_after(10):
        while True:
            dl = await read_all(nc, COUNTS, COUNTS.dlq_filter(p))
            if len(dl) >= 3:
                break
            await anyio.sleep(0.1)
    w.stop()
    letters = [msgspec.json.decode(d) for _, d, _ in dl]
    assert [x["reason"].split(":")[0] for x in letters] == ["cannot decode", "cannot decode", "rejected"]
    assert letters[0]["subject"] == EVENTS.out(p, "event") and letters[0]["stream_seq"] > 0
    import base64

    assert base64.b64decode(letters[0]["payload"]) == b"{not json"
    assert "poison" in letters[2]["reason"]
    await nc.close()


class _BigTimer:
    """A core whose one timer emits more outputs than an atomic batch holds."""

    value_type = float

    def step(self, state, inp, now):  # pragma: no cover - no inputs in this test
        raise AssertionError

    def fire(self, state, key, now):
        from pipeline.foundation.runtime.step import Out, Step
        from stages.counter.core import Count

        return Step(changes={key: None}, outputs=[Out(Count(key=f"{key}-{i}", count=i)) for i in range(2500)])

    def deadline(self, key, value):
        return value


async def test_a_timer_larger_than_a_batch_is_committed_in_parts(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_partitions(js, nc, P)
    for names in (EVENTS, COUNTS):
        await ensure_stream(js, names)
    spec = StageSpec(name="big", core=_BigTimer(), inputs=[Input("events", EVENTS)], output=StreamNames("counts"),
                     partitions=P)
    w = PartitionWorker(nc, js, spec, 1, "a", stage_metrics())
    await w._acquire()
    w.state["k"] = time.time() - 1
    w.machine.track("k", w.state["k"])
    await w._process([])
    outs = await read_all(nc, COUNTS, f"{COUNTS.prefix}.out.>")
    assert sorted(msgspec.json.decode(d)["count"] for _, d, _ in outs) == list(range(2500))
    assert w.state == {}
    await w._unsubscribe()
    await nc.close()
