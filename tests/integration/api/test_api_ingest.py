"""Ingest sources on real servers (issue #25, part 2): a local "SNS" signing with a test CA's
certificate, served (with the subscription confirmation URL) by a local HTTP server whose
host is allow-listed; Grafana's webhook payload; a generic mapping of a made-up vendor's
payload; dead letters; tokens, body and rate limits.

The ingest routes run in an application of their own beside a ``rules`` + ``api`` process
(whose ``GET /api/v2/alerts`` reads what the rules stage made of them), on the same NATS.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette

from pipeline.application.api.auth.middleware import auth_exception_handlers
from pipeline.application.api.context import ApiContext
from pipeline.application.api.ingest import ingest_routes
from pipeline.application.app import Settings
from pipeline.application.config.ingest import IngestConfig
from pipeline.application.dlq import list_dead_letters
from pipeline.application.settings import load_text
from pipeline.foundation.amconfig.decode import Decoder, compose
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect
from tests.pipeline_process import running
from tests.receivers import http_receiver

pytestmark = pytest.mark.integration

CONFIG = """
route:
  receiver: team
receivers:
  - name: team
tocsin:
  default_org: acme
"""
TOPIC = "arn:aws:sns:eu-west-1:123456789012:alarms"
TOKEN = "grafana-s3cret"


# --------------------------------------------------------------------------- a local "SNS"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class LocalSns:
    """A test CA, SNS's signing certificate issued by it, and an HTTP server handing out the
    certificate and taking subscription confirmations."""

    key: rsa.RSAPrivateKey
    cert_pem: bytes
    url: str = ""
    confirmed: list[str] = field(default_factory=list)
    cert_gets: int = 0

    @classmethod
    def make(cls) -> LocalSns:
        now = dt.datetime.now(dt.UTC)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
              .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (x509.CertificateBuilder().subject_name(_name("sns.amazonaws.com")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, msg: dict[str, str], version: str = "1") -> dict[str, str]:
        names = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if msg["Type"] == "Notification"
                 else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
        text = "".join(f"{n}\n{msg[n]}\n" for n in names if n in msg)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**msg, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": f"{self.url}/SimpleNotificationService-test.pem"}

    def envelope(self, kind: str, message: str, version: str = "1", topic: str = TOPIC,
                 **extra: str) -> dict[str, str]:
        msg = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic, "Message": message,
               "Timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               **extra}
        return self.sign(msg, version)


@pytest.fixture
def local_sns() -> Iterator[LocalSns]:
    sns = LocalSns.make()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith(".pem"):
                sns.cert_gets += 1
                body = sns.cert_pem
            elif self.path.startswith("/confirm"):
                sns.confirmed.append(self.path)
                body = b"<ConfirmSubscriptionResponse/>"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sns.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sns
    server.shutdown()
    server.server_close()


def ingest_config(text: str) -> IngestConfig:
    decoder = Decoder("<test>")
    node = compose(text)
    assert node is not None
    config = decoder.decode(node, IngestConfig, "tocsin.ingest")
    assert not decoder.errors, decoder.errors
    assert isinstance(config, IngestConfig)
    return config


INGEST = f"""
sources:
  sns:
    topics:
      {TOPIC}:
        org: cloud
        labels: {{severity: critical}}
    cert_hosts: [127.0.0.1]
    confirm_hosts: [127.0.0.1]
    allow_http: true
  sns-manual:
    kind: sns
    topics:
      {TOPIC}: {{org: cloud}}
    cert_hosts: [127.0.0.1]
    confirm: false
    allow_http: true
  grafana:
    token_file: grafana.token
    org: acme
    labels: {{source: grafana}}
  vendor:
    kind: generic
    token_env: TOCSIN_TEST_VENDOR_TOKEN
    org: acme
    rate: 1
    burst: 2
    max_body_bytes: 4096
    mapping:
      alerts: incidents
      alertname: check.name
      labels:
        host: check.host
        severity: "{{{{ .level | toLower }}}}"
      annotations: {{summary: message}}
      status: state
      firing: [open]
      resolved: [closed]
      fingerprint: id
      starts_at: opened
