"""Reads after a NATS node comes back: a read consumer of an R3 stream may be placed on a
follower still catching up and serve its old copy. A state rebuild must never use it.

The lag is made long and certain by limiting the catch-up (``max_outstanding_catchup``) and
writing a backlog while one node is down. This is the scenario behind the duplicates of the
chaos load test: a stage restarted as a killed node rejoined, rebuilt old state from it, and
decided again what it had already decided, with new output ids.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from pipeline.foundation.embedded import NatsServer, free_port, start_nats
from pipeline.foundation.runtime.jetstream import BatchError, connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.machine import CommitDraft
from pipeline.foundation.runtime.metrics import stage_metrics
from pipeline.foundation.runtime.partition import Input, PartitionWorker, StageSpec
from pipeline.foundation.runtime.reads import StaleRead, read_last_per_subject, read_partition_state
from stages.counter.core import CounterCore, CounterValue

from .helpers import COUNTS, EVENTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_CATCHUP = "jetstream { max_outstanding_catchup: 4KB }\n"
PAD = b"x" * 1000  # bytes, not messages, pace the catch-up


class Cluster:
    """Three nats-servers on loopback; any one can be killed and started again on its ports."""

    def __init__(self, base: Path, stack: contextlib.AsyncExitStack) -> None:
        self.base, self.stack = base, stack
        self.ports = [free_port() for _ in range(3)]
        self.cports = [free_port() for _ in range(3)]
        self.servers: list[NatsServer] = []

    def _node(self, i: int) -> contextlib.AbstractAsyncContextManager[NatsServer]:
        routes = [f"nats://127.0.0.1:{p}" for j, p in enumerate(self.cports) if j != i]
        return start_nats(self.base / f"n{i}", port=self.ports[i], name=f"n{i}", cluster_name="t",
                          cluster_port=self.cports[i], routes=routes, extra_config=SLOW_CATCHUP,
                          secrets_dir=self.base)  # one set of credentials (routes included) for the cluster

    async def start(self, i: int) -> NatsServer:
        server = await self.stack.enter_async_context(self._node(i))
        if i < len(self.servers):
            self.servers[i] = server
        else:
            self.servers.append(server)
        return server

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)


@contextlib.asynccontextmanager
async def cluster(base: Path) -> AsyncIterator[Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        c = Cluster(base, stack)
        for i in range(3):
            await c.start(i)
        yield c


async def retry(fn, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Until the cluster answers (it elects leaders after a node is lost)."""
    with anyio.fail_after(timeout):
        while True:
            try:
                return await fn()
            except Exception:
                await anyio.sleep(0.2)


