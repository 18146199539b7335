"""A send that lasts longer than the ack wait keeps its request: in-progress acks, no redelivery."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.foundation.embedded import NatsServer

from .helpers import am_config, publish, running_notifier, send_request, wait_consumer_idle, wait_ledger
from .peers import HANG, HttpPeer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_send_longer_than_the_ack_wait_is_not_redelivered(nats_server: NatsServer,
                                                                   http_peer: HttpPeer) -> None:
    http_peer.reply("/hook", HANG)  # the first attempt hangs past the 5s ack wait
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook', timeout: 60s}}]
    tocsin: {{notifier: {{ack_wait: 5s, retry: {{backoff_base: 0.01, backoff_cap: 0.05}}}}}}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-long", "team"))
        await http_peer.wait_for(1, "/hook")
        await asyncio.sleep(8.0)  # a redelivery would start a second request meanwhile
        assert len(http_peer.on("/hook")) == 1
        http_peer.release()  # the attempt fails; the retry succeeds
        rec = await wait_ledger(r.ledger, "s-long", {"sent"})
        await wait_consumer_idle(r.js)
    assert [q.headers["idempotency-key"] for q in http_peer.on("/hook")] == ["s-long", "s-long"]
    assert rec.attempts == 2
