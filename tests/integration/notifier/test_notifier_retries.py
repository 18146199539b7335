"""Retries, Retry-After, timeouts, permanent failures and the fallback receiver, against real peers."""

from __future__ import annotations

import pytest

from contracts.messages import SendRequest, decode_as, encode
from pipeline.foundation.embedded import NatsServer
from stages.notifier.core import fallback_request
from stages.notifier.ledger import attempts

from .helpers import am_config, dead_letters, publish, running_notifier, send_request, wait_ledger
from .peers import HANG, Answer, HttpPeer

pytestmark = pytest.mark.integration

FAST_RETRY = "tocsin: {notifier: {retry: {backoff_base: 0.02, backoff_cap: 0.1, max_attempts: 5}}}"


def _webhook_config(url: str, extra: str = FAST_RETRY, timeout: str = "") -> str:
    timeout_line = f", timeout: {timeout}" if timeout else ""
    return f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{url}/hook'{timeout_line}}}]
    {extra}
    """


@pytest.mark.parametrize(("failures", "reasons"), [
    ([500, 503], ["serverError", "serverError"]),
    ([408, 429], ["clientError", "rateLimited"]),
], ids=["5xx", "408-429"])
async def test_retry_then_success_same_key_and_body(nats_server: NatsServer, http_peer: HttpPeer,
                                                   failures: list[int], reasons: list[str]) -> None:
    http_peer.reply("/hook", *(Answer(code, body=f"busy {code}".encode()) for code in failures))
    cfg = am_config(_webhook_config(http_peer.url))
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-retry", "team"))
        got = await http_peer.wait_for(3, "/hook")
        rec = await wait_ledger(r.ledger, "s-retry", {"sent"})
        log = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}')
    assert {g.headers["idempotency-key"] for g in got} == {"s-retry"}
    assert len({g.body for g in got}) == 1  # every retry sends the same bytes
    assert rec.attempts == 3
    assert [(a.attempt, a.status, a.status_code, a.reason) for a in log] == [
        (1, "failed", failures[0], reasons[0]),
        (2, "failed", failures[1], reasons[1]),
        (3, "sent", 0, ""),
    ]
    assert f"busy {failures[0]}" in log[0].error
    assert log[0].fingerprints == ["fp-Down-a"]


@pytest.mark.parametrize("kind", ["webhook", "slack"])
async def test_retry_after_is_honoured(nats_server: NatsServer, http_peer: HttpPeer, kind: str) -> None:
    path = "/hook" if kind == "webhook" else "/slack"
    http_peer.reply(path, Answer(429, {"Retry-After": "2"}, b"slow down"))
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/hook'}}]
      slack_configs: [{{api_url: '{http_peer.url}/slack'}}]
    {FAST_RETRY}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-ra", "team", kind=kind))
        first, second = await http_peer.wait_for(2, path)
        await wait_ledger(r.ledger, "s-ra", {"sent"})
    # without the header the wait would be at most backoff_cap (0.1s)
    assert 1.95 <= second.at - first.at < 3.5


async def test_timeout_is_retried(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    http_peer.reply("/hook", HANG)
    cfg = am_config(_webhook_config(http_peer.url, timeout="500ms"))
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-slow", "team"))
        first, second = await http_peer.wait_for(2, "/hook")
        rec = await wait_ledger(r.ledger, "s-slow", {"sent"})
        log = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}')
    assert second.at - first.at >= 0.45
    assert rec.attempts == 2
    assert log[0].reason == "contextDeadlineExceeded"
    assert "no response within 0.5s" in log[0].error


@pytest.mark.parametrize(("status", "reason"), [
    (400, "clientError"),
    (404, "clientError"),
    (401, "authError"),
], ids=["400", "404", "401"])
async def test_permanent_4xx_is_dead_lettered_without_retry(nats_server: NatsServer, http_peer: HttpPeer,
                                                            status: int, reason: str) -> None:
    http_peer.default("/hook", Answer(status, body=b"bad payload"))
    cfg = am_config(_webhook_config(http_peer.url))
    req = send_request("s-perm", "team")
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, req)
        rec = await wait_ledger(r.ledger, "s-perm", {"failed"})
        [dl] = await dead_letters(r.js, wait_for=1)
    assert len(http_peer.on("/hook")) == 1
    assert rec.attempts == 1 and rec.reason == reason
    assert dl.stage == "notifier" and dl.key == "s-perm"
    assert f"unexpected status code {status}" in dl.reason and "permanent" in dl.reason
    assert decode_as(dl.payload, SendRequest) == req
    assert dl.subject.startswith("tocsin.sends.out.0.send.")


async def test_fallback_receiver_after_budget(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    http_peer.default("/primary", Answer(500, body=b"down"))
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/primary'}}]
    - name: backup
      webhook_configs: [{{url: '{http_peer.url}/backup'}}]
      email_configs: [{{to: 'x@example.org', from: 'y@example.org', smarthost: '127.0.0.1:1'}}]
    tocsin:
      notifier:
        retry: {{backoff_base: 0.02, backoff_cap: 0.05, max_attempts: 3}}
        breaker: {{failures: 100}}
        fallbacks: {{team: backup}}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-fb", "team"))
        [got] = await http_peer.wait_for(1, "/backup")
        rec = await wait_ledger(r.ledger, "s-fb", {"fallback"})
        fb = await wait_ledger(r.ledger, "s-fb/fallback/backup/webhook/0", {"sent"})
        # the backup's email integration is a send of its own, failing on its own (nothing listens)
        fb_mail = await wait_ledger(r.ledger, "s-fb/fallback/backup/email/0", {"failed"})
        dls = {d.key: d for d in await dead_letters(r.js, wait_for=2)}
    assert len(http_peer.on("/primary")) == 3
    assert rec.attempts == 3 and rec.fallback == "backup"
    assert fb.receiver == "backup" and fb.attempts == 1
    assert got.headers["idempotency-key"] == "s-fb/fallback/backup/webhook/0"
    body = got.json()
    assert body["receiver"] == "backup"
    assert [a["fingerprint"] for a in body["alerts"]] == ["fp-Down-a"]
    assert fb_mail.attempts == 3
    assert set(dls) == {"s-fb", "s-fb/fallback/backup/email/0"}
    assert "retry budget exhausted" in dls["s-fb"].reason and "fallback receiver 'backup'" in dls["s-fb"].reason
    assert "fallback receiver" not in dls["s-fb/fallback/backup/email/0"].reason  # no fallback of a fallback


async def test_budget_in_seconds_ends_retries(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    http_peer.default("/hook", Answer(503))
    cfg = am_config(_webhook_config(http_peer.url, extra=(
        "tocsin: {notifier: {retry: {budget: 1s, backoff_base: 0.2, backoff_cap: 0.2, max_attempts: 1000},"
        " breaker: {failures: 1000}}}")))
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-budget", "team"))
        rec = await wait_ledger(r.ledger, "s-budget", {"failed"})
    calls = http_peer.on("/hook")
    # full-jitter waits of at most 0.2s (mean 0.1s) within a 1s budget: some attempts, all inside the budget
    # (the budget counts attempts and waits; bookkeeping between them adds some wall time)
    assert 2 <= len(calls) <= 40
    assert calls[-1].at - calls[0].at < 3.0
    assert rec.spent < 1.0 and rec.attempts == len(calls)


def test_fallback_request_keeps_payload() -> None:

    req = send_request("s-x", "team")
    fb = fallback_request(req, "backup", "email", 2)
    assert (fb.id, fb.receiver, fb.integration.kind, fb.integration.index) == (
        "s-x/fallback/backup/email/2", "backup", "email", 2)
    assert encode(fb.alerts[0]) == encode(req.alerts[0]) and fb.group_key == req.group_key


async def test_alertmanagers_notification_metrics(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    """An Alertmanager dashboard keeps working: its metric names count what Alertmanager's do."""
    from pipeline.foundation.runtime.metrics import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    names = [("notifications_total", {"integration": "webhook"}),
             ("notifications_failed_total", {"integration": "webhook", "reason": "serverError"}),
             ("notification_requests_total", {"integration": "webhook"}),
             ("notification_requests_failed_total", {"integration": "webhook"}),
             ("notification_latency_seconds_count", {"integration": "webhook"})]
    before = {(p, n): value(f"{p}_{n}", **lb) for p in ("alertmanager", "tocsin") for n, lb in names}
    http_peer.default("/hook", Answer(500, body=b"down"))
    cfg = am_config(_webhook_config(http_peer.url, extra="""
    tocsin:
      notifier:
        retry: {backoff_base: 0.02, backoff_cap: 0.05, max_attempts: 3}
        breaker: {failures: 100}
    """))
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-metrics", "team"))
        await wait_ledger(r.ledger, "s-metrics", {"failed"})
    # one notification, three requests, all three failed, the notification failed once
    expect = dict(zip([n for n, _ in names], [1, 1, 3, 3, 3], strict=True))
    for p in ("alertmanager", "tocsin"):
        for n, lb in names:
            assert value(f"{p}_{n}", **lb) - before[(p, n)] == expect[n], (p, n)


async def test_a_template_failing_at_send_time_is_recorded_on_the_attempt(nats_server: NatsServer,
                                                                         http_peer: HttpPeer) -> None:
    """The notification still goes, with the field's default, and the attempt says what failed."""
    http_peer.default("/slack", Answer(200, body=b"ok"))
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      slack_configs:
      - api_url: '{http_peer.url}/slack'
        channel: '#ops'
        title: '{{{{ .CommonLabels.alertname.Nope }}}}'
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-tmpl", "team", kind="slack"))
        await wait_ledger(r.ledger, "s-tmpl", {"sent"})
        log = await attempts(r.js, "acme", group_key='{}:{alertname="Down"}')
    [got] = http_peer.on("/slack")
    assert got.json()["attachments"][0]["title"].startswith("[FIRING:1]")  # slack.default.title
    [sent] = [a for a in log if a.send_id == "s-tmpl"]
    assert sent.status == "sent" and len(sent.template_errors) == 1
    assert sent.template_errors[0].startswith("slack title:") and "Nope" in sent.template_errors[0]
