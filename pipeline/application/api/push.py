"""``POST /api/v2/alerts``: validate like Alertmanager, then publish into EVENTS per organisation.

Alertmanager (go-swagger) checks a request in three passes, and so does this module:

1. decoding: a body that is not JSON, not an array of objects, or holds a field of the wrong
   type (a label value that is not a string, a time that is not RFC 3339) fails the whole
   request with 400 ``{"code": 400, "message": ...}``;
2. the schema: a missing ``labels``, or a ``generatorURL`` that is not a request URI, fails
   the whole request with 422 ``{"code": 6xx, "message": ...}`` (the first failing alert);
3. the handler: an alert without labels, with an empty label name, or ending before it
   starts is dropped; the others are accepted, and the answer is then 400 with the
   dropped alerts' errors joined (a JSON string).

Tocsin adds its limits (``pipeline.application.api.limits``) to pass 3: an alert whose ``org_id`` label
is not a valid organisation name (``contracts.ids.check_org``, the check ``X-Scope-OrgID``
gets), or that breaks a size limit, is dropped the same way, with an error naming the limit.
A request holding more alerts than ``limits.max_alerts_per_push`` fails whole (400).

Defaults of the times are the rules stage's business (it knows ``resolve_timeout``); this
layer only parses them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import PushedAlert, PushedAlerts, encode
from contracts.ids import check_org
from contracts.matchers import go_quote
from pipeline.application.api.errors import INVALID_TYPE, PARSE, REQUIRED
from pipeline.application.api.limits import check_alert, check_alert_bytes, check_push_count
from pipeline.application.config.limits import LimitsConfig

__all__ = ["MAX_ALERTS_PER_MESSAGE", "ORG_LABEL", "PushError", "decode_body", "is_request_uri", "parse_push",
           "parse_time", "split_push"]

ORG_LABEL = "org_id"
# Alerts per published message (POST /api/v2/alerts and the ingest endpoints): one message is
# one step, and in the chain a step commits the state changes of rules, router and filter
# together (a few per alert, more when each alert opens a group of its own), which must fit one
# atomic batch (1,000 messages) with room to spare.
MAX_ALERTS_PER_MESSAGE = 50
# the times Alertmanager's API can hand back (RFC 3339 has four-digit years)
_MIN_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).timestamp()
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DEFAULT_LIMITS = LimitsConfig()


class PushError(ValueError):
    """The request cannot be taken at all: ``code`` 400 (decoding) or a 6xx validation code."""

    def __init__(self, message: str, code: int = PARSE) -> None:
        super().__init__(message)
        self.code = code


def parse_time(value: Any, field: str) -> float | None:
    """RFC 3339 -> Unix seconds; empty and Go's zero time are None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise PushError(f"{field} in body must be of type date-time: {value!r}")
    text = value.strip()
    if text.startswith("0001-01-01T00:00:00"):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PushError(f"{field} in body must be of type date-time: {value!r}") from exc
    # Go's strfmt reads a time without an offset (2006-01-02T15:04:05) as UTC, not local time
    t = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not _MIN_TIME <= t <= _MAX_TIME:  # e.g. 9999-12-31T23:00:00-05:00, after year 9999 in UTC
        raise PushError(f"{field} in body must be of type date-time: {value!r} (out of range)")
    return t


def is_request_uri(text: str) -> bool:
    """Roughly Go's ``url.ParseRequestURI``, which Alertmanager's ``uri`` format uses: an
    absolute URI (``scheme:...``) or an absolute path, no control characters, well-formed
    percent escapes, no space in the host."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or _BAD_ESCAPE.search(text):
        return False
    if text.startswith("/"):
        return True
    scheme = _SCHEME.match(text)
    if scheme is None:
        return False
    rest = text[scheme.end():]
    if rest.startswith("//"):
        host = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
        return " " not in host
    return True


@dataclass(frozen=True, slots=True)
class _Raw:
    """One alert of the body after decoding (pass 1)."""

    labels: dict[str, str] | None
    annotations: dict[str, str]
    starts_at: float | None
    ends_at: float | None
    generator_url: str


def _string_map(value: Any, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PushError(f"{field} in body must be of type object with string values")
    return value


def _decode(raw: Any, i: int) -> _Raw:
    if not isinstance(raw, dict):
        raise PushError(f"alerts.{i} in body must be of type object")
    gen = raw.get("generatorURL")
    if gen is not None and not isinstance(gen, str):
        raise PushError(f"alerts.{i}.generatorURL in body must be of type string")
    return _Raw(
        labels=_string_map(raw.get("labels"), f"alerts.{i}.labels"),
        annotations=_string_map(raw.get("annotations"), f"alerts.{i}.annotations") or {},
        starts_at=parse_time(raw.get("startsAt"), f"alerts.{i}.startsAt"),
        ends_at=parse_time(raw.get("endsAt"), f"alerts.{i}.endsAt"),
        generator_url=gen or "",
    )


class _Wire(msgspec.Struct):
    """An alert of the body in the shape go-swagger accepts: decoded and type-checked by msgspec
    in one pass. A body that does not fit takes the slow path, which names the field as
    go-swagger does (:func:`_decode`)."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    startsAt: str | None = None
    endsAt: str | None = None
    generatorURL: str | None = None


_WIRE = msgspec.json.Decoder(list[_Wire])