"""


@dataclass
class Stack:
    api: httpx.AsyncClient  # the rules + api process
    ingest: httpx.AsyncClient  # the ingest routes
    ctx: ApiContext


@contextlib.asynccontextmanager
async def ingest_stack(nats_url: str, tmp_path: Path, config: str, stages: list[str]) -> AsyncIterator[Stack]:
    """A process running ``stages`` (with the API), and the ingest routes beside it."""
    loaded = load_text(config)
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_url, listen="127.0.0.1:0",
                        loaded=loaded, partitions=4)
    async with running(settings, stages) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        nc = await connect(nats_url, name="test-ingest")
        ctx = ApiContext(nc, nc.jetstream(), 4, loaded)
        app = Starlette(routes=ingest_routes(ctx, config=ingest_config(INGEST), base_dir=tmp_path),
                        exception_handlers=auth_exception_handlers())
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest", timeout=15) as ingest:
                yield Stack(api, ingest, ctx)
        finally:
            await nc.close()


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    (tmp_path / "grafana.token").write_text(TOKEN + "\n")
    monkeypatch.setenv("TOCSIN_TEST_VENDOR_TOKEN", "vendor-token")
    async with ingest_stack(nats_server.url, tmp_path, CONFIG, ["rules", "api"]) as s:
        yield s


async def listed(api: httpx.AsyncClient, org: str, want: Any, timeout: float = 10) -> list[dict[str, Any]]:
    """The org's alerts once ``want(alerts)`` holds."""
    with anyio.fail_after(timeout):
        while True:
            alerts = (await api.get("/api/v2/alerts", headers={"X-Scope-OrgID": org})).json()
            if want(alerts):
                return list(alerts)
            await anyio.sleep(0.05)


def alarm(state: str, name: str = "HighCPU") -> str:
    return msgspec.json.encode({
        "AlarmName": name, "AlarmDescription": "CPU above 80%", "AWSAccountId": "123456789012",
        "NewStateValue": state, "NewStateReason": f"Threshold Crossed: now {state}",
        "StateChangeTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": "EU (Ireland)", "AlarmArn": f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}",
        "OldStateValue": "OK" if state == "ALARM" else "ALARM",
        "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2", "Statistic": "AVERAGE",
                    "Dimensions": [{"value": "i-0abc", "name": "InstanceId"}], "Threshold": 80.0},
    }).decode()


async def dead_letters(ctx: ApiContext) -> list[Any]:
    return [d async for d in list_dead_letters(ctx.js, stream="TOCSIN_EVENTS")]


# --------------------------------------------------------------------------- tests


async def test_signed_cloudwatch_alarm_fires_then_ok_resolves(stack: Stack, local_sns: LocalSns) -> None:
    headers = {"x-amz-sns-message-type": "Notification"}
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope("Notification", alarm("ALARM")),
                                headers=headers)
    assert r.status_code == 200, r.text
    (got,) = await listed(stack.api, "cloud", lambda a: len(a) == 1)
    assert got["labels"] == {"alertname": "HighCPU", "region": "eu-west-1", "account": "123456789012",
                             "namespace": "AWS/EC2", "metric": "CPUUtilization", "InstanceId": "i-0abc",
                             "severity": "critical"}
    assert got["annotations"]["summary"] == "CPU above 80%"
    assert got["generatorURL"].startswith("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1")
    assert got["endsAt"].startswith("9999-12-31")  # fires until OK, not for resolve_timeout
    # OK, signed with SignatureVersion 2 (SHA256): resolved, so no longer listed
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope("Notification", alarm("OK"), "2"),
                                headers=headers)
    assert r.status_code == 200, r.text
    await listed(stack.api, "cloud", lambda a: a == [])
    assert local_sns.cert_gets == 1  # the certificate is cached

    # a tampered message, a topic not listed, a certificate host not allow-listed: 403, nothing published
    forged = {**local_sns.envelope("Notification", alarm("ALARM", "Forged")), "Message": alarm("ALARM", "Other")}
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=forged)
    assert r.status_code == 403 and "signature" in r.json()
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope(
        "Notification", alarm("ALARM", "Foreign"), topic="arn:aws:sns:eu-west-1:666:evil"))
    assert r.status_code == 403 and "not one ingest source sns takes" in r.json()
    elsewhere = {**local_sns.envelope("Notification", alarm("ALARM", "Elsewhere")),
                 "SigningCertURL": "http://attacker.example/cert.pem"}
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=elsewhere)
    assert r.status_code == 403 and "not allow-listed" in r.json()
    stale = local_sns.sign({**local_sns.envelope("Notification", alarm("ALARM", "Replayed")),
                            "Timestamp": "2020-01-01T00:00:00.000Z"})
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=stale)  # a replay of an old signed message
    assert r.status_code == 403 and "older than max_age" in r.json()
    r = await stack.ingest.post("/api/tocsin/ingest/sns", content=b"{not json")
    assert r.status_code == 400
    await anyio.sleep(0.3)
    assert (await listed(stack.api, "cloud", lambda a: True)) == []


