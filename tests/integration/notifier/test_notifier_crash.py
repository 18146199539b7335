"""A worker process SIGKILLed in the middle of a send: at most that request is repeated, with the same key."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import anyio
import pytest

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from stages.notifier.ledger import Ledger
from stages.notifier.service import build_notifier
from stages.notifier.worker import SENDS

from .helpers import WorkerProcess, am_config, publish, send_request, wait_consumer_idle, wait_ledger
from .peers import HANG, HttpPeer

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
