"""Group commit on a real nats-server: commits that wait together share one atomic batch, each
keeps its own fence, a refused commit fails alone, and a cancelled leader stalls nobody."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import NotFoundError

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.commit import GroupCommitter
from pipeline.foundation.runtime.jetstream import BatchError, connect, ensure_stream
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import BatchMsg

pytestmark = pytest.mark.integration

NAMES = StreamNames("gc")


def commit_of(p: int, fence: int, n: int, tag: str) -> list[BatchMsg]:
    return [BatchMsg(NAMES.progress(p), f"{p}:{tag}".encode(),
                     {"Nats-Expected-Last-Subject-Sequence": str(fence), "Nats-Rollup": "sub"}),
            *(BatchMsg(NAMES.out(p, "x"), f"{p}:{tag}:{i}".encode(), {"Nats-Msg-Id": f"{p}:{tag}:{i}"})
              for i in range(n - 1))]


async def test_waiting_commits_share_batches_and_keep_their_fences(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, NAMES)
    committer = GroupCommitter(nc)
    fences = dict.fromkeys(range(8), 0)

    async def partition(p: int) -> None:
        for round_ in range(20):
            fences[p] = await committer.commit(commit_of(p, fences[p], 5, str(round_)))
            # the returned sequence is this partition's own progress record
            got = await js.get_msg(NAMES.stream, fences[p])
            assert (got.subject, got.data) == (NAMES.progress(p), f"{p}:{round_}".encode())

    await asyncio.gather(*(partition(p) for p in range(8)))
    assert committer.commits == 8 * 20
    assert committer.batches < committer.commits / 2, "commits that waited together were not grouped"
    info = await js.stream_info(NAMES.stream, subjects_filter=f"{NAMES.prefix}.out.>")
    assert sum((info.state.subjects or {}).values()) == 8 * 20 * 4
    await nc.close()


async def test_a_fenced_commit_fails_alone(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, NAMES)
    committer = GroupCommitter(nc)
    blocker = asyncio.Event()
    real_send = committer._send

    async def held_send(group):  # type: ignore[no-untyped-def]
        await blocker.wait()  # hold the first batch so the next commits queue up together
        await real_send(group)

    committer._send = held_send  # type: ignore[method-assign]
    first = asyncio.ensure_future(committer.commit(commit_of(9, 0, 2, "first")))
    await asyncio.sleep(0.05)
    good = [asyncio.ensure_future(committer.commit(commit_of(p, 0, 3, "a"))) for p in range(3)]
    stale = asyncio.ensure_future(committer.commit(commit_of(4, 12345, 3, "a")))  # a wrong fence
    await asyncio.sleep(0.05)
    blocker.set()
    await first
    results = await asyncio.gather(*good, stale, return_exceptions=True)
    assert all(isinstance(r, int) for r in results[:3]), results
    assert isinstance(results[3], BatchError) and results[3].fenced
    for p, seq in enumerate(results[:3]):
        assert (await js.get_msg(NAMES.stream, seq)).subject == NAMES.progress(p)
    with pytest.raises(NotFoundError):  # nothing of the refused commit was stored
        await js.get_last_msg(NAMES.stream, NAMES.progress(4))
    await nc.close()


async def test_a_cancelled_leader_hands_the_lead_on(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    await ensure_stream(nc.jetstream(), NAMES)
    committer = GroupCommitter(nc)
    gate = asyncio.Event()
    real_send = committer._send

    async def slow_send(group):  # type: ignore[no-untyped-def]
        await gate.wait()
        await real_send(group)

    committer._send = slow_send  # type: ignore[method-assign]
    leader = asyncio.ensure_future(committer.commit(commit_of(0, 0, 2, "lead")))
    await asyncio.sleep(0.05)
    waiters = [asyncio.ensure_future(committer.commit(commit_of(p, 0, 2, "w"))) for p in range(1, 4)]
    await asyncio.sleep(0.05)
    leader.cancel()  # while its batch is held: its commit's outcome is unknown
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), timeout=10)
    assert all(isinstance(r, int) for r in results), results
    assert not committer._leading and not committer._queue
    await nc.close()