async def test_subscription_confirmation_and_unmappable_messages(stack: Stack, local_sns: LocalSns) -> None:
    sub = local_sns.envelope("SubscriptionConfirmation", "You have chosen to subscribe",
                             SubscribeURL=f"{local_sns.url}/confirm?token=abc", Token="abc")
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=sub)
    assert r.status_code == 200 and r.json()["confirmed"] is True
    assert local_sns.confirmed == ["/confirm?token=abc"]
    # confirmation off: not confirmed, kept as a dead letter for an operator
    sub = local_sns.envelope("SubscriptionConfirmation", "You have chosen to subscribe",
                             SubscribeURL=f"{local_sns.url}/confirm?token=def", Token="def")
    r = await stack.ingest.post("/api/tocsin/ingest/sns-manual", json=sub)
    assert r.status_code == 202 and r.json()["confirmed"] is False
    assert local_sns.confirmed == ["/confirm?token=abc"]
    # a signed notification that is no CloudWatch alarm: a dead letter with the reason
    r = await stack.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope("Notification", "hello"))
    assert r.status_code == 202 and "not a CloudWatch alarm" in r.json()["reason"]
    letters = await dead_letters(stack.ctx)
    assert [d.subject.split(".")[:4] for d in letters] == [["tocsin", "events", "dlq", "ingest"]] * 2
    assert "GET " + f"{local_sns.url}/confirm?token=def" in letters[0].letter.reason
    assert "not a CloudWatch alarm" in letters[1].letter.reason and b'"hello"' in letters[1].letter.payload


async def test_grafana_webhook_payload_becomes_alerts(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    payload: dict[str, Any] = {
        "receiver": "tocsin", "status": "firing", "orgId": 1, "groupKey": "{}:{}", "version": "1",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1"},
             "annotations": {"summary": "disk 95% full"}, "startsAt": "2026-12-07T01:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://grafana/alerting/grafana/x/view",
             "fingerprint": "0123456789abcdef", "values": {"A": 95}},
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db2"}, "annotations": {},
             "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "1"},
        ],
    }
    r = await stack.ingest.post("/api/tocsin/ingest/grafana", json=payload, headers=auth)
    assert r.status_code == 200 and r.json() == {"alerts": 2}, r.text
    got = await listed(stack.api, "acme", lambda a: len(a) == 2)
    assert got[0]["labels"]["source"] == "grafana" and {a["labels"]["instance"] for a in got} == {"db1", "db2"}
    first = next(a for a in got if a["labels"]["instance"] == "db1")
    assert first["annotations"] == {"summary": "disk 95% full"} and first["startsAt"].startswith("2026-12-07T01:00")
    # db2 resolves (Grafana's basic authentication form of the token works too)
    payload["alerts"] = [{**payload["alerts"][1], "status": "resolved", "endsAt": "2026-12-07T01:05:00Z"}]
    basic = base64.b64encode(f"grafana:{TOKEN}".encode()).decode()
    r = await stack.ingest.post("/api/tocsin/ingest/grafana", json=payload, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text
    (left,) = await listed(stack.api, "acme", lambda a: len(a) == 1)
    assert left["labels"]["instance"] == "db1"
    # not Grafana's shape: 400
    r = await stack.ingest.post("/api/tocsin/ingest/grafana", json=[1, 2], headers=auth)
    assert r.status_code == 400 and "Grafana" in r.json()


async def test_generic_mapping_of_a_vendor_payload(stack: Stack) -> None:
    auth = {"Authorization": "Bearer vendor-token"}
    payload: dict[str, Any] = {"account": "x", "incidents": [
        {"id": "INC-1", "state": "open", "level": "CRIT", "message": "web1 is down", "opened": 1765069200,
         "check": {"name": "HostDown", "host": "web1"}},
        {"id": "INC-2", "state": "snoozed", "level": "WARN", "check": {"name": "HostDown", "host": "web2"}},
        {"id": "INC-3", "state": "open", "level": "WARN", "check": {"host": "web3"}},
    ]}
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=payload, headers=auth)
    assert r.status_code == 202, r.text  # one alert taken, two dead-lettered
    body = r.json()
    assert body["alerts"] == 1 and "item 1: status 'snoozed'" in body["reason"]
    assert "item 2: alertname 'check.name' gives nothing" in body["reason"]
    (got,) = await listed(stack.api, "acme", lambda a: len(a) == 1)
    assert got["labels"] == {"alertname": "HostDown", "host": "web1", "severity": "crit", "fingerprint": "INC-1"}
    assert got["annotations"] == {"summary": "web1 is down"} and got["startsAt"].startswith("2025-12-07")
    (letter,) = await dead_letters(stack.ctx)
    assert letter.letter.reason == body["reason"] and letter.letter.stage == "ingest"
    # closed resolves it
    payload["incidents"] = [{**payload["incidents"][0], "state": "closed"}]
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=payload, headers=auth)
    assert r.status_code == 200, r.text
    await listed(stack.api, "acme", lambda a: a == [])


