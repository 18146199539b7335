"""The audit trail's record: who did what, for which organisation, to what, when, and how.

Built here, stored by the API (a JetStream stream). Records are plain msgspec Structs, so
they encode with ``msgspec.json.encode`` and decode back with ``decode_audit_record``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from pipeline.api.auth_identity import Identity

__all__ = ["ACTIONS", "OUTCOMES", "AuditRecord", "audit_record", "decode_audit_record"]

# The actions the API records; others are accepted (new endpoints) but these are the vocabulary.
ACTIONS: Final = frozenset(
    {
        "alerts.push",
        "silence.create",
        "silence.update",
        "silence.expire",
        "alert.ack",
        "alert.unack",
        "config.read",
        "audit.read",
    }
)
OUTCOMES: Final = frozenset({"ok", "denied", "failed"})


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``at``: Unix seconds. ``method``: how the subject was authenticated (none, static, jwt,
    mtls). ``target``: the id acted on (silence id, alert fingerprint), empty when none.
    ``details``: small facts worth keeping (matchers, comment, counts), as strings."""

    at: float
    request_id: str
    subject: str
    method: str
    role: str
    org: str
    action: str
    target: str = ""
    outcome: str = "ok"
    details: dict[str, str] = msgspec.field(default_factory=dict)


_decoder: Final = msgspec.json.Decoder(AuditRecord)


def audit_record(
    identity: Identity,
    *,
    org: str,
    action: str,
    now: float,
    request_id: str,
    target: str = "",
    outcome: str = "ok",
    details: Mapping[str, object] | None = None,
) -> AuditRecord:
    """The record of ``identity`` doing ``action`` on ``target`` in ``org`` at ``now``.

    Detail values are stringified so a record always encodes; ``ValueError`` on an empty
    action or org, or an unknown outcome.
    """
    if not action:
        raise ValueError("an audit record needs an action")
    if not org:
        raise ValueError("an audit record needs an organisation")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join(sorted(OUTCOMES))})")
    return AuditRecord(
        at=now,
        request_id=request_id,
        subject=identity.subject,
        method=identity.method,
        role=identity.role,
        org=org,
        action=action,
        target=target,
        outcome=outcome,
        details={str(k): str(v) for k, v in (details or {}).items()},
    )


def decode_audit_record(data: bytes) -> AuditRecord:
    return _decoder.decode(data)