def _fast(body: bytes) -> list[_Raw] | None:
    """The body's alerts (pass 1) when every one has the expected types, else None."""
    try:
        wires = _WIRE.decode(body)
    except msgspec.DecodeError:  # (ValidationError included) the slow path says what is wrong
        return None
    try:
        return [_Raw(labels=w.labels, annotations=w.annotations or {},
                     starts_at=parse_time(w.startsAt, f"alerts.{i}.startsAt"),
                     ends_at=parse_time(w.endsAt, f"alerts.{i}.endsAt"), generator_url=w.generatorURL or "")
                for i, w in enumerate(wires)]
    except PushError:
        return None


def _check_schema(a: _Raw, i: int) -> None:
    """Pass 2, in go-swagger's order: the alert's ``generatorURL``, then its ``labels``."""
    if a.generator_url and not is_request_uri(a.generator_url):
        raise PushError(f"{i}.generatorURL in body must be of type uri: {go_quote(a.generator_url)}", INVALID_TYPE)
    if a.labels is None:
        raise PushError(f"{i}.labels in body is required", REQUIRED)


def _validate(labels: Mapping[str, str], annotations: Mapping[str, str], starts: float | None,
              ends: float | None) -> str | None:
    """Pass 3: Alertmanager's ``Alert.Validate`` (after empty label values were dropped)."""
    if not labels:
        return "at least one label pair required"
    for name in labels:
        if not name:
            return f'invalid label set: invalid name "{name}"'
    for name in annotations:
        if not name:
            return f'invalid annotations: invalid name "{name}"'
    if starts is not None and ends is not None and ends < starts:
        return "start time must be before end time"
    return None


def decode_body(body: bytes, name: str, kind: type, kind_name: str) -> Any:
    """The JSON body as go-swagger first checks it: present (422), JSON, of ``kind`` (400)."""
    if not body.strip():
        raise PushError(f"{name} in body is required", REQUIRED)
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise PushError(f"parsing {name} body from \"\" failed, because {exc}") from exc
    if not isinstance(doc, kind):
        raise PushError(f"{name} in body must be of type {kind_name}")
    return doc


def _check_org_label(labels: Mapping[str, str]) -> str | None:
    org = labels.get(ORG_LABEL)
    problem = check_org(org) if org is not None else None
    return f"invalid {ORG_LABEL} label: {problem}" if problem else None


def parse_push(body: bytes, *, request_org: str, now: float, request_id: str | None = None,
               limits: LimitsConfig | None = None) -> tuple[list[PushedAlerts], list[str]]:
    """The request's alerts grouped by organisation, and the validation errors of the others.

    ``limits``: the ``tocsin: limits:`` section (``None``: its defaults)."""
    limits = limits or _DEFAULT_LIMITS
    raws = _fast(body)
    if raws is None:
        doc = decode_body(body, "alerts", list, "array")
        too_many = check_push_count(len(doc), limits)
        if too_many:
            raise PushError(too_many)
        raws = [_decode(raw, i) for i, raw in enumerate(doc)]
    else:
        too_many = check_push_count(len(raws), limits)
        if too_many:
            raise PushError(too_many)
    for i, a in enumerate(raws):
        _check_schema(a, i)
    request_id = request_id or uuid.uuid4().hex
    by_org: dict[str, list[PushedAlert]] = {}
    errors: list[str] = []
    for a in raws:
        assert a.labels is not None  # _check_schema
        labels = {k: v for k, v in a.labels.items() if v != ""}  # Alertmanager drops empty labels
        error = (_validate(labels, a.annotations, a.starts_at, a.ends_at) or _check_org_label(labels)
                 or check_alert(limits, labels, a.annotations))
        if error:
            errors.append(error)
            continue
        alert = PushedAlert(labels=labels, annotations=dict(a.annotations), starts_at=a.starts_at,
                            ends_at=a.ends_at, generator_url=a.generator_url)
        error = check_alert_bytes(len(encode(alert)), limits)
        if error:
            errors.append(error)
            continue
        by_org.setdefault(labels.get(ORG_LABEL) or request_org, []).append(alert)
    pushes = [PushedAlerts(request_id=request_id, org=org, received_at=now, alerts=alerts)
              for org, alerts in by_org.items()]
    return pushes, errors



def split_push(push: PushedAlerts, *, max_alerts: int, max_bytes: int) -> list[PushedAlerts]:
    """``push`` in consecutive parts of at most ``max_alerts`` alerts and about ``max_bytes``
    encoded bytes each (an alert alone is never split: the limits keep it far smaller).

    The API publishes one message per part. A count alone let a legitimate push of large
    alerts exceed the server's ``max_payload``; half of it leaves room for the part's dead
    letter, which carries the part base64-encoded, should the rules stage refuse it.
    """
    parts: list[PushedAlerts] = []
    start, size = 0, 0
    for i, alert in enumerate(push.alerts):
        n = len(encode(alert)) + 1
        if i > start and (i - start >= max_alerts or size + n > max_bytes):
            parts.append(msgspec.structs.replace(push, alerts=push.alerts[start:i]))
            start, size = i, 0
        size += n
    if start < len(push.alerts) or not parts:
        parts.append(msgspec.structs.replace(push, alerts=push.alerts[start:]))
    return parts
