"""Hop B under SIGKILL: a counter stage killed at random moments and restarted must end with
exactly the state and outputs of a run that never crashed (the pure core folded in order)."""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import anyio
import msgspec
import pytest
from nats.js.errors import NotFoundError

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from stages.counter.core import Count, CounterCore, CounterValue

from .helpers import COUNTS, EVENTS, Worker, event, publish_events, read_all, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

P = 16


def reference_outputs(events, delay: float) -> tuple[dict[str, CounterValue], list[tuple[str, int, bool]]]:
    """A run with no crash: fold the pure core over each partition's inputs in order, timers at the end."""
    core = CounterCore(delay=delay)
    state: dict[str, CounterValue] = {}
    outs: list[tuple[str, int, bool]] = []
    for ev in events:
        step = core.step(state, ev, ev.occurred_at)
        state.update(step.changes)
        outs += [(o.payload.key, o.payload.count, False) for o in step.outputs]
    for key in list(state):
        step = core.fire(state, key, state[key].deadline)
        state.update(step.changes)
        outs += [(o.payload.key, 0, True) for o in step.outputs]
    return state, outs


async def wait_for_outputs(nc, expected: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await nc.jetstream().stream_info(COUNTS.stream, subjects_filter=f"{COUNTS.prefix}.out.>")
            got = sum((info.state.subjects or {}).values())
        except NotFoundError:  # the worker has not created its stream yet
            got = 0
        if got >= expected or time.monotonic() > deadline:
            return await read_all(nc, COUNTS, f"{COUNTS.prefix}.out.>")
        await anyio.sleep(0.2)


def decode_outputs(msgs) -> list[tuple[str, int, bool]]:
    outs = []
    for _, data, _ in msgs:
        c = msgspec.json.decode(data, type=Count)
        outs.append((c.key, c.count, c.timer is not None))
    return outs


async def read_state(nc) -> dict[str, CounterValue]:
    msgs = await read_all(nc, COUNTS, f"{COUNTS.prefix}.state.>")
    state: dict[str, CounterValue] = {}
    for subject, data, headers in msgs:
        if headers.get("Tocsin-Deleted"):
            continue
        state[COUNTS.key_of_state_subject(subject)] = msgspec.json.decode(data, type=CounterValue)
    return state


async def test_sigkill_at_random_moments_changes_nothing(nats_server: NatsServer, tmp_path: Path) -> None:
    rng = random.Random(20261122)
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    delay = 0.3
    base = time.time()
    events = [event(i, f"org{rng.randrange(40)}", f"dev{rng.randrange(25)}", at=base + i * 0.0002)
              for i in range(20_000)]
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=delay)
    worker.start()

    async def publisher() -> None:
        for i in range(0, len(events), 1000):
            await publish_events(nc, events[i:i + 1000], P)
            await anyio.sleep(0.25)

    kills = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(publisher)
        while kills < 10:
            await anyio.sleep(rng.uniform(0.4, 1.2))
            worker.kill()
            kills += 1
            worker.start()
    expected_state, expected_outs = reference_outputs(events, delay)
    got = decode_outputs(await wait_for_outputs(nc, len(expected_outs), timeout=90))
    worker.stop()
    assert kills == 10 and worker.starts == 11
    counts = collections.Counter(got)
    duplicated = {k: v for k, v in counts.items() if v > 1}
    missing = set(expected_outs) - set(got)
    assert not duplicated, f"{len(duplicated)} outputs published more than once, e.g. {list(duplicated)[:5]}"
    assert not missing, f"{len(missing)} outputs missing, e.g. {sorted(missing)[:5]}"
    assert sorted(got) == sorted(expected_outs)
    state = await read_state(nc)
    assert {k: (v.count, v.deadline) for k, v in state.items()} == {
        k: (v.count, v.deadline) for k, v in expected_state.items()}
    # Per partition, outputs are in input order: each key's counts ascend.
    last: dict[str, int] = {}
    for key, count, is_timer in got:
        if not is_timer:
            assert count == last.get(key, 0) + 1, f"{key}: count {count} after {last.get(key, 0)}"
            last[key] = count
    await nc.close()


