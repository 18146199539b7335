"""A state key too long for a subject is written under a digest and rebuilt whole.

On a real nats-server: a partition commits keys of 5,000 characters and of 3,000 parts (a
resource name from an events row can be anything); the connection survives, every subject
is bounded, and a new owner rebuilds its state with exactly those keys, from the header the
writer added.
"""

from __future__ import annotations

import pytest

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.machine import CommitDraft
from pipeline.foundation.runtime.metrics import stage_metrics
from pipeline.foundation.runtime.partition import Input, PartitionWorker, StageSpec
from pipeline.foundation.runtime.reads import read_messages
from pipeline.foundation.runtime.step import Step
from pipeline.foundation.runtime.subjects import KEY_HEADER, MAX_KEY_CHARS
from stages.counter.core import CounterCore, CounterValue

from .helpers import COUNTS, EVENTS

pytestmark = pytest.mark.integration

LONG = "acme/" + "x" * 5000
MANY = "acme/" + "d/" * 3000 + "end"
SHORT = "acme/gw-1"


async def test_long_keys_are_rebuilt_from_their_header(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_partitions(js, nc, 1)
    await ensure_stream(js, EVENTS)
    await ensure_stream(js, COUNTS)
    spec = StageSpec(name="counter", core=CounterCore(delay=60), inputs=[Input("events", EVENTS)],
                     output=COUNTS, partitions=1)
    w = PartitionWorker(nc, js, spec, 0, "w1", stage_metrics())
    await w._acquire()
    changes = {LONG: CounterValue(count=1), MANY: CounterValue(count=2), SHORT: CounterValue(count=3)}
    await w._commit(w._add(CommitDraft(), Step(changes=changes), "test:0", 100.0))
    await w._unsubscribe()
    assert nc.is_connected  # no "maximum control line exceeded"

    stored = {m.subject: m.headers or {} async for m in read_messages(js, COUNTS.stream, COUNTS.state_filter(0))}
    assert len(stored) == 3 and all(len(s) <= len(COUNTS.state(0, "")) + MAX_KEY_CHARS for s in stored)
    assert sum(KEY_HEADER in h for h in stored.values()) == 2  # the short key needs none

    again = PartitionWorker(nc, js, spec, 0, "w2", stage_metrics())
    await again._acquire()
    await again._unsubscribe()
    assert again.state == changes
    await nc.close()
