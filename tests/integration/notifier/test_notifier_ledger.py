"""The idempotency ledger: nothing sent twice when it says so, resumed with the same key otherwise;
bad messages dead-lettered; the attempt log as the API reads it."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.messages import SendRequest, decode_as
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.metrics import REGISTRY
from stages.notifier.ledger import LEDGER, Ledger, attempts, ensure_ledger, legacy_send_subject, send_subject
from stages.notifier.records import LedgerRecord
from stages.notifier.worker import CONSUMER, SENDS, SENDS_FILTER

from .helpers import (
    T0,
    alert,
    am_config,
    dead_letters,
    publish,
    running_notifier,
    send_request,
    wait_consumer_idle,
    wait_ledger,
)
from .peers import HttpPeer

pytestmark = pytest.mark.integration


def _config(url: str) -> str:
    return f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{url}/hook'}}]
    tocsin: {{notifier: {{retry: {{backoff_base: 0.01, backoff_cap: 0.05}}}}}}
    """


def _skipped() -> float:
    return REGISTRY.get_sample_value("tocsin_notifier_skipped_total", {"why": "already_done"}) or 0.0


def _record(send_id: str, state: str, attempts: int = 0) -> LedgerRecord:
    return LedgerRecord(id=send_id, state=state, at=T0, org="acme", receiver="team",  # type: ignore[arg-type]
                        integration="webhook[0]", group_key='{}:{alertname="Down"}', attempts=attempts,
                        idempotency_key=send_id)


