"""``POST /api/v2/alerts``: validate like Alertmanager, then publish into EVENTS per organisation.

Valid alerts of a request are published even when others are invalid; the response is then
400 with the validation errors joined, as Alertmanager answers. Defaults of the times are
the rules stage's business (it knows ``resolve_timeout``); this layer only parses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from contracts import PushedAlert, PushedAlerts

__all__ = ["ORG_LABEL", "PushError", "parse_push", "parse_time"]

ORG_LABEL = "org_id"


class PushError(ValueError):
    """The body is not a list of postable alerts (a parse error, not a validation error)."""


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
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise PushError(f"{field} in body must be of type date-time: {value!r}") from exc


def _validate(labels: Mapping[str, str], annotations: Mapping[str, str], starts: float | None,
              ends: float | None) -> str | None:
    if not labels:
        return "at least one label pair required"
    for name, val in labels.items():
        if not name:
            return f'invalid label set: invalid name "{name}"'
        if not isinstance(val, str):
            return f'invalid label set: invalid value "{val}"'
    for name in annotations:
        if not name:
            return f'invalid annotations: invalid name "{name}"'
    if starts is not None and ends is not None and ends < starts:
        return "start time must be before end time"
    return None


def parse_push(body: bytes, *, request_org: str, now: float,
               request_id: str | None = None) -> tuple[list[PushedAlerts], list[str]]:
    """The request's alerts grouped by organisation, and the validation errors of the others."""
    try:
        doc = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError as exc:
        raise PushError(f"parsing alerts body from \"\" failed, because {exc}") from exc
    if not isinstance(doc, list):
        raise PushError("alerts in body must be of type array")
    request_id = request_id or uuid.uuid4().hex
    by_org: dict[str, list[PushedAlert]] = {}
    errors: list[str] = []
    for i, raw in enumerate(doc):
        if not isinstance(raw, dict):
            raise PushError(f"alerts.{i} in body must be of type object")
        labels = raw.get("labels")
        if not isinstance(labels, dict):
            raise PushError(f"alerts.{i}.labels in body is required")
        annotations = raw.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise PushError(f"alerts.{i}.annotations in body must be of type object")
        labels = {str(k): v for k, v in labels.items() if v != ""}  # Alertmanager drops empty labels
        starts = parse_time(raw.get("startsAt"), f"alerts.{i}.startsAt")
        ends = parse_time(raw.get("endsAt"), f"alerts.{i}.endsAt")
        error = _validate(labels, annotations, starts, ends)
        if error:
            errors.append(error)
            continue
        org = labels.get(ORG_LABEL) or request_org
        gen = raw.get("generatorURL") or ""
        by_org.setdefault(org, []).append(PushedAlert(
            labels=labels, annotations={str(k): str(v) for k, v in annotations.items()}, starts_at=starts,
            ends_at=ends, generator_url=str(gen)))
    pushes = [PushedAlerts(request_id=request_id, org=org, received_at=now, alerts=alerts)
              for org, alerts in by_org.items()]
    return pushes, errors
