"""The audit trail's record: who did what, for which organisation, to what, when, and how.

Built here, stored by the API (a JetStream stream). Records are plain msgspec Structs, so
they encode with ``msgspec.json.encode`` and decode back with ``decode_audit_record``.

Denied requests (401, 403, 429) are recorded too (action ``request.denied``, outcome
``denied``), through ``DenialAuditor``: a flood of refused requests must not become a flood
of audit writes, so each client address gets a small budget of records (1/s, burst 5) and
all addresses together a larger one (20/s, burst 50). A denial over budget is not written but
counted; the next record of that address carries the count (``details.suppressed``), and
``tocsin_api_denied_requests_total`` counts every denial.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec
from prometheus_client import Counter

from pipeline.application.api.limits import Bucket, take
from pipeline.application.config.identity import Identity
from pipeline.foundation.runtime.metrics import REGISTRY

__all__ = [
    "ACTIONS",
    "DENIED",
    "OUTCOMES",
    "AuditRecord",
    "Denial",
    "DenialAuditor",
    "audit_record",
    "decode_audit_record",
    "denial_record",
]

log = logging.getLogger("tocsin.audit")
DENIED: Final = "request.denied"

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
        DENIED,
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


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused request, as the edge saw it. ``identity``: None when authentication failed."""

    status: int
    reason: str
    path: str
    http_method: str
    client: str
    org: str
    request_id: str
    identity: Identity | None = None


def denial_record(denial: Denial, *, now: float, suppressed: int = 0) -> AuditRecord:
    """The audit record of ``denial``; ``suppressed``: denials of the same client address not
    recorded since its last record."""
    who = denial.identity
    details: dict[str, object] = {"status": denial.status, "reason": denial.reason, "path": denial.path,
                                  "http_method": denial.http_method, "client": denial.client}
    if suppressed:
        details["suppressed"] = suppressed
    return AuditRecord(
        at=now,
        request_id=denial.request_id,
        subject=who.subject if who else "",
        method=who.method if who else "none",
        role=who.role if who else "",
        org=denial.org,
        action=DENIED,
        outcome="denied",
        details={k: str(v) for k, v in details.items()},
    )


_DENIED_TOTAL = Counter("tocsin_api_denied_requests", "Requests refused with 401, 403 or 429 (all, audited or not)",
                        ["status"], registry=REGISTRY)
_AUDIT_SUPPRESSED = Counter("tocsin_api_denials_not_audited",
                            "Denied requests over the audit budget, counted into the next record", registry=REGISTRY)


class DenialAuditor:
    """Writes denials with ``write`` within per-address and overall budgets (see the module doc)."""

    def __init__(self, write: Callable[[AuditRecord], Awaitable[None]], *, rate: float = 1.0, burst: float = 5,
                 total_rate: float = 20.0, total_burst: float = 50, max_clients: int = 10_000) -> None:
        self.write = write
        self.rate, self.burst = rate, burst
        self.total_rate, self.total_burst = total_rate, total_burst
        self.max_clients = max_clients
        self._clients: dict[str, Bucket] = {}
        self._suppressed: dict[str, int] = {}
        self._total: Bucket | None = None

    def admit(self, client: str, now: float) -> int | None:
        """The count of earlier suppressed denials to attach when this one may be written
        (budgets spent), else ``None`` (and it is counted as suppressed)."""
        bucket, wait = take(self._clients.get(client), now, self.rate, self.burst)
        if wait == 0:
            total, total_wait = take(self._total, now, self.total_rate, self.total_burst)
            if total_wait == 0:
                self._total = total
                self._clients[client] = bucket
                return self._suppressed.pop(client, 0)
            bucket = self._clients.get(client) or Bucket(self.burst, now)  # not spent: nothing written
        self._clients[client] = bucket
        self._suppressed[client] = self._suppressed.get(client, 0) + 1
        _AUDIT_SUPPRESSED.inc()
        if len(self._clients) > self.max_clients:
            self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        # A bucket idle long enough to be full again is the same as a new one. Suppressed counts
        # of swept addresses are lost from the trail (the metric keeps them).
        full_after = self.burst / self.rate
        self._clients = {k: b for k, b in self._clients.items() if now - b.at < full_after}
        self._suppressed = {k: n for k, n in self._suppressed.items() if k in self._clients}

    async def record(self, denial: Denial, now: float) -> None:
        """Count ``denial`` and write it if within budget; a failed write is logged, never raised
        (the request was already answered)."""
        _DENIED_TOTAL.labels(str(denial.status)).inc()
        suppressed = self.admit(denial.client, now)
        if suppressed is None:
            return
        try:
            await self.write(denial_record(denial, now=now, suppressed=suppressed))
        except Exception as exc:  # the audit of a refusal must never fail the server
            log.warning("could not audit a denied request from %s: %s", denial.client, exc)
