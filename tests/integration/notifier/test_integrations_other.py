"""SNS, Jira and incident.io against a real local HTTP server that checks requests as the service would.

SNS requests are verified with botocore's SigV4 signer (the signature recomputed from what
arrived, not only present); Jira's search / create / update / transition sequence and
incident.io's alert events are checked field by field, firing and resolved.
"""

from __future__ import annotations

import base64
import hashlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from contracts.messages import SendRequest
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from stages.notifier.classify import Outcome
from stages.notifier.delivery import attempt
from stages.notifier.senders import Senders, build_senders

from .helpers import T0, alert, publish, running_notifier, send_request, wait_ledger
from .peers import Answer, HttpPeer, Recorded

pytestmark = [pytest.mark.integration]

EXTERNAL = "http://tocsin.test:9093"
GROUP_KEY = '{}:{alertname="Down"}'
GROUP_HASH = hashlib.sha256(GROUP_KEY.encode()).hexdigest()  # Alertmanager's key.Hash(), org "" ...
ACME_HASH = hashlib.sha256(f"acme\x00{GROUP_KEY}".encode()).hexdigest()  # ... and with Tocsin's org
TOPIC = "arn:aws:sns:eu-west-1:123456789012:alerts"


def _senders(yaml: str) -> Senders:
    loaded = load_text(textwrap.dedent(yaml), "alertmanager.yml")
    senders = build_senders(loaded.config, external_url=EXTERNAL)
    assert senders.problems == []
    return senders


async def _send(yaml: str, *reqs: SendRequest) -> list[Outcome]:
    senders = _senders(yaml)
    try:
        (sender,) = senders.by_key.values()
        return [await attempt(sender, r, T0) for r in reqs]
    finally:
        await senders.aclose()


def _firing(kind: str, n: int = 1) -> SendRequest:
    return send_request(f"org/acme/g1/r/{kind}/0/{n}", "r", kind, flush_seq=n)


def _resolved(kind: str, n: int = 2) -> SendRequest:
    return send_request(f"org/acme/g1/r/{kind}/0/{n}", "r", kind, flush_seq=n, status="resolved",
                        alerts=[alert("Down", ends_at=T0 - 1)])


# --------------------------------------------------------------------------- SNS: SigV4 checked by botocore


def _botocore_signature(rec: Recorded, base_url: str, creds: Credentials, service: str, region: str) -> str:
    """The signature AWS would compute for the request as it arrived."""
    auth_header = rec.headers["authorization"]
    signed = auth_header.split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest(method=rec.method, url=base_url + rec.path, data=rec.body,
                         headers={name: rec.headers[name] for name in signed})
    request.context["timestamp"] = rec.headers["x-amz-date"]
    signer = SigV4Auth(creds, service, region)
    return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)


def _assert_signed(rec: Recorded, base_url: str, creds: Credentials, service: str, region: str) -> None:
    auth_header = rec.headers["authorization"]
    day = rec.headers["x-amz-date"][:8]
    assert auth_header.startswith(f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{day}/{region}/{service}/"
                                  "aws4_request, SignedHeaders=")
    signed = auth_header.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert ("x-amz-security-token" in signed) == bool(creds.token)
    got = auth_header.rsplit("Signature=", 1)[1]
    assert got == _botocore_signature(rec, base_url, creds, service, region)
    # the check has teeth: one byte more in the body and AWS would refuse it
    tampered = Recorded(rec.method, rec.path, rec.headers, rec.body + b"x", rec.at)
    assert got != _botocore_signature(tampered, base_url, creds, service, region)


def _form(rec: Recorded) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(rec.body.decode(), keep_blank_values=True, strict_parsing=True).items()}


