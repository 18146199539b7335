"""Hop C never sends on a stale ledger read, and a worker that lost a send writes nothing after its end.

On a replicated ledger a read may come from a lagging replica; these tests hand the worker
such a stale record (the read is wrapped) or make another writer finish the send behind the
worker's back, and check that the only thing deciding a send is a compare-and-set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.metrics import REGISTRY
from stages.notifier.ledger import Ledger, ensure_ledger
from stages.notifier.records import LedgerRecord
from stages.notifier.worker import SENDS

from .helpers import T0, am_config, publish, running_notifier, send_request, wait_consumer_idle, wait_ledger
from .peers import HANG, HttpPeer
from .test_notifier_ledger import _deliver_once_without_ack

pytestmark = pytest.mark.integration

Read = Callable[..., Awaitable[tuple[int, LedgerRecord] | None]]


def _config(url: str) -> str:
    return f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{url}/hook'}}]
    tocsin: {{notifier: {{ack_wait: 5s, retry: {{backoff_base: 0.01, backoff_cap: 0.05}}}}}}
    """


def _skipped() -> float:
    return REGISTRY.get_sample_value("tocsin_notifier_skipped_total", {"why": "already_done"}) or 0.0


def _record(send_id: str, state: str, attempts: int) -> LedgerRecord:
    return LedgerRecord(id=send_id, state=state, at=T0, org="acme", receiver="team",  # type: ignore[arg-type]
                        integration="webhook[0]", group_key='{}:{alertname="Down"}', attempts=attempts,
                        idempotency_key=send_id)


@pytest.mark.parametrize("stale_reads", [1, 2], ids=["decision-read-stale", "every-read-stale-once"])
async def test_a_stale_sending_record_of_a_sent_request_is_not_sent_again(
        nats_server: NatsServer, http_peer: HttpPeer, stale_reads: int) -> None:
    """The ledger says ``sent`` (sequence 2); the worker's first read(s) return the
    ``sending`` record it replaced (sequence 1), as a lagging replica would."""
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    ledger = Ledger(nc, js)
    first = await ledger.write(_record("s-stale", "sending", 1), expect=0)
    assert first is not None
    assert await ledger.write(_record("s-stale", "sent", 1), expect=first) is not None
    stale = (first, _record("s-stale", "sending", 1))
    await publish(js, send_request("s-stale", "team"))
    await nc.close()
    await _deliver_once_without_ack(nats_server.url)  # the worker gets it as a redelivery
    skipped = _skipped()
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        fresh: Read = r.ledger.read_latest
        left = [stale_reads]

        async def lagging(send_id: str, **where: str) -> tuple[int, LedgerRecord] | None:
            if left[0] > 0:
                left[0] -= 1
                return stale
            return await fresh(send_id, **where)

        r.ledger.read_latest = lagging  # type: ignore[method-assign]
        await wait_consumer_idle(r.js, timeout=30)
        got = await r.ledger.read("s-stale")
    assert http_peer.requests == []
    assert got is not None and got[1].state == "sent"
    assert _skipped() - skipped == 1
    assert left == [0]  # the stale record was read


async def test_a_worker_that_lost_the_send_does_not_retry_or_overwrite_its_end(nats_server: NatsServer,
                                                                               http_peer: HttpPeer) -> None:
    """While the worker's attempt hangs, another writer finishes the send (``sent``). The
    attempt then fails: the worker's retry record is refused (compare-and-set), it stops,
    and the redelivered request is acknowledged without a second request."""
    http_peer.reply("/hook", HANG)
    skipped = _skipped()
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        await publish(r.js, send_request("s-lost", "team"))
        await http_peer.wait_for(1, "/hook")
        claimed = await r.ledger.read_latest("s-lost")
        assert claimed is not None and claimed[1].state == "sending"
        done = msgspec.structs.replace(claimed[1], state="sent", attempts=1)
        assert await r.ledger.write(done, expect=claimed[0]) is not None  # the other worker's end
        http_peer.release()  # the hanging attempt fails (connection closed): retryable
        await wait_consumer_idle(r.js, timeout=30)  # redelivered after the 5s ack wait, then acked
        await asyncio.sleep(0.3)
        rec = await wait_ledger(r.ledger, "s-lost", {"sent"})
    assert len(http_peer.on("/hook")) == 1
    assert rec.attempts == 1 and rec.last_error == ""
    assert _skipped() - skipped == 1