async def test_a_second_copy_of_a_sent_request_is_not_sent(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    cfg = am_config(_config(http_peer.url))
    skipped = _skipped()
    async with running_notifier(nats_server.url, cfg) as r:
        req = send_request("s-once", "team")
        await publish(r.js, req)
        await wait_ledger(r.ledger, "s-once", {"sent"})
        await publish(r.js, req, msg_id="another-copy")  # past the stream's duplicate window
        await wait_consumer_idle(r.js)
    assert len(http_peer.on("/hook")) == 1
    assert _skipped() - skipped == 1


async def _deliver_once_without_ack(nats_url: str) -> int:
    """Create the notifier consumer and take the first request without acknowledging it (nak):
    the worker started next gets it as a redelivery."""
    nc = await connect(nats_url)
    js = nc.jetstream()
    await js.add_consumer(SENDS.stream, ConsumerConfig(
        durable_name=CONSUMER, filter_subject=SENDS_FILTER, ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL, ack_wait=120, max_deliver=-1))
    psub = await js.pull_subscribe_bind(durable=CONSUMER, stream=SENDS.stream)
    [msg] = await psub.fetch(1, timeout=5)
    await msg.nak()
    await nc.close()
    return int(msg.metadata.num_delivered)


@pytest.mark.parametrize("state", ["sent", "failed", "fallback"])
async def test_redelivered_request_with_a_final_record_is_acked_without_sending(
        nats_server: NatsServer, http_peer: HttpPeer, state: str) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    await Ledger(nc, js).write(_record("s-done", state, attempts=1))
    await publish(js, send_request("s-done", "team"))
    await nc.close()
    assert await _deliver_once_without_ack(nats_server.url) == 1
    skipped = _skipped()
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        await wait_consumer_idle(r.js)
        got = await r.ledger.read("s-done")
    assert http_peer.requests == []
    assert got is not None and got[1].state == state
    assert _skipped() - skipped == 1


async def test_request_left_sending_is_sent_again_with_the_same_key(nats_server: NatsServer,
                                                                    http_peer: HttpPeer) -> None:
    """A worker died during the request: the ledger says "sending"; the next worker resends it."""
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    await Ledger(nc, js).write(_record("s-half", "sending", attempts=1))
    await publish(js, send_request("s-half", "team"))
    await nc.close()
    await _deliver_once_without_ack(nats_server.url)
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        rec = await wait_ledger(r.ledger, "s-half", {"sent"})
    [got] = http_peer.on("/hook")
    assert got.headers["idempotency-key"] == "s-half"
    assert rec.attempts == 2  # the lost attempt counts


async def test_a_send_that_succeeds_writes_the_ledger_twice(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    """Hop C's cost: the claim before the attempt and ``sent`` after it, nothing else (the
    success's attempt log entry is its ``sent`` record); the log still lists every success."""
    n = 40
    ids = [f"s-w{i}" for i in range(n)]
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        before = (await r.js.stream_info(LEDGER.stream)).state.last_seq
        for sid in ids:  # published together: the worker has them in flight at once
            await publish(r.js, send_request(sid, "team"))
        for sid in ids:
            await wait_ledger(r.ledger, sid, {"sent"})
        await wait_consumer_idle(r.js)
        await asyncio.sleep(0.2)
        state = (await r.js.stream_info(LEDGER.stream)).state
        log = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}', limit=1000)
    assert len(http_peer.on("/hook")) == n
    assert state.last_seq - before == 2 * n  # every write, the claims rolled up since included
    assert state.messages == n  # what is kept: the "sent" records
    assert sorted(a.send_id for a in log) == sorted(ids)
    assert {(a.status, a.attempt, a.flush_seq) for a in log} == {("sent", 1, 1)}
    assert all(a.fingerprints == ["fp-Down-a"] and a.duration > 0 for a in log)


async def test_a_send_recorded_in_the_layout_before_is_not_sent_again(nats_server: NatsServer,
                                                                       http_peer: HttpPeer) -> None:
    """Records of the layout before (``tocsin.ledger.send.<id>``) are still honoured: a copy
    of a request sent before the upgrade, delivered for the first time, is not sent; one left
    ``sending`` there is resumed (its attempts kept) on the new subject."""
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    for sid, state in (("s-old-sent", "sent"), ("s-old-half", "sending")):
        await js.publish(legacy_send_subject(sid), msgspec.json.encode(_record(sid, state, attempts=1)),
                         headers={"Nats-Rollup": "sub"})
    await nc.close()
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        assert r.ledger.legacy
        await publish(r.js, send_request("s-old-sent", "team"))
        await publish(r.js, send_request("s-old-half", "team"))
        rec = await wait_ledger(r.ledger, "s-old-half", {"sent"})
        await wait_consumer_idle(r.js)
        fresh = Ledger(r.nc, r.js)
        moved = await fresh.read("s-old-half")  # found on the new subject, without the legacy read
    assert [g.headers["idempotency-key"] for g in http_peer.on("/hook")] == ["s-old-half"]
    assert rec.attempts == 2
    assert moved is not None and moved[0] > 0 and moved[1].state == "sent"


async def test_concurrent_claim_only_one_wins(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_ledger(js)
    ledger = Ledger(nc, js)
    results = await asyncio.gather(*(ledger.write(_record("s-race", "sending"), expect=0) for _ in range(5)))
    await nc.close()
    assert sum(r is not None for r in results) == 1


async def test_ledger_keeps_only_the_last_record_of_a_send(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_ledger(js)
    ledger = Ledger(nc, js)
    seq = await ledger.write(_record("s-roll", "sending"), expect=0)
    assert seq is not None
    assert await ledger.write(_record("s-roll", "sending", attempts=1), expect=seq) is not None
    assert await ledger.write(_record("s-roll", "sent", attempts=2), expect=seq) is None  # stale
    await ledger.write_unconfirmed(_record("s-roll", "sent", attempts=2))
    await asyncio.sleep(0.2)
    subject = send_subject("acme", '{}:{alertname="Down"}', "s-roll")
    info = await js.stream_info(LEDGER.stream, subjects_filter=subject)
    got = await ledger.read("s-roll")
    await nc.close()
    assert got is not None and got[1].state == "sent" and got[1].attempts == 2
    assert info.state.subjects == {subject: 1}


async def test_undecodable_and_unroutable_requests_are_dead_lettered(nats_server: NatsServer,
                                                                     http_peer: HttpPeer) -> None:
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        await r.js.publish(SENDS.out(3, "send", "bad-1"), b"{not json")
        await r.js.publish(SENDS.out(3, "send", "bad-2"), b'{"type": "send_request.v1", "id": 1}')
        await publish(r.js, send_request("s-nowhere", "ghost"))
        dls = await dead_letters(r.js, wait_for=3)
        await wait_consumer_idle(r.js)
    by_payload = {d.payload: d for d in dls}
    assert "undecodable" in by_payload[b"{not json"].reason
    assert "undecodable" in by_payload[b'{"type": "send_request.v1", "id": 1}'].reason
    [ghost] = [d for d in dls if d.key == "s-nowhere"]
    assert "no integration ghost/webhook[0]" in ghost.reason
    assert decode_as(ghost.payload, SendRequest).receiver == "ghost"
    assert all(d.subject.startswith("tocsin.sends.out.3.send.") for d in dls if d.key != "s-nowhere")
    assert http_peer.requests == []


async def test_attempts_by_group_and_by_fingerprint(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    async with running_notifier(nats_server.url, am_config(_config(http_peer.url))) as r:
        a = send_request("s-a", "team", alerts=[alert("Down", instance="a")])
        b = send_request("s-b", "team", alerts=[alert("Down", instance="b")], flush_seq=2)
        other_org = send_request("s-c", "team", org="globex", alerts=[alert("Down", instance="a", org="globex")])
        for req in (a, b, other_org):
            await publish(r.js, req)
        for sid in ("s-a", "s-b", "s-c"):
            await wait_ledger(r.ledger, sid, {"sent"})
        await asyncio.sleep(0.2)
        group = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}')
        by_fp = await attempts(r.js, "acme", fingerprint="fp-Down-b")
        limited = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}', limit=1)
        none = await attempts(r.js, "initech", fingerprint="fp-Down-a")
    assert sorted(x.send_id for x in group) == ["s-a", "s-b"]
    assert {x.status for x in group} == {"sent"}
    assert [x.send_id for x in by_fp] == ["s-b"]
    assert len(limited) == 1
    assert none == []


async def test_interrupted_hand_off_is_finished_without_a_new_attempt(nats_server: NatsServer,
                                                                       http_peer: HttpPeer) -> None:
    """A worker died after giving up but before recording the hand-off: the next one hands
    the notification to the fallback and dead-letters it, without trying the primary again."""
    import msgspec

    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    await ensure_ledger(js)
    record = msgspec.structs.replace(_record("s-handoff", "sending", attempts=3), giving_up=True,
                                     last_error="unexpected status code 500", reason="serverError")
    await Ledger(nc, js).write(record)
    await nc.close()
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook'}}]
    - name: backup
      webhook_configs: [{{url: '{http_peer.url}/backup'}}]
    tocsin: {{notifier: {{fallbacks: {{team: backup}}}}}}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-handoff", "team"))
        [got] = await http_peer.wait_for(1, "/backup")
        rec = await wait_ledger(r.ledger, "s-handoff", {"fallback"})
        [dl] = await dead_letters(r.js, wait_for=1)
    assert http_peer.on("/hook") == []
    assert got.headers["idempotency-key"] == "s-handoff/fallback/backup/webhook/0"
    assert rec.attempts == 3 and rec.fallback == "backup"
    assert "after 3 attempt(s) (retry budget exhausted): unexpected status code 500" in dl.reason
