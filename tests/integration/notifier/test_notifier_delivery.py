"""Each integration delivers to a real local peer, with the exact payload and headers."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from pipeline.foundation.embedded import NatsServer

from .helpers import (
    T0,
    alert,
    am_config,
    publish,
    running_notifier,
    send_request,
    wait_consumer_idle,
    wait_ledger,
)
from .peers import HttpPeer, SmtpPeer

pytestmark = [
    pytest.mark.integration,
    # aiosmtpd cannot tell implicit TLS from plain text when it decides whether AUTH needs TLS
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

EXTERNAL = "http://tocsin.test:9093"
GROUP_KEY = '{}:{alertname="Down"}'


def _alert_json(instance: str, status: str = "firing", ends: str = "0001-01-01T00:00:00Z") -> dict[str, object]:
    return {
        "status": status,
        "labels": {"alertname": "Down", "instance": instance},
        "annotations": {"summary": f"Down on {instance}"},
        "startsAt": "2023-11-14T22:12:20Z",
        "endsAt": ends,
        "generatorURL": "http://prom/graph",
        "fingerprint": f"fp-Down-{instance}",
    }


async def test_webhook_payload_v4_headers_and_basic_auth_from_file(
        nats_server: NatsServer, http_peer: HttpPeer, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs:
      - url: '{http_peer.url}/hook'
        http_config:
          basic_auth: {{username: alice, password_file: '{tmp_path / "password"}'}}
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("org/acme/g1/team/webhook/0/1", "team"))
        [got] = await http_peer.wait_for(1, "/hook")
        await wait_ledger(r.ledger, "org/acme/g1/team/webhook/0/1", {"sent"})
    assert got.method == "POST"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == "org/acme/g1/team/webhook/0/1"
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert got.json() == {
        "receiver": "team",
        "status": "firing",
        "alerts": [_alert_json("a")],
        "groupLabels": {"alertname": "Down"},
        "commonLabels": {"alertname": "Down", "instance": "a"},
        "commonAnnotations": {"summary": "Down on a"},
        "externalURL": EXTERNAL,
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
    }


async def test_webhook_bearer_token_from_env_and_max_alerts(
        nats_server: NatsServer, http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_TEST_TOKEN", "tok-from-env")
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs:
      - url: '{http_peer.url}/hook'
        max_alerts: 2
        http_config: {{authorization: {{credentials: '${{TOCSIN_TEST_TOKEN}}'}}}}
    """)
    alerts = [alert("Down", instance=i) for i in ("a", "b", "c")]
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-max", "team", alerts=alerts))
        [got] = await http_peer.wait_for(1, "/hook")
    assert got.headers["authorization"] == "Bearer tok-from-env"
    body = got.json()
    assert [a["labels"]["instance"] for a in body["alerts"]] == ["a", "b"]
    assert body["truncatedAlerts"] == 1
    assert body["commonLabels"] == {"alertname": "Down"}


async def test_webhook_resolved_not_sent_when_send_resolved_false(nats_server: NatsServer,
                                                                  http_peer: HttpPeer) -> None:
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      webhook_configs: [{{url: '{http_peer.url}/quiet', send_resolved: false}}, {{url: '{http_peer.url}/loud'}}]
    """)
    resolved = [alert("Down", ends_at=T0 - 1)]
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-res-0", "team", index=0, alerts=resolved, status="resolved"))
        await publish(r.js, send_request("s-res-1", "team", index=1, alerts=resolved, status="resolved"))
        [got] = await http_peer.wait_for(1, "/loud")
        assert got.json()["status"] == "resolved"
        assert got.json()["alerts"] == [_alert_json("a", "resolved", "2023-11-14T22:13:19Z")]
        await wait_consumer_idle(r.js)
        assert await r.ledger.read("s-res-0") is None  # acknowledged before any ledger write
    assert http_peer.on("/quiet") == []


async def test_slack_incoming_webhook_from_api_url_file(nats_server: NatsServer, http_peer: HttpPeer,
                                                        tmp_path: Path) -> None:
    (tmp_path / "slack-url").write_text(f"{http_peer.url}/services/T0/B0/XYZ\n")
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      slack_configs:
      - api_url_file: '{tmp_path / "slack-url"}'
        channel: '#ops'
    """)
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, send_request("s-slack", "team", kind="slack"))
        [got] = await http_peer.wait_for(1, "/services/T0/B0/XYZ")
        await wait_ledger(r.ledger, "s-slack", {"sent"})
    link = f"{EXTERNAL}/#/alerts?receiver=team"
    assert got.json() == {
        "channel": "#ops",
        "username": "Alertmanager",
        "attachments": [{
            "title": "[FIRING:1] Down (a)",
            "title_link": link,
            "text": "",
            "fallback": f"[FIRING:1] Down (a) | {link}",
            "callback_id": "",
            "footer": "",
            "color": "danger",
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }],
    }


