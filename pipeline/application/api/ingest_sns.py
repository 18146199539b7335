"""Amazon SNS HTTP(S) deliveries: the envelope, its signature, subscriptions, CloudWatch alarms.

An SNS endpoint is public: anyone can create a topic and subscribe any URL. So a message is
taken only when (1) its ``TopicArn`` is one the configuration lists, and (2) its signature
checks out against the certificate at ``SigningCertURL``, fetched over HTTPS from an
allow-listed host (``sns.<region>.amazonaws.com`` by default) and cached. SignatureVersion 1
signs with SHA1withRSA, version 2 with SHA256withRSA, over the fields AWS documents, each
as ``name\\nvalue\\n``, in this order:

- Notification: Message, MessageId, Subject (only when present), Timestamp, TopicArn, Type;
- SubscriptionConfirmation and UnsubscribeConfirmation: Message, MessageId, SubscribeURL,
  Timestamp, Token, TopicArn, Type.

A CloudWatch alarm in a Notification's ``Message`` (:func:`alarm_alert`) becomes one alert:
ALARM fires, OK resolves, INSUFFICIENT_DATA as configured (ignore, firing or resolved).
Its labels are ``alertname`` (AlarmName), ``region`` (from AlarmArn), ``account``,
``namespace``, ``metric`` and one per dimension (a dimension named like one of those gets
the prefix ``dimension_``), then the configured labels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.application.api.ingest_map import PayloadError, Unmappable, am_alert, to_time
from pipeline.application.api.json_depth import too_deep

__all__ = [
    "FIELDS",
    "MAX_CERT_BYTES",
    "CertCache",
    "SignatureError",
    "SnsMessage",
    "alarm_alert",
    "console_url",
    "host_allowed",
    "message_time",
    "parse_envelope",
    "string_to_sign",
    "url_problem",
    "verify_signature",
]

MAX_CERT_BYTES: Final = 64 << 10
_FIELDS_NOTIFICATION: Final = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_FIELDS_SUBSCRIPTION: Final = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
FIELDS: Final = {
    "Notification": _FIELDS_NOTIFICATION,
    "SubscriptionConfirmation": _FIELDS_SUBSCRIPTION,
    "UnsubscribeConfirmation": _FIELDS_SUBSCRIPTION,
}
_HASHES: Final = {"1": hashes.SHA1, "2": hashes.SHA256}
_FIXED_LABELS: Final = ("alertname", "region", "account", "namespace", "metric")


class SignatureError(ValueError):
    """The message is not proven to come from SNS (answered 403)."""


@dataclass(frozen=True, slots=True)
class SnsMessage:
    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    signature_version: str
    signature: str
    signing_cert_url: str
    fields: Mapping[str, str]  # every string field, for the string to sign

    @property
    def subscribe_url(self) -> str:
        return self.fields.get("SubscribeURL", "")


def parse_envelope(body: bytes) -> SnsMessage:
    """The SNS JSON envelope; ``PayloadError`` names what is missing or wrong."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"not an SNS message: the body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise PayloadError("not an SNS message: expected a JSON object")
    kind = doc.get("Type")
    if kind not in FIELDS:
        raise PayloadError(f"not an SNS message: Type must be one of {', '.join(FIELDS)}")
    required = [f for f in FIELDS[kind] if f != "Subject"] + ["SignatureVersion", "Signature", "SigningCertURL"]
    missing = [f for f in required if not isinstance(doc.get(f), str) or (f != "Message" and not doc.get(f))]
    if missing:
        raise PayloadError(f"SNS {kind} lacks {', '.join(missing)}")
    if "Subject" in doc and not isinstance(doc["Subject"], str | None):
        raise PayloadError("SNS Subject must be a string")
    fields = {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}
    return SnsMessage(type=kind, message_id=doc["MessageId"], topic_arn=doc["TopicArn"], message=doc["Message"],
                      timestamp=doc["Timestamp"], signature_version=doc["SignatureVersion"],
                      signature=doc["Signature"], signing_cert_url=doc["SigningCertURL"], fields=fields)


def string_to_sign(msg: SnsMessage) -> bytes:
    parts = []
    for name in FIELDS[msg.type]:
        if name == "Subject" and name not in msg.fields:
            continue
        parts.append(f"{name}\n{msg.fields[name]}\n")
    return "".join(parts).encode("utf-8")


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """``host`` matches a pattern label by label (``*`` stands for one label, or part of one)."""
    labels = host.lower().rstrip(".").split(".")
    for pattern in patterns:
        want = pattern.lower().split(".")
        if len(want) == len(labels) and all(fnmatch.fnmatchcase(h, w) for h, w in zip(labels, want, strict=True)):
            return True
    return False


