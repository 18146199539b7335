"""The circuit breaker and the rate limit protect a receiver, against a real local peer."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.metrics import REGISTRY

from .helpers import am_config, publish, running_notifier, send_request, wait_ledger
from .peers import Answer, HttpPeer

pytestmark = pytest.mark.integration


def _deferred(cause: str) -> float:
    return REGISTRY.get_sample_value("tocsin_notifier_deferred_total",
                                     {"integration": "webhook", "cause": cause}) or 0.0


async def test_breaker_opens_holds_requests_then_closes(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    http_peer.reply("/hook", Answer(500), Answer(500), Answer(500))  # then 200
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook'}}]
    tocsin:
      notifier:
        retry: {{backoff_base: 0.02, backoff_cap: 0.05, max_attempts: 4}}
        breaker: {{failures: 3, cooldown: 2s}}
    """)
    deferred_before = _deferred("breaker")
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-1", "team"))
        failures = await http_peer.wait_for(3, "/hook")
        await asyncio.sleep(0.3)
        # the circuit is open: a new request waits too, without touching the endpoint
        await publish(r.js, send_request("s-2", "team", flush_seq=2))
        await asyncio.sleep(0.5)
        assert len(http_peer.on("/hook")) == 3
        first = await wait_ledger(r.ledger, "s-1", {"sent"}, timeout=15)
        second = await wait_ledger(r.ledger, "s-2", {"sent"}, timeout=15)
        # closed again: the next request goes straight through
        t = time.monotonic()
        await publish(r.js, send_request("s-3", "team", flush_seq=3))
        await wait_ledger(r.ledger, "s-3", {"sent"})
        assert time.monotonic() - t < 1.5
    calls = http_peer.on("/hook")
    opened_at = failures[-1].at
    assert len(calls) == 6  # 3 failures, then s-1, s-2 and s-3 once each
    assert min(c.at for c in calls[3:]) - opened_at >= 1.9  # nothing during the cooldown
    # waiting for the circuit spent no attempt: s-1 made 3 + 1 of its 4
    assert first.attempts == 4 and second.attempts == 1
    assert _deferred("breaker") - deferred_before >= 2


@pytest.mark.parametrize("max_wait_in_process", [1.0, 0.05], ids=["wait-in-worker", "deferred"])
async def test_rate_limit_spaces_sends(nats_server: NatsServer, http_peer: HttpPeer,
                                       max_wait_in_process: float) -> None:
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook'}}]
    - name: other
      webhook_configs: [{{url: '{http_peer.url}/other'}}]
    tocsin:
      notifier:
        max_wait_in_process: {max_wait_in_process}
        rate_limits: {{team: {{rate: 4, burst: 1}}}}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        for i in range(6):
            await publish(r.js, send_request(f"s-{i}", "team", flush_seq=i))
        for i in range(6):
            await publish(r.js, send_request(f"o-{i}", "other", flush_seq=i))
        others = await http_peer.wait_for(6, "/other", timeout=5)
        got = await http_peer.wait_for(6, "/hook", timeout=30)
    arrivals = sorted(g.at for g in got)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.2  # 4 per second, no burst beyond one
    assert arrivals[-1] - arrivals[0] >= 1.2
    # another receiver is not held back by this one's limit
    assert max(o.at for o in others) - min(o.at for o in others) < 1.0
    assert len({g.headers["idempotency-key"] for g in got}) == 6