async def test_a_fresh_read_never_returns_a_lagging_replicas_state(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        nc = await connect(c.url)
        js: JetStreamContext = nc.jetstream()
        await retry(lambda: js.add_stream(StreamConfig(name="T", subjects=["t.>"], num_replicas=3)))
        keys, n = 200, 2_000
        c.servers[2].kill()
        await retry(lambda: js.publish("t.marker", b"down"))
        # Ballast first (a subject not read), then the state: the restarted node needs seconds
        # to catch up to the state it missed.
        for _ in range(0, 40_000, 500):
            await retry(lambda: anyio_gather(js, [(f"t.ballast.{j}", PAD) for j in range(500)]))
        for i in range(0, n, keys):  # a batch writes each key once, so its order within does not matter
            await retry(lambda i=i: anyio_gather(js, [(f"t.state.k{j % keys}", str(j).encode())
                                                      for j in range(i, i + keys)]))
        marker = (await js.publish("t.marker", b"written")).seq
        await c.start(2)  # it catches up at 4 KiB in flight: seconds of lag
        expected = {f"t.state.k{k}": max(j for j in range(n - keys, n) if j % keys == k) for k in range(keys)}
        counts = collections.Counter[str]()

        async def reader(by_leader: bool) -> None:  # several at once: one stuck on a starting node stalls itself
            while counts["fresh"] < 40:
                got: dict[str, int] = {}
                try:
                    with anyio.fail_after(2):  # a consumer placed on a node still starting may not answer
                        if by_leader:  # as the API reads: the marker's sequence asked of the stream leader
                            for m, _ in await read_partition_state(js, "T", "t.state.>", "t.marker", patience=0):
                                got[m.subject] = int(m.data)
                        else:
                            async for m, _ in read_last_per_subject(js, "T", "t.state.>",
                                                                    fresh=("t.marker", marker)):
                                got[m.subject] = int(m.data)
                except StaleRead:
                    counts["stale"] += 1
                    continue
                except (TimeoutError, NatsError):  # not a read at all
                    counts["no answer"] += 1
                    await anyio.sleep(0.1)
                    continue
                # What a fresh read returns is the last write of every key, nothing older.
                assert got == expected
                counts["fresh"] += 1

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(reader, i % 2 == 1)
        print(dict(counts))
        await nc.close()
    # One read consumer in three lands on the catching-up node: over the lag, some must have.
    assert counts["stale"] > 0, "no read was served by the lagging node: the test did not exercise the lag"


async def anyio_gather(js: JetStreamContext, msgs: list[tuple[str, bytes]]) -> None:
    async with anyio.create_task_group() as tg:
        for subject, data in msgs:
            tg.start_soon(js.publish, subject, data)


class ClaimAndRebuild(PartitionWorker):
    """Acquire without binding the input consumers: their creation on the starting node may
    time out, which would hide the rebuilt state from the check."""

    async def _bind(self, inp: Input) -> None:
        return None


async def test_a_partition_acquired_while_a_node_catches_up_rebuilds_its_real_state(tmp_path: Path) -> None:
    """The partition worker's own acquire (claim, then rebuild), again and again while the
    restarted node catches up: every rebuilt state is the state last committed."""
    P, KEYS = 4, 100
    async with cluster(tmp_path) as c:
        nc = await connect(c.url)
        js = nc.jetstream()
        await retry(lambda: ensure_partitions(js, nc, P, replicas=3))
        for names in (EVENTS, COUNTS):
            await retry(lambda names=names: ensure_stream(js, names, replicas=3))
        spec = StageSpec(name="counter", core=CounterCore(delay=60), inputs=[Input("events", EVENTS)],
                         output=COUNTS, partitions=P)

        async def commit_state(p: int, version: int) -> None:
            w = PartitionWorker(nc, js, spec, p, f"writer-{version}", stage_metrics())
            await retry(w._acquire)
            await w._commit(CommitDraft(changes={f"org{p}/dev{k}": CounterValue(count=version * 1000 + k)
                                             for k in range(KEYS)}))
            await w._unsubscribe()

        for p in range(P):
            await commit_state(p, 1)
        c.servers[2].kill()
        await retry(lambda: js.publish(f"{COUNTS.prefix}.ballast.0", b""))
        # Ballast in the stage's stream (subjects it never reads, each of its own: the stream
        # keeps one message per subject), before the state the node missed, makes the restarted
        # node's catch-up to that state last seconds.
        for i in range(0, 40_000, 500):
            await retry(lambda i=i: anyio_gather(js, [(f"{COUNTS.prefix}.ballast.{i + j}", PAD) for j in range(500)]))
        for p in range(P):
            await commit_state(p, 2)
        stale = stage_metrics().stale_reads.labels("counter")
        stale_before = stale._value.get()
        await c.start(2)
        acquired = collections.Counter[int]()

        async def acquire_again_and_again(p: int) -> None:
            truth = {f"org{p}/dev{k}": CounterValue(count=2000 + k) for k in range(KEYS)}
            while acquired[p] < 15:
                w = ClaimAndRebuild(nc, js, spec, p, f"reader-{p}-{acquired[p]}", stage_metrics())
                try:
                    with anyio.fail_after(10):
                        await w._acquire()
                except (TimeoutError, NatsError, BatchError):  # the node is starting: try again
                    await anyio.sleep(0.1)
                    continue
                finally:
                    await w._unsubscribe()
                assert w.state == truth, f"p{p} rebuilt a state that is not the last committed"
                acquired[p] += 1

        with anyio.fail_after(180):
            async with anyio.create_task_group() as tg:
                for p in range(P):
                    tg.start_soon(acquire_again_and_again, p)
        await nc.close()
    assert stale._value.get() > stale_before, "no rebuild met the lagging node: the test did not exercise it"
