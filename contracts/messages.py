"""The messages that travel between stages (schema version 1)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

__all__ = [
    "AckCommand",
    "Alert",
    "AlertChange",
    "Cause",
    "DeadLetter",
    "Event",
    "GroupFlush",
    "Integration",
    "Message",
    "PushedAlert",
    "PushedAlerts",
    "RuleCommand",
    "SendRequest",
    "Silence",
    "SilenceCommand",
    "SilenceMatcher",
    "decode",
    "decode_as",
    "encode",
]


class _Base(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True):
    """Tagged on the wire by ``type``; unknown fields are ignored when decoding."""


class Cause(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What made an alert change: a database event or an API push."""

    kind: Literal["event", "push", "timer"]
    id: str = ""  # event id, or request id of the push
    at: float = 0.0  # when the cause happened (row created_at, or push receive time)


class Event(_Base, tag="event.v1"):
    """One committed row of an events table (hop A), turned into a domain event."""

    id: str  # stable id of the row (primary key as text)
    org: str
    reason: str  # e.g. DeviceDisconnected
    resource_kind: str
    resource_name: str
    occurred_at: float  # the row's created_at
    message: str = ""
    severity: str = ""
    fields: dict[str, Any] = {}
    table: str = "events"
    op: Literal["insert", "update", "delete"] = "insert"
    lsn: str = ""  # commit LSN of the transaction, for tracing back to Postgres
    committed_at: float = 0.0  # commit time of the transaction
    trace: dict[str, str] = {}  # W3C trace context (traceparent, tracestate)


class PushedAlert(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One alert as posted to ``POST /api/v2/alerts`` (times already parsed)."""

    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: float | None = None
    ends_at: float | None = None
    generator_url: str = ""


class PushedAlerts(_Base, tag="pushed_alerts.v1"):
    """The alerts of one push request that belong to one organisation."""

    request_id: str
    org: str
    received_at: float
    alerts: list[PushedAlert]
    trace: dict[str, str] = {}


class Alert(msgspec.Struct, omit_defaults=True, kw_only=True):
    """An alert in Alertmanager's data model, owned by one organisation."""

    fingerprint: str
    org: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: float
    ends_at: float | None = None  # None: firing with no known end
    generator_url: str = ""
    updated_at: float = 0.0

    def resolved_at(self, now: float) -> bool:
        """True when the alert is resolved at ``now`` (Alertmanager: endsAt in the past)."""
        return self.ends_at is not None and self.ends_at <= now


class AlertChange(_Base, tag="alert_change.v1"):
    """The rules stage's output: an alert fired, changed, or resolved."""

    change: Literal["fired", "updated", "resolved"]
    alert: Alert
    cause: Cause
    trace: dict[str, str] = {}


class GroupFlush(_Base, tag="group_flush.v1"):
    """The router's output: the alerts of one aggregation group at one flush."""

    org: str
    group_key: str  # Alertmanager's group key: route path + group labels
    group_id: str  # short stable hash of group_key, safe in subjects and ids
    route_id: str  # the route's path in the tree, e.g. "0.2.1"
    receiver: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    flush_seq: int  # 1, 2, 3, ... per group
    flushed_at: float
    group_interval: float
    repeat_interval: float
    mute_time_intervals: list[str] = []
    active_time_intervals: list[str] = []
    trace: dict[str, str] = {}


class Integration(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Which integration of a receiver a send request is for."""

    kind: Literal["webhook", "slack", "pagerduty", "email"] | str
    index: int  # position in the receiver's ``<kind>_configs`` list


class SendRequest(_Base, tag="send_request.v1"):
    """The filter's output: deliver these alerts to one integration of one receiver."""

    id: str  # deterministic: org, group, receiver, integration, flush sequence
    org: str
    group_key: str
    group_id: str
    receiver: str
    integration: Integration
    flush_seq: int
    status: Literal["firing", "resolved"]
    group_labels: dict[str, str]
    alerts: list[Alert]
    created_at: float
    acknowledged: bool = False  # PagerDuty, Opsgenie: send "acknowledge" instead of "trigger"
    trace: dict[str, str] = {}
    escalation_level: int = 0  # 0: the route's own receiver; n: step n of the group's escalation policy
    escalation_policy: str = ""


class DeadLetter(_Base, tag="dead_letter.v1"):
    """A message a stage could not use: kept with the reason, never silently dropped."""

    stage: str
    reason: str
    subject: str = ""
    stream_seq: int = 0
    payload: bytes = b""  # the original bytes (base64 in JSON)
    headers: dict[str, str] = {}
    at: float = 0.0
    table: str = ""  # source stage: the table and primary key of a bad row
    key: str = ""  # (a stateful stage: the state key of a dead-lettered timer)
    # The original's size and digest ("sha256:<hex>"): when ``payload`` is only an excerpt of
    # an input too large to keep whole (size != len(payload)), they still identify it.
    size: int = 0
    digest: str = ""
    cause: str = ""  # a short class of the reason: undecodable, rejected, step_failed, too_large, refused


class SilenceMatcher(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A matcher as Alertmanager's API v2 carries it."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True


class Silence(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A silence of one organisation (Alertmanager's model; state derives from the times)."""

    id: str
    org: str
    matchers: list[SilenceMatcher]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    updated_at: float = 0.0


class SilenceCommand(_Base, tag="silence_command.v1"):
    """API -> filter: create or replace (``upsert``) or expire a silence."""

    action: Literal["upsert", "expire"]
    org: str
    id: str
    at: float  # when the API accepted the request
    silence: Silence | None = None  # with upsert
    request_id: str = ""
    actor: str = ""  # the authenticated identity, for the audit trail
    trace: dict[str, str] = {}


class AckCommand(_Base, tag="ack_command.v1"):
    """API -> filter: acknowledge (or un-acknowledge) an alert group, one alert, or the firing
    alerts matching ``matchers`` (each acknowledged by its fingerprint)."""

    action: Literal["ack", "unack"]
    org: str
    at: float
    group_key: str = ""  # one of group_key / fingerprint / matchers
    fingerprint: str = ""
    matchers: list[str] = []  # Alertmanager matcher syntax, e.g. 'severity="critical"'
    by: str = ""
    comment: str = ""
    expires_at: float | None = None
    request_id: str = ""
    trace: dict[str, str] = {}


class RuleCommand(_Base, tag="rule_command.v1"):
    """API -> rules: create or replace (``put``) or delete an event-rule template or rule of one
    organisation. It travels in EVENTS, on the organisation's partition and a subject of its own
    per (org, kind, name), so the rules stage applies it at a defined point of its input."""

    action: Literal["put", "delete"]
    org: str
    kind: Literal["template", "rule"]
    name: str
    at: float  # when the API accepted the request
    spec: dict[str, Any] = {}  # with put: the definition, in the rules stage's own schema (stages.rules.defs)
    request_id: str = ""
    actor: str = ""  # the authenticated identity, for the audit trail
    trace: dict[str, str] = {}


Message = (Event | PushedAlerts | AlertChange | GroupFlush | SendRequest | DeadLetter | SilenceCommand
           | AckCommand | RuleCommand)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
T = TypeVar("T")


def encode(msg: msgspec.Struct) -> bytes:
    """JSON bytes of a message."""
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Decode any message; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _decoder.decode(data)


def decode_as(data: bytes, kind: type[T]) -> T:
    """Decode a message that must be of one kind (raises ``msgspec.ValidationError`` otherwise)."""
    msg = _decoder.decode(data)
    if not isinstance(msg, kind):
        raise msgspec.ValidationError(f"expected {kind.__name__}, got {type(msg).__name__}")
    return msg
