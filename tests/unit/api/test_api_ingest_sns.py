"""SNS envelopes, signatures (SignatureVersion 1 and 2) and CloudWatch alarms (pipeline.application.api.ingest_sns)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.application.api.ingest_map import PayloadError, Unmappable
from pipeline.application.api.ingest_sns import (
    SignatureError,
    alarm_alert,
    host_allowed,
    parse_envelope,
    string_to_sign,
    url_problem,
    verify_signature,
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TOPIC = "arn:aws:sns:us-east-1:123456789012:alarms"
NOW = 1_800_000_000.0


def envelope(kind: str = "Notification", version: str = "2", **extra: Any) -> dict[str, Any]:
    msg = {"Type": kind, "MessageId": "m-1", "TopicArn": TOPIC, "Message": "hello",
           "Timestamp": "2027-01-15T08:00:00.000Z", "SignatureVersion": version,
           "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem", **extra}
    if kind != "Notification":
        msg.setdefault("SubscribeURL", "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
        msg.setdefault("Token", "tok")
    parsed = parse_envelope(json.dumps({**msg, "Signature": "AA=="}).encode())
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    msg["Signature"] = base64.b64encode(KEY.sign(string_to_sign(parsed), padding.PKCS1v15(), algorithm)).decode()
    return msg


def test_string_to_sign_follows_aws_order() -> None:
    n = parse_envelope(json.dumps({**envelope(), "Subject": "Alarm"}).encode())
    assert string_to_sign(n) == (b"Message\nhello\nMessageId\nm-1\nSubject\nAlarm\n"
                                 b"Timestamp\n2027-01-15T08:00:00.000Z\nTopicArn\n" + TOPIC.encode()
                                 + b"\nType\nNotification\n")
    assert b"Subject" not in string_to_sign(parse_envelope(json.dumps(envelope()).encode()))
    s = parse_envelope(json.dumps(envelope("SubscriptionConfirmation")).encode())
    assert string_to_sign(s).startswith(b"Message\nhello\nMessageId\nm-1\nSubscribeURL\nhttps://")
    assert b"\nToken\ntok\n" in string_to_sign(s)


@pytest.mark.parametrize("version", ["1", "2"])
def test_signatures_verify_and_tampering_does_not(version: str) -> None:
    msg = envelope(version=version)
    verify_signature(parse_envelope(json.dumps(msg).encode()), KEY.public_key())
    for changed in ({"Message": "other"}, {"TopicArn": TOPIC + "x"}, {"Subject": "added"},
                    {"SignatureVersion": "2" if version == "1" else "1"}):
        with pytest.raises(SignatureError):
            verify_signature(parse_envelope(json.dumps({**msg, **changed}).encode()), KEY.public_key())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(parse_envelope(json.dumps(msg).encode()), other.public_key())
    with pytest.raises(SignatureError, match="SignatureVersion"):
        verify_signature(parse_envelope(json.dumps({**msg, "SignatureVersion": "3"}).encode()), KEY.public_key())
    with pytest.raises(SignatureError, match="base64"):
        verify_signature(parse_envelope(json.dumps({**msg, "Signature": "%%"}).encode()), KEY.public_key())


def test_envelopes_that_are_not_sns() -> None:
    for body, match in ((b"nope", "not JSON"), (b"[]", "object"), (b'{"Type": "Other"}', "Type"),
                        (json.dumps({"Type": "Notification", "Message": "x"}).encode(), "lacks MessageId")):
        with pytest.raises(PayloadError, match=match):
            parse_envelope(body)


def test_allow_listed_hosts() -> None:
    hosts = ["sns.*.amazonaws.com"]
    assert host_allowed("sns.eu-west-1.amazonaws.com", hosts) and host_allowed("SNS.us-east-1.amazonaws.com.", hosts)
    for host in ("sns.amazonaws.com", "sns.a.b.amazonaws.com", "evil.com", "sns.x.amazonaws.com.evil.com"):
        assert not host_allowed(host, hosts), host
    ok = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
    assert url_problem(ok, hosts, allow_http=False, what="u") is None
    assert "https" in (url_problem(ok.replace("https", "http"), hosts, allow_http=False, what="u") or "")
    assert url_problem(ok.replace("https", "http"), hosts, allow_http=True, what="u") is None
    assert "credentials" in (url_problem("https://a:b@sns.x.amazonaws.com/c.pem", hosts, allow_http=False,
                                         what="u") or "")
    assert url_problem("https://sns.x.amazonaws.com@evil.com/c.pem", hosts, allow_http=False, what="u")
    assert "not allow-listed" in (url_problem("https://evil.com/sns.x.amazonaws.com/c.pem", hosts,
                                              allow_http=False, what="u") or "")


def alarm(state: str, **extra: Any) -> str:
    doc = {"AlarmName": "HighCPU", "AWSAccountId": "123456789012", "NewStateValue": state,
           "NewStateReason": "Threshold Crossed", "StateChangeTime": "2027-01-15T07:59:00.000+0000",
           "Region": "US East (N. Virginia)", "AlarmArn": "arn:aws:cloudwatch:us-west-2:123456789012:alarm:HighCPU",
           "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/EC2",
                       "Dimensions": [{"value": "i-1", "name": "InstanceId"}, {"value": "x", "name": "region"}]},
           **extra}
    return json.dumps(doc)


def test_cloudwatch_alarm_labels_and_states() -> None:
    fire = alarm_alert(alarm("ALARM"), topic_arn=TOPIC, labels={"severity": "page"}, insufficient_data="ignore",
                       now=NOW, firing_ttl=0)
    assert fire is not None and fire["labels"] == {
        "alertname": "HighCPU", "region": "us-west-2", "account": "123456789012", "namespace": "AWS/EC2",
        "metric": "CPUUtilization", "InstanceId": "i-1", "dimension_region": "x", "severity": "page"}
    assert fire["startsAt"] == "2027-01-15T07:59:00.000Z" and fire["endsAt"].startswith("9999")
    assert fire["annotations"]["summary"] == "HighCPU" and fire["annotations"]["description"] == "Threshold Crossed"
    assert "region=us-west-2" in fire["generatorURL"]
    ok = alarm_alert(alarm("OK"), topic_arn=TOPIC, labels={}, insufficient_data="ignore", now=NOW, firing_ttl=0)
    assert ok is not None and ok["endsAt"] == "2027-01-15T07:59:00.000Z" and "startsAt" not in ok
    kw: dict[str, Any] = {"topic_arn": TOPIC, "labels": {}, "now": NOW, "firing_ttl": 0}
    assert alarm_alert(alarm("INSUFFICIENT_DATA"), insufficient_data="ignore", **kw) is None
    fired = alarm_alert(alarm("INSUFFICIENT_DATA"), insufficient_data="firing", **kw)
    assert fired is not None and fired["endsAt"].startswith("9999")
    resolved = alarm_alert(alarm("INSUFFICIENT_DATA"), insufficient_data="resolved", **kw)
    assert resolved is not None and resolved["endsAt"].startswith("2027-01-15T07:59")
    # a metric math alarm (no MetricName) and no AlarmArn: the topic's region
    bare = alarm_alert(json.dumps({"AlarmName": "M", "NewStateValue": "ALARM", "Trigger": {"Metrics": []}}),
                       insufficient_data="ignore", **kw)
    assert bare is not None and bare["labels"] == {"alertname": "M", "region": "us-east-1"}


def test_messages_that_are_no_alarm_are_unmappable() -> None:
    kw: dict[str, Any] = {"topic_arn": TOPIC, "labels": {}, "insufficient_data": "ignore", "now": NOW,
                          "firing_ttl": 0}
    for message, match in (("plain text", "not JSON"), ('{"a": 1}', "no AlarmName"),
                           (alarm("MAYBE"), "NewStateValue"), (alarm("ALARM", StateChangeTime="soon"), "StateChange")):
        with pytest.raises(Unmappable, match=match):
            alarm_alert(message, **kw)
