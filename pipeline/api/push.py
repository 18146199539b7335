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

from contracts import PushedAlert, PushedAlerts
from contracts.matchers import go_quote
from pipeline.api.errors import INVALID_TYPE, PARSE, REQUIRED

__all__ = ["ORG_LABEL", "PushError", "decode_body", "is_request_uri", "parse_push", "parse_time"]

ORG_LABEL = "org_id"
# the times Alertmanager's API can hand back (RFC 3339 has four-digit years)
_MIN_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).timestamp()
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


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


def parse_push(body: bytes, *, request_org: str, now: float,
               request_id: str | None = None) -> tuple[list[PushedAlerts], list[str]]:
    """The request's alerts grouped by organisation, and the validation errors of the others."""
    doc = decode_body(body, "alerts", list, "array")
    raws = [_decode(raw, i) for i, raw in enumerate(doc)]
    for i, a in enumerate(raws):
        _check_schema(a, i)
    request_id = request_id or uuid.uuid4().hex
    by_org: dict[str, list[PushedAlert]] = {}
    errors: list[str] = []
    for a in raws:
        assert a.labels is not None  # _check_schema
        labels = {k: v for k, v in a.labels.items() if v != ""}  # Alertmanager drops empty labels
        error = _validate(labels, a.annotations, a.starts_at, a.ends_at)
        if error:
            errors.append(error)
            continue
        org = labels.get(ORG_LABEL) or request_org
        by_org.setdefault(org, []).append(PushedAlert(
            labels=labels, annotations=dict(a.annotations), starts_at=a.starts_at, ends_at=a.ends_at,
            generator_url=a.generator_url))
    pushes = [PushedAlerts(request_id=request_id, org=org, received_at=now, alerts=alerts)
              for org, alerts in by_org.items()]
    return pushes, errors