def _sns_yaml(url: str, extra: str = "", sigv4: str = "{region: eu-west-1, access_key: AKIDTEST, secret_key: s3cr3t}",
              target: str = f"topic_arn: {TOPIC}") -> str:
    return f"""
    route: {{receiver: r}}
    receivers:
    - name: r
      sns_configs:
      - api_url: '{url}/'
        {target}
        sigv4: {sigv4}
        {extra}
    """


_PUBLISHED = Answer(200, {"Content-Type": "text/xml"},
                    b"<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult></PublishResponse>")


def _check_sns(peer: HttpPeer, recs: list[Recorded]) -> None:
    creds = Credentials("AKIDTEST", "s3cr3t")
    for rec, status in zip(recs, ("FIRING:1", "RESOLVED"), strict=True):
        assert rec.method == "POST" and rec.path == "/"
        assert rec.headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8"
        _assert_signed(rec, peer.url, creds, "sns", "eu-west-1")
        form = _form(rec)
        assert form["Action"] == "Publish" and form["Version"] == "2010-03-31"
        assert form["TopicArn"] == TOPIC
        assert form["Subject"] == f"[{status}] Down (a)"
        assert "Labels:\n - alertname = Down" in form["Message"]
        assert ("Alerts Firing:" in form["Message"]) == (status != "RESOLVED")
        assert form["MessageAttributes.entry.1.Name"] == "team"
        assert form["MessageAttributes.entry.1.Value.DataType"] == "String"
        assert form["MessageAttributes.entry.1.Value.StringValue"] == "db-Down"
        assert "MessageGroupId" not in form and "PhoneNumber" not in form


# --------------------------------------------------------------------------- Jira


_OPEN = {"key": "OPS-7", "fields": {"status": {"name": "Open", "statusCategory": {"key": "new"}}}}
_DONE = {"key": "OPS-7", "fields": {"status": {"name": "Closed", "statusCategory": {"key": "done"}}}}


def _json(value: Any, status: int = 200) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(value).encode())


def _jira_yaml(url: str, extra: str = "") -> str:
    return f"""
    route: {{receiver: r}}
    receivers:
    - name: r
      jira_configs:
      - api_url: '{url}/rest/api/2/'
        project: OPS
        issue_type: Bug
        labels: ['{{{{ .CommonLabels.alertname }}}}', alertmanager]
        fields: {{customfield_10001: '{{{{ .GroupLabels.alertname }}}}', customfield_10002: {{value: red}}}}
        reopen_transition: Reopen
        resolve_transition: Done
        http_config:
          basic_auth: {{username: bot@example.org, password: api-token}}
        {extra}
    """


_BASIC = "Basic " + base64.b64encode(b"bot@example.org:api-token").decode()


def _setup_jira(peer: HttpPeer) -> None:
    peer.reply("/rest/api/2/search", _json({"issues": []}), _json({"issues": [_OPEN]}))
    peer.reply("/rest/api/2/issue", _json({"id": "10007", "key": "OPS-7"}, 201))
    peer.reply("/rest/api/2/issue/OPS-7", Answer(204, body=b""))
    peer.reply("/rest/api/2/issue/OPS-7/transitions", _json({"transitions": [
        {"id": "11", "name": "Reopen"}, {"id": "31", "name": "Done"}]}), Answer(204, body=b""))


