"""The ledger's records (pure values): the state of one send and the log of its attempts.

:class:`LedgerRecord` is what ``ledger`` stores under ``tocsin.ledger.send.<org>.<group>.<id>``
and what the decisions of ``core`` take and return; :class:`AttemptRecord` is one entry of
the attempt log the API reads. A ``sent`` record carries its successful attempt's details
and is that attempt's log entry too (:func:`sent_entry`): a send that succeeds costs two
ledger writes, the claim and the ``sent`` record. Imports msgspec and contracts only.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.messages import SendRequest

__all__ = ["FINAL_STATES", "AttemptRecord", "LedgerRecord", "State", "integration_name", "sent_entry"]

State = Literal["sending", "sent", "failed", "fallback"]
FINAL_STATES: frozenset[str] = frozenset({"sent", "failed", "fallback"})


def integration_name(req: SendRequest) -> str:
    """How a send's integration is named in records and logs, e.g. ``webhook[0]``."""
    return f"{req.integration.kind}[{req.integration.index}]"


class LedgerRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The state of one send (one integration of one receiver for one flush)."""

    id: str
    state: State
    at: float  # when this record was written
    org: str
    receiver: str
    integration: str  # e.g. "webhook[0]"
    group_key: str
    fingerprints: list[str] = []
    attempts: int = 0
    last_error: str = ""
    reason: str = ""  # Alertmanager's failure reason label of the last failure
    spent: float = 0.0  # seconds of the retry budget used (attempts and backoff waits)
    first_at: float = 0.0  # when the first attempt started
    idempotency_key: str = ""
    fallback: str = ""  # the receiver the notification was handed to (state "fallback")
    giving_up: bool = False  # retrying has ended; the fallback hand-off and dead letter follow
    permanent: bool = False  # ... because of a permanent failure (else the budget ran out)
    # the successful attempt's details (state "sent"), read back as its attempt log entry
    flush_seq: int = 0
    status_code: int = 0
    duration: float = 0.0
    template_errors: list[str] = []


class AttemptRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One attempt (``sent`` / ``failed``) or the end of retrying (``gave_up``) of a send."""

    send_id: str
    status: Literal["sent", "failed", "gave_up"]
    at: float
    org: str
    receiver: str
    integration: str
    group_key: str
    attempt: int = 0
    error: str = ""
    reason: str = ""
    status_code: int = 0
    duration: float = 0.0
    fingerprints: list[str] = []
    flush_seq: int = 0
    fallback: str = ""
    # fields whose template failed and were sent with their default (the notification went out)
    template_errors: list[str] = []


def sent_entry(record: LedgerRecord) -> AttemptRecord:
    """The attempt log entry of the successful attempt a ``sent`` record stands for."""
    return AttemptRecord(send_id=record.id, status="sent", at=record.at, org=record.org, receiver=record.receiver,
                         integration=record.integration, group_key=record.group_key, attempt=record.attempts,
                         status_code=record.status_code, duration=record.duration,
                         fingerprints=record.fingerprints, flush_seq=record.flush_seq,
                         template_errors=record.template_errors)