@pytest.mark.parametrize(("acknowledged", "ends_at", "action"), [
    (False, None, "trigger"),
    (True, None, "acknowledge"),
    (False, T0 - 1, "resolve"),
], ids=["trigger", "acknowledged", "resolved"])
async def test_pagerduty_events_v2(nats_server: NatsServer, http_peer: HttpPeer, tmp_path: Path,
                                   acknowledged: bool, ends_at: float | None, action: str) -> None:
    (tmp_path / "routing-key").write_text("rk-0123456789\n")
    cfg = am_config(f"""
    route: {{receiver: team}}
    receivers:
    - name: team
      pagerduty_configs:
      - routing_key_file: '{tmp_path / "routing-key"}'
        url: '{http_peer.url}/v2/enqueue'
    """)
    req = send_request("s-pd", "team", kind="pagerduty", acknowledged=acknowledged,
                       alerts=[alert("Down", ends_at=ends_at)])
    async with running_notifier(nats_server.url, cfg) as r:
        await publish(r.js, req)
        [got] = await http_peer.wait_for(1, "/v2/enqueue")
    body = got.json()
    assert body["routing_key"] == "rk-0123456789"
    assert body["event_action"] == action
    assert body["dedup_key"] == hashlib.sha256(f"acme\x00{GROUP_KEY}".encode()).hexdigest()
    assert body["payload"]["source"] == "Alertmanager"
    assert body["payload"]["severity"] == "error"
    assert body["payload"]["timestamp"] == "2023-11-14T22:13:20Z"
    status = "RESOLVED" if ends_at else "FIRING:1"
    assert body["payload"]["summary"] == f"[{status}] Down (a)"
    assert body["client_url"] == f"{EXTERNAL}/#/alerts?receiver=team"


def _message_id(send_id: str, domain: str) -> str:
    return f"<tocsin.{hashlib.sha256(send_id.encode()).hexdigest()[:40]}@{domain}>"


@pytest.mark.parametrize(("mode", "exclude", "extra"), [
    ("starttls", "LOGIN", "require_tls: true"),
    ("starttls", "PLAIN", "require_tls: true"),
    ("implicit", "LOGIN", "force_implicit_tls: true"),
], ids=["starttls-auth-plain", "starttls-auth-login", "implicit-tls"])
async def test_email_tls_and_auth(nats_server: NatsServer, tmp_path: Path, mode: str, exclude: str,
                                  extra: str) -> None:
    smtp = SmtpPeer(tmp_path, mode=mode, users={"tocsin": "mail-pass"}, exclude_auth=[exclude]).start()
    (tmp_path / "smtp-pass").write_text("mail-pass")
    try:
        cfg = am_config(f"""
        route: {{receiver: team}}
        receivers:
        - name: team
          email_configs:
          - to: 'oncall@example.org, boss@example.org'
            from: 'Tocsin <tocsin@alerts.example.com>'
            smarthost: '127.0.0.1:{smtp.port}'
            auth_username: tocsin
            auth_password_file: '{tmp_path / "smtp-pass"}'
            {extra}
            tls_config: {{ca_file: '{smtp.cert}'}}
        """)
        async with running_notifier(nats_server.url, cfg) as r:
            await publish(r.js, send_request("s-mail", "team", kind="email"))
            [mail] = await smtp.wait_for(1)
            await wait_ledger(r.ledger, "s-mail", {"sent"})
    finally:
        smtp.stop()
    assert mail.tls
    assert mail.auth_user == "tocsin"
    assert mail.mail_from == "tocsin@alerts.example.com"
    assert mail.rcpt_tos == ["oncall@example.org", "boss@example.org"]
    msg = mail.message()
    # a long Message-ID is folded onto its own line; unfolded it is the deterministic id
    assert msg["Message-ID"].strip() == _message_id("s-mail", "alerts.example.com")
    assert msg["Subject"] == "[FIRING:1] Down (a)"
    assert msg["To"] == "oncall@example.org, boss@example.org"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "Down on a" in parts["text/plain"]
    assert "Down on a" in parts["text/html"]


async def test_email_require_tls_without_starttls_is_retried_then_dead_lettered(
        nats_server: NatsServer, tmp_path: Path) -> None:
    from .helpers import dead_letters

    smtp = SmtpPeer(tmp_path, mode="plain").start()
    try:
        cfg = am_config(f"""
        route: {{receiver: team}}
        receivers:
        - name: team
          email_configs:
          - {{to: 'oncall@example.org', from: 'tocsin@example.com', smarthost: '127.0.0.1:{smtp.port}'}}
        tocsin:
          notifier: {{retry: {{max_attempts: 2, backoff_base: 0.01, backoff_cap: 0.05}}}}
        """)
        async with running_notifier(nats_server.url, cfg) as r:
            await publish(r.js, send_request("s-notls", "team", kind="email"))
            rec = await wait_ledger(r.ledger, "s-notls", {"failed"})
            [dl] = await dead_letters(r.js, wait_for=1)
    finally:
        smtp.stop()
    assert smtp.mails == []
    assert rec.attempts == 2
    assert "STARTTLS" in rec.last_error
    assert "STARTTLS" in dl.reason