def _check_jira(peer: HttpPeer, recs: list[Recorded]) -> None:
    for rec in recs:
        assert rec.headers["authorization"] == _BASIC
        assert rec.headers.get("accept-language") == "en"
    search, create, search2, update, transitions, transition = recs
    assert (search.method, search.path) == ("POST", "/rest/api/2/search")
    assert search.json() == {
        "fields": ["status"], "maxResults": 2,
        "jql": f'statusCategory != Done and project="OPS" and labels="ALERT{{{ACME_HASH}}}" '
               "order by status ASC,resolutiondate DESC"}
    assert (create.method, create.path) == ("POST", "/rest/api/2/issue")
    assert create.headers["content-type"] == "application/json"
    fields = create.json()["fields"]
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"] == "[FIRING:1] Down (a)"
    assert fields["description"].startswith("\n\n# Alerts Firing:\n\nLabels:\n  - alertname = Down\n")
    assert fields["labels"] == [f"ALERT{{{ACME_HASH}}}", "Down", "alertmanager"]  # byte order, as Go sorts
    assert fields["customfield_10001"] == "Down" and fields["customfield_10002"] == {"value": "red"}
    assert "priority" not in fields  # no severity label: the default priority renders empty
    assert (search2.method, search2.path) == ("POST", "/rest/api/2/search")
    assert (update.method, update.path) == ("PUT", "/rest/api/2/issue/OPS-7")
    assert update.json()["fields"]["summary"] == "[RESOLVED] Down (a)"
    assert (transitions.method, transitions.path) == ("GET", "/rest/api/2/issue/OPS-7/transitions")
    assert transitions.body == b"" and "content-type" not in transitions.headers
    assert (transition.method, transition.path) == ("POST", "/rest/api/2/issue/OPS-7/transitions")
    assert transition.json() == {"transition": {"id": "31"}}


# --------------------------------------------------------------------------- incident.io


_INCIDENTIO_PATH = "/v2/alert_events/alertmanager/01GW2G3V0S59R238FAHPDS1R66"


def _incidentio_yaml(url: str, extra: str = "alert_source_token: inc-token") -> str:
    return f"""
    route: {{receiver: r}}
    receivers:
    - name: r
      incidentio_configs:
      - url: '{url}{_INCIDENTIO_PATH}'
        {extra}
    """


def _setup_incidentio(peer: HttpPeer) -> None:
    peer.default(_INCIDENTIO_PATH, _json({"status": "success", "deduplication_key": ACME_HASH}, 202))


def _check_incidentio(peer: HttpPeer, recs: list[Recorded]) -> None:
    for rec, status in zip(recs, ("firing", "resolved"), strict=True):
        assert (rec.method, rec.path) == ("POST", _INCIDENTIO_PATH)
        assert rec.headers["authorization"] == "Bearer inc-token"
        assert rec.headers["content-type"] == "application/json"
        assert rec.headers["idempotency-key"].startswith("org/acme/g1/r/incidentio/0/")
        body = rec.json()
        assert set(body) == {"receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations",
                             "externalURL", "version", "groupKey", "truncatedAlerts", "deduplication_key"}
        assert body["version"] == "1" and body["groupKey"] == GROUP_KEY and body["truncatedAlerts"] == 0
        assert body["deduplication_key"] == ACME_HASH  # the same for every send of the group
        assert body["status"] == status and body["receiver"] == "r" and body["externalURL"] == EXTERNAL
        assert body["alerts"][0]["status"] == status and body["alerts"][0]["labels"]["alertname"] == "Down"


# --------------------------------------------------------------------------- one row per kind

Row = tuple[str, Callable[[str], str], Callable[[HttpPeer], None], Callable[[HttpPeer, list[Recorded]], None]]
KINDS: list[Row] = [
    ("sns", lambda url: _sns_yaml(url, "attributes: {team: 'db-{{ .CommonLabels.alertname }}'}"),
     lambda peer: peer.default("/", _PUBLISHED), _check_sns),
    ("jira", _jira_yaml, _setup_jira, _check_jira),
    ("incidentio", _incidentio_yaml, _setup_incidentio, _check_incidentio),
]


@pytest.mark.parametrize(("kind", "yaml", "setup", "check"), KINDS, ids=[k[0] for k in KINDS])
async def test_firing_then_resolved_reach_the_service(
        http_peer: HttpPeer, kind: str, yaml: Callable[[str], str], setup: Callable[[HttpPeer], None],
        check: Callable[[HttpPeer, list[Recorded]], None]) -> None:
    setup(http_peer)
    outcomes = await _send(yaml(http_peer.url), _firing(kind), _resolved(kind))
    assert [o.ok for o in outcomes] == [True, True], outcomes
    check(http_peer, http_peer.requests)


