"""A stage's stream keeps one message per subject; one of the older layout keeps rolling up.

On a real nats-server: a new stage stream is made with ``max_msgs_per_subject: 1`` and its
partition writes state without rollups; a stream made before that keeps its configuration
(the limit would trim outputs that share a subject) and its partition keeps the rollups.
Either way every output is kept and a state key holds its last value only.
"""

from __future__ import annotations

import pytest
from nats.js.api import StorageType, StreamConfig

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream, one_per_subject
from pipeline.foundation.runtime.machine import CommitDraft
from pipeline.foundation.runtime.metrics import stage_metrics
from pipeline.foundation.runtime.partition import Input, PartitionWorker, StageSpec
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.step import Out, Step
from stages.counter.core import Count, CounterCore, CounterValue

from .helpers import COUNTS, EVENTS

P = 2


@pytest.mark.parametrize(("names", "limit"), [
    pytest.param(COUNTS, 1, id="stage-stream"), pytest.param(EVENTS, -1, id="events-stream"),
])
async def test_a_new_stream_gets_its_layout(nats_server: NatsServer, names, limit: int) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, names)
    await ensure_stream(js, names)  # again: an update keeps it
    assert (await js.stream_info(names.stream)).config.max_msgs_per_subject == limit
    await nc.close()


async def _commit_three_times(nc, js) -> PartitionWorker:
    """A partition worker of the counter stage commits key ``k`` three times (then deletes
    ``gone``), with three outputs on one output subject (``g``)."""
    await ensure_partitions(js, nc, P)
    await ensure_stream(js, EVENTS)  # the input
    spec = StageSpec(name="counter", core=CounterCore(delay=60), inputs=[Input("events", EVENTS)],
                     output=COUNTS, partitions=P)
    w = PartitionWorker(nc, js, spec, 0, "w1", stage_metrics())
    await w._acquire()
    for i in range(3):
        step = Step(changes={"k": CounterValue(count=i), "gone": CounterValue(count=9) if i < 2 else None},
                    outputs=[Out(payload=Count(key="k", count=i), subject="g")])
        await w._commit(w._add(CommitDraft(), step, f"test:{i}", 100.0 + i))
    await w._unsubscribe()
    return w


async def _subjects(js, pattern: str) -> list[str]:
    return [m.subject async for m in read_messages(js, COUNTS.stream, pattern)]


async def test_state_replaces_itself_without_rollups_and_outputs_are_all_kept(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, COUNTS)
    w = await _commit_three_times(nc, js)
    assert not w.machine.rollup  # no Nats-Rollup header: the stream's limit does it
    assert await _subjects(js, COUNTS.state(0, "k")) == [COUNTS.state(0, "k")]  # one message: the last
    assert len(set(await _subjects(js, COUNTS.out_filter(0)))) == 3  # three outputs, three subjects
    again = PartitionWorker(nc, js, w.spec, 0, "w2", stage_metrics())
    await again._acquire()
    await again._unsubscribe()
    assert again.state == {"k": CounterValue(count=2)}  # rebuilt: the last value; the deleted key gone
    await nc.close()


async def test_a_stream_of_the_older_layout_keeps_its_outputs_and_rolls_up(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    # As ensure_stream made it before: no per-subject limit; two outputs share a subject.
    await js.add_stream(StreamConfig(name=COUNTS.stream, subjects=[COUNTS.all], storage=StorageType.FILE,
                                     allow_rollup_hdrs=True, allow_direct=True, allow_msg_ttl=True,
                                     allow_atomic=True))
    for i in range(2):
        await js.publish(COUNTS.out(0, "old"), b"{}", headers={"Nats-Msg-Id": f"old:{i}"})
    await ensure_stream(js, COUNTS)
    assert not await one_per_subject(js, COUNTS.stream)
    assert len(await _subjects(js, COUNTS.out(0, "old"))) == 2  # nothing trimmed
    w = await _commit_three_times(nc, js)
    assert w.machine.rollup
    assert await _subjects(js, COUNTS.state(0, "k")) == [COUNTS.state(0, "k")]  # rolled up to the last
    assert len(await _subjects(js, COUNTS.out_filter(0))) == 5
    await nc.close()