async def test_timer_due_during_crash_fires_once_after_restart(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    delay = 8.0  # long enough that the kill below comes before it even on a slow, loaded machine
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=delay)
    worker.start()
    await wait_ready(tmp_path / "w-w1")
    t0 = time.time()
    await publish_events(nc, [event(1, "acme", "sensor", at=t0)], P)
    msgs = await wait_for_outputs(nc, 1, timeout=20)
    worker.kill()  # the timer (t0 + delay) falls due while no worker runs
    assert time.time() < t0 + delay, "the machine was too slow to kill the worker before the timer"
    assert decode_outputs(msgs) == [("acme/sensor", 1, False)]
    await anyio.sleep(max(0.0, t0 + delay + 0.5 - time.time()))
    worker.start()
    await wait_for_outputs(nc, 2, timeout=30)
    await anyio.sleep(1.0)  # a second firing would show up by now
    got = decode_outputs(await read_all(nc, COUNTS, f"{COUNTS.prefix}.out.>"))
    worker.stop()
    assert got == [("acme/sensor", 1, False), ("acme/sensor", 0, True)]
    fired_at = (await read_state(nc))["acme/sensor"].fired_at
    assert fired_at == pytest.approx(t0 + delay)  # deterministic: the timer's now is its deadline
    await nc.close()


async def test_timers_fire_within_50ms_of_their_deadline(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=1.5)
    worker.start()
    await wait_ready(tmp_path / "w-w1")
    t0 = time.time()
    events = [event(i, f"org{i}", "x", at=t0 + i * 0.037) for i in range(20)]
    await publish_events(nc, events, P)
    msgs = await wait_for_outputs(nc, 40, timeout=30)
    worker.stop()
    lags = []
    for _, data, headers in msgs:
        c = msgspec.json.decode(data, type=Count)
        if c.timer is not None:
            lags.append(float(headers["stored_at"]) - c.timer)
    assert len(lags) == 20
    lags.sort()
    assert lags[10] < 0.05, lags  # median
    assert lags[-1] < 0.2, lags
    await nc.close()


async def test_a_backlog_is_stepped_in_event_time(nats_server: NatsServer, tmp_path: Path) -> None:
    """Events published while no worker runs, then worked off as a backlog in batches: the timer
    falls between exactly the inputs it fell between in time, not at the end of the first
    batch (by the clock), and every output carries the time it was decided at."""
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, P)
    await ensure_stream(nc.jetstream(), EVENTS)
    delay = 1.0
    t0 = time.time()
    # 600 events before the deadline (more than one fetch holds: at most 512), 600 after it
    await publish_events(nc, [event(i, "acme", "sensor", at=t0 if i == 0 else None) for i in range(600)], P)
    await anyio.sleep(max(0.0, t0 + delay + 0.05 - time.time()))
    await publish_events(nc, [event(i, "acme", "sensor") for i in range(600, 1200)], P)
    read_events = await read_all(nc, EVENTS, f"{EVENTS.prefix}.out.>")
    deadline = t0 + delay
    stored = [float(h["stored_at"]) for _, _, h in read_events]
    before = sum(1 for t in stored if t < deadline)
    assert before == 600, "the machine was too slow to publish 600 events within the delay"

    worker = Worker(nats_server.url, tmp_path, "w1", partitions=P, delay=delay)
    worker.start()
    msgs = await wait_for_outputs(nc, len(stored) + 1, timeout=60)
    worker.stop()
    outs = decode_outputs(msgs)
    assert len(outs) == len(stored) + 1
    assert outs.index(("acme/sensor", 0, True)) == before
    times = [float(h["Tocsin-Time"]) for _, _, h in msgs]
    assert times == [*stored[:before], pytest.approx(deadline), *stored[before:]]
    await nc.close()