async def test_tokens_body_limit_and_rate_limit(stack: Stack) -> None:
    one = {"incidents": [{"id": "1", "state": "open", "level": "WARN", "check": {"name": "A"}}]}
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=one)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=one, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "invalid token" in r.json()
    r = await stack.ingest.post("/api/tocsin/ingest/grafana", json={"alerts": []},
                                headers={"Authorization": "Bearer vendor-token"})  # another source's token
    assert r.status_code == 401
    r = await stack.ingest.post("/api/tocsin/ingest/nosuch", json=one)
    assert r.status_code == 404
    auth = {"Authorization": "Bearer vendor-token"}
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", content=b"{" + b" " * 5000 + b"}", headers=auth)
    assert r.status_code == 413
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", content=b"not json", headers=auth)
    assert r.status_code == 400 and "not JSON" in r.json()
    # rate 1/s, burst 2: the 400 above spent one token, the next spends the other, then 429
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=one, headers=auth)
    assert r.status_code == 200, r.text
    r = await stack.ingest.post("/api/tocsin/ingest/vendor", json=one, headers=auth)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # X-Scope-OrgID may name only the source's organisations
    r = await stack.ingest.post("/api/tocsin/ingest/grafana", json={"alerts": []},
                                headers={"Authorization": f"Bearer {TOKEN}", "X-Scope-OrgID": "other"})
    assert r.status_code == 403


async def test_a_signed_alarm_is_notified_through_the_route_tree_and_ok_resolves_it(
        nats_server: NatsServer, tmp_path: Path, local_sns: LocalSns, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "grafana.token").write_text(TOKEN)
    monkeypatch.setenv("TOCSIN_TEST_VENDOR_TOKEN", "vendor-token")
    async with http_receiver() as rx:
        config = f"""
route:
  receiver: default
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  routes:
    - {{receiver: pager, matchers: ['severity="critical"', 'namespace="AWS/EC2"']}}
receivers:
  - name: default
  - name: pager
    webhook_configs: [{{url: '{rx.url}/pager'}}]
"""
        async with ingest_stack(nats_server.url, tmp_path, config,
                                ["rules", "router", "filter", "notifier", "api"]) as s:
            r = await s.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope("Notification", alarm("ALARM")))
            assert r.status_code == 200, r.text
            (fired,) = await rx.wait_for(1)
            assert fired.path == "/pager" and fired.body["status"] == "firing"
            assert fired.body["alerts"][0]["labels"]["InstanceId"] == "i-0abc"
            r = await s.ingest.post("/api/tocsin/ingest/sns", json=local_sns.envelope("Notification", alarm("OK"), "2"))
            assert r.status_code == 200, r.text
            _, resolved = await rx.wait_for(2)
            assert resolved.body["status"] == "resolved" and resolved.body["alerts"][0]["status"] == "resolved"
