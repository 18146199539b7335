"""One attempt's timeout (``delivery.attempt``): one timer serves every attempt in flight,
as ``asyncio.timeout`` would per attempt, against a real HTTP peer that hangs."""

from __future__ import annotations

import asyncio
import time

import pytest

from stages.notifier.delivery import attempt
from stages.notifier.senders import build_senders

from .helpers import am_config, send_request
from .peers import HANG, Answer, HttpPeer


def _config(url: str) -> str:
    return f"""
route: {{receiver: slow}}
receivers:
- name: slow
  webhook_configs: [{{url: '{url}/slow', timeout: 600ms}}]
- name: fast
  webhook_configs: [{{url: '{url}/fast', timeout: 200ms}}]
"""


async def test_attempts_time_out_each_at_its_own_deadline(http_peer: HttpPeer) -> None:
    http_peer.default("/slow", HANG)
    http_peer.default("/fast", HANG)
    http_peer.reply("/fast", Answer(200), HANG)  # the second fast attempt answers at once
    senders = build_senders(am_config(_config(http_peer.url)), external_url="http://am")
    slow = senders.get(("slow", "webhook", 0))
    fast = senders.get(("fast", "webhook", 0))
    assert slow is not None and fast is not None
    try:
        async def timed(sender: object, send_id: str, delay: float) -> tuple[float, str]:
            await asyncio.sleep(delay)
            t0 = time.monotonic()
            out = await attempt(sender, send_request(send_id, "x"), 0.0)  # type: ignore[arg-type]
            return time.monotonic() - t0, out.error if not out.ok else "ok"

        # the slow one's timer is set first; the fast ones' earlier deadlines must still be kept
        (t_slow, e_slow), (t_ok, e_ok), (t_fast, e_fast) = await asyncio.gather(
            timed(slow, "s1", 0.0), timed(fast, "f1", 0.05), timed(fast, "f2", 0.1))
    finally:
        await senders.aclose()
    assert e_ok == "ok" and t_ok < 0.2
    assert e_fast == "no response within 0.2s" and 0.19 <= t_fast < 0.45
    assert e_slow == "no response within 0.6s" and 0.59 <= t_slow < 0.9


async def test_a_cancelled_attempt_is_cancelled_not_timed_out(http_peer: HttpPeer) -> None:
    http_peer.default("/slow", HANG)
    senders = build_senders(am_config(_config(http_peer.url)), external_url="http://am")
    slow = senders.get(("slow", "webhook", 0))
    assert slow is not None
    try:
        task = asyncio.create_task(attempt(slow, send_request("c1", "x"), 0.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the timer left behind fires on nothing; a later attempt still times out on time
        t0 = time.monotonic()
        out = await attempt(slow, send_request("c2", "x"), 0.0)
        assert out.error == "no response within 0.6s" and 0.59 <= time.monotonic() - t0 < 0.9
    finally:
        await senders.aclose()