# --------------------------------------------------------------------------- SNS specifics


async def test_sns_credentials_from_environment_with_session_token(
        http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    http_peer.default("/", _PUBLISHED)
    [out] = await _send(_sns_yaml(http_peer.url, sigv4="{}"), _firing("sns"))
    assert out.ok, out
    [rec] = http_peer.requests
    assert rec.headers["x-amz-security-token"] == "env-token"
    _assert_signed(rec, http_peer.url, Credentials("ASIAENV", "env-secret", "env-token"), "sns", "us-east-2")


async def test_sns_credentials_from_a_profile_of_the_shared_files(
        http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n"
                                          "[alerting]\naws_access_key_id = AKIDPROFILE\n"
                                          "aws_secret_access_key = profile-secret\n")
    (tmp_path / "config").write_text("[profile alerting]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")  # a named profile wins over these, as in the AWS SDK
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    http_peer.default("/", _PUBLISHED)
    [out] = await _send(_sns_yaml(http_peer.url, sigv4="{profile: alerting}"), _firing("sns"))
    assert out.ok, out
    _assert_signed(http_peer.requests[0], http_peer.url, Credentials("AKIDPROFILE", "profile-secret"), "sns",
                   "ap-south-1")


async def test_sns_role_arn_assumes_the_role_with_sts_once(
        http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"{http_peer.url}/sts/")
    http_peer.default("/sts/", Answer(200, {"Content-Type": "text/xml"}, b"""<AssumeRoleResponse>
      <AssumeRoleResult><Credentials>
        <AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>
        <SessionToken>role-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>
      </Credentials></AssumeRoleResult></AssumeRoleResponse>"""))
    http_peer.default("/", _PUBLISHED)
    sigv4 = ("{region: eu-west-1, access_key: AKIDBASE, secret_key: base-secret, "
             "role_arn: 'arn:aws:iam::123456789012:role/alerts', external_id: ext-42}")
    outs = await _send(_sns_yaml(http_peer.url, sigv4=sigv4), _firing("sns", 1), _firing("sns", 2))
    assert all(o.ok for o in outs), outs
    sts = http_peer.on("/sts/")
    assert len(sts) == 1  # cached until shortly before it expires
    _assert_signed(sts[0], http_peer.url, Credentials("AKIDBASE", "base-secret"), "sts", "eu-west-1")
    form = _form(sts[0])
    assert form["Action"] == "AssumeRole" and form["RoleArn"] == "arn:aws:iam::123456789012:role/alerts"
    assert form["ExternalId"] == "ext-42" and form["RoleSessionName"].startswith("tocsin-")
    for rec in http_peer.on("/"):
        _assert_signed(rec, http_peer.url, Credentials("ASIAROLE", "role-secret", "role-token"), "sns", "eu-west-1")


async def test_sns_fifo_topic_gets_group_and_deduplication_ids(http_peer: HttpPeer) -> None:
    http_peer.default("/", _PUBLISHED)
    outs = await _send(_sns_yaml(http_peer.url, target=f"topic_arn: {TOPIC}.fifo"), _firing("sns", 1),
                       _firing("sns", 2))
    assert all(o.ok for o in outs)
    first, second = (_form(r) for r in http_peer.requests)
    assert first["MessageGroupId"] == second["MessageGroupId"] == ACME_HASH
    assert first["MessageDeduplicationId"] == hashlib.sha256(b"org/acme/g1/r/sns/0/1").hexdigest()
    assert second["MessageDeduplicationId"] != first["MessageDeduplicationId"]


async def test_sns_sms_to_a_phone_number(http_peer: HttpPeer) -> None:
    http_peer.default("/", _PUBLISHED)
    [out] = await _send(_sns_yaml(http_peer.url, target="phone_number: '+15555550100'",
                                  extra="message: '{{ range .Alerts }}{{ .Labels.alertname }}{{ end }}'"),
                        _firing("sns"))
    assert out.ok
    form = _form(http_peer.requests[0])
    assert form["PhoneNumber"] == "+15555550100" and form["Message"] == "Down" and "TopicArn" not in form


@pytest.mark.parametrize(("status", "code", "retryable", "reason"), [
    (400, "InvalidParameter", False, "clientError"),
    (403, "SignatureDoesNotMatch", False, "authError"),
    (404, "NotFound", False, "clientError"),
    (400, "Throttling", True, "rateLimited"),
    (500, "InternalError", True, "serverError"),
])
async def test_sns_errors_are_classified_from_status_and_aws_code(
        http_peer: HttpPeer, status: int, code: str, retryable: bool, reason: str) -> None:
    http_peer.default("/", Answer(status, {"Content-Type": "text/xml"}, (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>it went wrong</Message></Error>"
        "<RequestId>r-1</RequestId></ErrorResponse>").encode()))
    [out] = await _send(_sns_yaml(http_peer.url), _firing("sns"))
    assert (out.ok, out.verdict.retryable, out.verdict.reason) == (False, retryable, reason)
    assert f"{code}: it went wrong" in out.error


async def test_sns_without_credentials_fails_permanently_saying_what_to_set(
        http_peer: HttpPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    [out] = await _send(_sns_yaml(http_peer.url, sigv4="{region: eu-west-1}"), _firing("sns"))
    assert not out.ok and not out.verdict.retryable
    assert "no AWS credentials found" in out.error and "AWS_ACCESS_KEY_ID" in out.error
    assert http_peer.requests == []


# --------------------------------------------------------------------------- Jira specifics


async def test_jira_reopens_a_recently_resolved_issue_and_keeps_its_summary(http_peer: HttpPeer) -> None:
    http_peer.reply("/rest/api/2/search", _json({"issues": [_DONE]}))
    http_peer.reply("/rest/api/2/issue/OPS-7/transitions", _json({"transitions": [{"id": "11", "name": "Reopen"}]}),
                    Answer(204, body=b""))
    extra = ("reopen_duration: 2h\n        wont_fix_resolution: \"Won't Fix\"\n"
             "        summary: {template: 'kept', enable_update: false}")
    [out] = await _send(_jira_yaml(http_peer.url, extra), _firing("jira"))
    assert out.ok, out
    search, update, _, transition = http_peer.requests
    assert search.json()["jql"] == (
        "(resolution is EMPTY or resolution != \"Won't Fix\") and (resolutiondate is EMPTY OR resolutiondate >= "
        f'-120m) and project="OPS" and labels="ALERT{{{ACME_HASH}}}" order by status ASC,resolutiondate DESC')
    assert update.method == "PUT" and "summary" not in update.json()["fields"]
    assert transition.json() == {"transition": {"id": "11"}}


async def test_jira_resolved_group_without_issue_sends_nothing_more(http_peer: HttpPeer) -> None:
    http_peer.reply("/rest/api/2/search", _json({"issues": []}))
    [out] = await _send(_jira_yaml(http_peer.url), _resolved("jira"))
    assert out.ok
    assert [r.path for r in http_peer.requests] == ["/rest/api/2/search"]


async def test_jira_cloud_search_and_priority_from_severity(http_peer: HttpPeer) -> None:
    http_peer.reply("/rest/api/3/search/jql", _json({"issues": []}))
    http_peer.reply("/rest/api/2/issue", _json({"key": "OPS-8"}, 201))
    crit = alert("Down")
    req = send_request("org/acme/g1/r/jira/0/1", "r", "jira",
                       alerts=[msgspec.structs.replace(crit, labels={**crit.labels, "severity": "critical"})])
    [out] = await _send(_jira_yaml(http_peer.url, "api_type: cloud"), req)
    assert out.ok, out
    search, create = http_peer.requests
    assert search.path == "/rest/api/3/search/jql"
    assert create.json()["fields"]["priority"] == {"name": "High"}


async def test_jira_missing_transition_is_a_permanent_error_naming_it(http_peer: HttpPeer) -> None:
    http_peer.reply("/rest/api/2/search", _json({"issues": [_OPEN]}))
    http_peer.reply("/rest/api/2/issue/OPS-7/transitions", _json({"transitions": [{"id": "5", "name": "Start"}]}))
    [out] = await _send(_jira_yaml(http_peer.url), _resolved("jira"))
    assert not out.ok and not out.verdict.retryable
    assert "can't find transition Done for issue OPS-7" in out.error


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False), (401, False)])
async def test_jira_http_errors(http_peer: HttpPeer, status: int, retryable: bool) -> None:
    http_peer.reply("/rest/api/2/search", _json({"issues": []}))
    http_peer.reply("/rest/api/2/issue", _json({"errorMessages": ["nope"], "errors": {}}, status))
    [out] = await _send(_jira_yaml(http_peer.url), _firing("jira"))
    assert (out.ok, out.verdict.retryable, out.status) == (False, retryable, status)
    assert "creation of the issue" in out.error and "nope" in out.error


