"""A worker process SIGKILLed in the middle of a send: at most that request is repeated, with the same key."""

from __future__ import annotations

import asyncio
import collections
import random
from pathlib import Path

import anyio
import pytest

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from stages.notifier.ledger import Ledger, ensure_ledger
from stages.notifier.service import build_notifier
from stages.notifier.worker import SENDS

from .helpers import WorkerProcess, am_config, publish, send_request, wait_consumer_idle, wait_ledger
from .peers import HANG, Answer, HttpPeer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_sigkill_during_a_send_repeats_only_that_send(nats_server: NatsServer, http_peer: HttpPeer,
                                                            tmp_path: Path) -> None:
    http_peer.reply("/hook", HANG)  # the first request to arrive hangs; the others are answered
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route: {{receiver: team}}
receivers:
- name: team
  webhook_configs: [{{url: '{http_peer.url}/hook', timeout: 60s}}]
tocsin:
  notifier: {{ack_wait: 5s, retry: {{backoff_base: 0.05, backoff_cap: 0.2}}}}
""")
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    ids = [f"s-{i}" for i in range(8)]
    worker = WorkerProcess(nats_server.url, str(config), str(tmp_path / "worker-1.log")).start()
    try:
        for sid in ids:
            await publish(js, send_request(sid, "team"))
        await http_peer.wait_for(len(ids), "/hook", timeout=30)
        hung = http_peer.on("/hook")[0].headers["idempotency-key"]
        ledger = Ledger(nc, js)
        for sid in ids:
            if sid != hung:
                await wait_ledger(ledger, sid, {"sent"})
        before = await ledger.read(hung)
        assert before is not None and before[1].state == "sending"

        worker.kill()  # in the middle of the hung request
        await asyncio.sleep(0.5)
        assert len(http_peer.on("/hook")) == len(ids)

        WorkerProcess(nats_server.url, str(config), str(tmp_path / "worker-2.log")).start()
        # redelivered once the dead worker's ack wait (5s) has passed
        await http_peer.wait_for(len(ids) + 1, "/hook", timeout=30)
        for sid in ids:
            await wait_ledger(ledger, sid, {"sent"})
        await wait_consumer_idle(js)
        await asyncio.sleep(1.0)  # nothing else arrives late
    finally:
        await nc.close()
    keys = collections.Counter(r.headers["idempotency-key"] for r in http_peer.on("/hook"))
    assert keys == {sid: 2 if sid == hung else 1 for sid in ids}
    copies = [r for r in http_peer.on("/hook") if r.headers["idempotency-key"] == hung]
    assert copies[0].body == copies[1].body


async def test_drain_returns_a_stuck_request_at_once(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    """A draining worker naks what it could not finish: the next worker resends it without
    waiting for the ack wait (30 s here), with the same key."""
    http_peer.reply("/hook", HANG)
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook', timeout: 60s}}]
    """)
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    try:
        await ensure_stream(js, SENDS)
        first = build_notifier(nc, js, cfg)
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await publish(js, send_request("s-stuck", "team"))
            await http_peer.wait_for(1, "/hook")
            with anyio.fail_after(5):
                await first.drain(timeout=0.3)
            tg.cancel_scope.cancel()
        assert not first.ready
        second = build_notifier(nc, js, cfg)
        async with anyio.create_task_group() as tg:
            await tg.start(second.run)
            with anyio.fail_after(10):  # well under the 30 s ack wait
                await http_peer.wait_for(2, "/hook")
            rec = await wait_ledger(second.worker.ledger, "s-stuck", {"sent"})
            await second.drain(2)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    assert [r.headers["idempotency-key"] for r in http_peer.on("/hook")] == ["s-stuck", "s-stuck"]
    assert rec.attempts == 2


async def test_sigkill_between_the_claim_and_sent_never_repeats_a_recorded_success(
        nats_server: NatsServer, http_peer: HttpPeer, tmp_path: Path) -> None:
    """A worker with many sends in flight is SIGKILLed once some are ``sent``, while many
    others are between their two ledger writes (claim written, request made, answer pending or
    ``sent`` queued but not flushed). The next worker must never send again a request whose
    ``sent`` reached the ledger, repeat the others at most once with the same key and bytes,
    and never have sent one that was not claimed."""
    http_peer.default("/hook", Answer(delay=0.5))  # keeps sends between their writes for a while
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route: {{receiver: team}}
receivers:
- name: team
  webhook_configs: [{{url: '{http_peer.url}/hook'}}]
tocsin:
  notifier: {{ack_wait: 5s}}
""")
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    ids = [f"s-{i}" for i in range(400)]
    for sid in ids:
        await publish(js, send_request(sid, "team"))
    ledger = Ledger(nc, js)
    target = random.randint(1, 30)  # "sent" records seen before the kill

    async def states() -> dict[str, str]:
        got = await asyncio.gather(*(ledger.read(sid) for sid in ids))
        return {sid: g[1].state if g is not None else "" for sid, g in zip(ids, got, strict=True)}

    worker = WorkerProcess(nats_server.url, str(config), str(tmp_path / "worker-1.log")).start()
    try:
        with anyio.fail_after(30):
            while sum(s == "sent" for s in (await states()).values()) < target:
                await asyncio.sleep(0.01)
        worker.kill()
        await asyncio.sleep(0.5)  # what the dead worker had written to its sockets arrives
        at_kill = collections.Counter(r.headers["idempotency-key"] for r in http_peer.on("/hook"))
        snapshot = await states()
        WorkerProcess(nats_server.url, str(config), str(tmp_path / "worker-2.log")).start()
        for sid in ids:
            await wait_ledger(ledger, sid, {"sent"}, timeout=60)
        await wait_consumer_idle(js)
        await asyncio.sleep(1.0)  # nothing else arrives late
    finally:
        await nc.close()
    keys = collections.Counter(r.headers["idempotency-key"] for r in http_peer.on("/hook"))
    recorded = {sid for sid in ids if snapshot[sid] == "sent"}
    between = {sid for sid in ids if snapshot[sid] == "sending" and at_kill[sid]}
    assert len(recorded) >= target and between, (target, len(recorded), len(between))
    assert all(at_kill[sid] == 0 for sid in ids if snapshot[sid] == "")  # no request without a claim
    assert {sid: keys[sid] for sid in recorded} == {sid: at_kill[sid] for sid in recorded} == dict.fromkeys(recorded, 1)
    assert set(keys) == set(ids) and max(keys.values()) <= 2
    assert {sid for sid in ids if keys[sid] == 2} <= between
    for sid in {sid for sid in ids if keys[sid] == 2}:
        first, second = (r.body for r in http_peer.on("/hook") if r.headers["idempotency-key"] == sid)
        assert first == second