def url_problem(url: str, hosts: Sequence[str], *, allow_http: bool, what: str) -> str | None:
    """Why ``url`` may not be fetched, or ``None``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{what} is not a URL"
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        return f"{what} must be https"
    if parts.username or parts.password:
        return f"{what} must not carry credentials"
    if not host_allowed(host, hosts):
        return f"{what} host {host!r} is not allow-listed ({', '.join(hosts)})"
    return None


def verify_signature(msg: SnsMessage, key: rsa.RSAPublicKey) -> None:
    """``SignatureError`` unless ``msg`` is signed by ``key`` as its SignatureVersion says."""
    algorithm = _HASHES.get(msg.signature_version)
    if algorithm is None:
        raise SignatureError(f"unsupported SignatureVersion {msg.signature_version[:8]!r} (1 or 2)")
    try:
        signature = base64.b64decode(msg.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature is not base64") from None
    try:
        key.verify(signature, string_to_sign(msg), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SignatureError("the message signature does not verify") from None


class CertCache:
    """Signing certificates' public keys by URL, fetched when first needed and kept ``ttl``
    seconds (AWS rotates them rarely; a new URL is fetched once)."""

    def __init__(self, *, ttl: float, timeout: float = 5.0, max_entries: int = 64) -> None:
        self.ttl, self.timeout, self.max_entries = ttl, timeout, max_entries
        self._keys: dict[str, tuple[rsa.RSAPublicKey, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    async def key(self, url: str, now: float) -> rsa.RSAPublicKey:
        """The certificate's RSA key; ``LookupError`` when it cannot be fetched (retry later),
        ``SignatureError`` when what was fetched is no usable certificate."""
        hit = self._keys.get(url)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            hit = self._keys.get(url)
            if hit is not None and now - hit[1] < self.ttl:
                return hit[0]
            key = await self._fetch(url, now)
            if len(self._keys) >= self.max_entries:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = (key, now)
        self._locks.pop(url, None)
        return key

    async def _fetch(self, url: str, now: float) -> rsa.RSAPublicKey:
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                async with client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise LookupError(f"signing certificate {url}: HTTP {response.status_code}")
                    data = b""
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > MAX_CERT_BYTES:
                            raise SignatureError(f"signing certificate {url} is larger than {MAX_CERT_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise LookupError(f"signing certificate {url}: {type(exc).__name__}: {exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise SignatureError(f"{url} is not a PEM certificate") from None
        valid_from, valid_to = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        if not valid_from <= now <= valid_to:
            raise SignatureError(f"signing certificate {url} is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError(f"signing certificate {url} has no RSA key")
        return key


def message_time(msg: SnsMessage) -> float:
    try:
        return datetime.fromisoformat(msg.timestamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        raise PayloadError(f"SNS Timestamp {msg.timestamp[:40]!r} is not ISO 8601") from None


# --------------------------------------------------------------------------- CloudWatch


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[0] == "arn" else ""


def console_url(region: str, alarm: str) -> str:
    quoted = urllib.parse.quote(alarm, safe="")
    return f"https://console.aws.amazon.com/cloudwatch/home?region={region}#alarmsV2:alarm/{quoted}"


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return msgspec.json.encode(value).decode()


def alarm_alert(message: str, *, topic_arn: str, labels: Mapping[str, str], insufficient_data: str,
                now: float, firing_ttl: float) -> dict[str, Any] | None:
    """The alert of a CloudWatch alarm notification (``None``: INSUFFICIENT_DATA ignored);
    ``Unmappable`` when the message is no CloudWatch alarm."""
    if too_deep(message.encode("utf-8", "surrogatepass")):
        raise Unmappable("the SNS Message nests too deeply: not a CloudWatch alarm")
    try:
        doc = msgspec.json.decode(message)
    except msgspec.DecodeError:
        raise Unmappable("the SNS Message is not JSON: not a CloudWatch alarm") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("AlarmName"), str) or not doc["AlarmName"]:
        raise Unmappable("the SNS Message has no AlarmName: not a CloudWatch alarm")
    state = doc.get("NewStateValue")
    if state == "ALARM":
        firing = True
    elif state == "OK":
        firing = False
    elif state == "INSUFFICIENT_DATA":
        if insufficient_data == "ignore":
            return None
        firing = insufficient_data == "firing"
    else:
        raise Unmappable(f"NewStateValue {_str(state)[:32]!r} is not ALARM, OK or INSUFFICIENT_DATA")
    name = doc["AlarmName"]
    region = _arn_region(_str(doc.get("AlarmArn"))) or _arn_region(topic_arn) or _str(doc.get("Region"))
    out = {"alertname": name, "region": region, "account": _str(doc.get("AWSAccountId"))}
    trigger = doc.get("Trigger")
    if isinstance(trigger, dict):
        out["namespace"] = _str(trigger.get("Namespace"))
        out["metric"] = _str(trigger.get("MetricName"))
        dims = trigger.get("Dimensions")
        for dim in dims if isinstance(dims, list) else []:
            if isinstance(dim, dict) and isinstance(dim.get("name"), str) and dim["name"]:
                key = dim["name"] if dim["name"] not in _FIXED_LABELS else f"dimension_{dim['name']}"
                out[key] = _str(dim.get("value"))
    out.update(labels)
    annotations = {"summary": _str(doc.get("AlarmDescription")) or name,
                   "description": _str(doc.get("NewStateReason")),
                   "state": _str(state), "alarm_arn": _str(doc.get("AlarmArn"))}
    changed = to_time(_str(doc.get("StateChangeTime")), "StateChangeTime")
    return am_alert({k: v for k, v in out.items() if v}, {k: v for k, v in annotations.items() if v},
                    firing=firing, now=now, firing_ttl=firing_ttl, starts_at=changed if firing else None,
                    ends_at=changed, generator_url=console_url(region, name) if region else "")
