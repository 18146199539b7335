"""``StateCache`` (the groups read's kept state) against a real JetStream stream: it answers
what a full ``read_partition_state`` answers after every kind of commit, reading in full
only when it must."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js import JetStreamContext

from pipeline.application.api.state_cache import FULL_READ_EVERY, StateCache
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.reads import read_partition_state
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import DELETED

pytestmark = pytest.mark.integration

NAMES = StreamNames("groups")  # made with one message per subject, as the stages' state streams
P = 0


async def _commit(js: JetStreamContext, changes: dict[str, str | None]) -> None:
    """A partition's commit: its changed keys (None: a tombstone), then its progress record."""
    for key, value in changes.items():
        if value is None:
            await js.publish(NAMES.state(P, key), b"", headers={DELETED: "1"})
        else:
            await js.publish(NAMES.state(P, key), value.encode())
    await js.publish(NAMES.progress(P), b"{}")


async def _truth(js: JetStreamContext, subject: str) -> dict[str, str]:
    return {NAMES.key_of_state_subject(m.subject): m.data.decode()
            for m, deleted in await read_partition_state(js, NAMES.stream, subject, NAMES.progress(P)) if not deleted}


async def test_kept_state_follows_every_commit(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url, name="test-state-cache")
    try:
        js = nc.jetstream()
        await ensure_stream(js, NAMES)
        now = [0.0]
        cache: StateCache[str] = StateCache(lambda m: NAMES.key_of_state_subject(m.subject),
                                            lambda _k, data: data.decode(), clock=lambda: now[0])
        subject = NAMES.state_filter(P, "group", "acme")

        async def read(expected: dict[str, str], how: str) -> dict[str, str]:
            before = dict(cache.reads)
            got = await cache.read(js, NAMES.stream, subject, NAMES.progress(P))
            assert got == expected == await _truth(js, subject)
            assert {k: cache.reads[k] - before[k] for k in before} == {k: int(k == how) for k in before}
            return got

        await _commit(js, {"group/acme/a": "a1", "group/acme/b": "b1", "group/beta/x": "x1"})
        first = await read({"group/acme/a": "a1", "group/acme/b": "b1"}, "full")
        assert await read(first, "kept") is first  # nothing committed since: the same values
        # a value replaced, a key deleted, one added, another organisation's changed: only what came since
        await _commit(js, {"group/acme/a": "a2", "group/acme/b": None, "group/acme/c": "c1", "group/beta/x": "x2"})
        second = await read({"group/acme/a": "a2", "group/acme/c": "c1"}, "since")
        assert first == {"group/acme/a": "a1", "group/acme/b": "b1"}  # a read holding the old values keeps them
        await _commit(js, {"group/beta/y": "y1"})  # a commit touching none of these keys
        await read(second, "since")
        # past FULL_READ_EVERY a deletion's tombstone may have expired: everything again
        now[0] += FULL_READ_EVERY + 1
        await read(second, "full")
        await read(second, "kept")
        # the stream made again (its sequences start over): everything again
        await js.delete_stream(NAMES.stream)
        await ensure_stream(js, NAMES)
        await _commit(js, {"group/acme/z": "z1"})
        await read({"group/acme/z": "z1"}, "full")
    finally:
        await nc.close()


async def test_nothing_is_kept_before_the_first_commit(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url, name="test-state-cache-empty")
    try:
        js = nc.jetstream()
        await ensure_stream(js, NAMES)
        cache: StateCache[bytes] = StateCache(lambda m: m.subject, lambda _k, data: data)
        for _ in range(2):
            assert await cache.read(js, NAMES.stream, NAMES.state_filter(P), NAMES.progress(P)) == {}
        assert cache.reads == {"kept": 0, "since": 0, "full": 2}
    finally:
        await nc.close()