# --------------------------------------------------------------------------- incident.io specifics


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (400, False), (401, False)])
async def test_incidentio_errors_quote_the_service_message(http_peer: HttpPeer, status: int, retryable: bool) -> None:
    http_peer.default(_INCIDENTIO_PATH, _json({"message": "bad", "errors": ["title missing"]}, status))
    [out] = await _send(_incidentio_yaml(http_peer.url), _firing("incidentio"))
    assert (out.ok, out.verdict.retryable) == (False, retryable)
    assert out.error == f"unexpected status code {status}: bad: title missing"


async def test_incidentio_max_alerts_and_http_config_authorization(http_peer: HttpPeer, tmp_path: Path) -> None:
    (tmp_path / "url").write_text(f"{http_peer.url}{_INCIDENTIO_PATH}\n")
    _setup_incidentio(http_peer)
    yaml = f"""
    route: {{receiver: r}}
    receivers:
    - name: r
      incidentio_configs:
      - url_file: '{tmp_path / "url"}'
        max_alerts: 1
        http_config: {{authorization: {{credentials: from-http-config}}}}
    """
    req = send_request("org/acme/g1/r/incidentio/0/1", "r", "incidentio",
                       alerts=[alert("Down", instance="a"), alert("Down", instance="b")])
    [out] = await _send(yaml, req)
    assert out.ok
    [rec] = http_peer.requests
    assert rec.headers["authorization"] == "Bearer from-http-config"
    body = rec.json()
    assert len(body["alerts"]) == 1 and body["truncatedAlerts"] == 1


# --------------------------------------------------------------------------- through the notifier worker


async def test_incidentio_through_the_notifier_worker(nats_server: NatsServer, http_peer: HttpPeer) -> None:
    _setup_incidentio(http_peer)
    http_peer.reply(_INCIDENTIO_PATH, _json({"message": "busy"}, 503))  # the first attempt is retried
    loaded = load_text(textwrap.dedent(_incidentio_yaml(http_peer.url)), "alertmanager.yml")
    async with running_notifier(nats_server.url, loaded.config, external_url=EXTERNAL) as r:
        await publish(r.js, send_request("org/acme/g1/r/incidentio/0/1", "r", "incidentio"))
        record = await wait_ledger(r.ledger, "org/acme/g1/r/incidentio/0/1", {"sent"})
    assert record.attempts == 2
    first, second = http_peer.requests
    assert first.body == second.body and first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert second.headers["authorization"] == "Bearer inc-token"
    assert second.json()["status"] == "firing" and second.json()["deduplication_key"] == ACME_HASH
