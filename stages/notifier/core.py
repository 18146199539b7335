"""The notifier's decisions (pure): from (ledger record, attempt outcome, budget, now) to
sent, retry after a delay, or give up to the fallbacks.

The worker (``worker``) reads the ledger, asks the gates, makes the attempt, and executes
what these functions return; nothing here reads a clock (``now`` and the random draw
``rand`` are arguments), sleeps or does I/O. One request goes:

1. :func:`admit`: a redelivered request whose ledger record is final is only acknowledged
   (:class:`Skip`).
2. :func:`gate`: the endpoint's breaker and rate limit said wait; a short rate-limit wait
   is slept in the worker (:class:`Wait`), an open circuit or a long wait returns the
   request to the stream (:class:`Defer`), spending none of its budget.
3. :func:`claim`: the ledger record ``sending`` to write before the first attempt, a
   compare-and-set on the sequence the decision was taken on (:class:`Claim`); when that
   write loses, :func:`claim_lost` says what the newer record means.
4. :func:`after_attempt`: :class:`Sent`, :class:`Retry` after a delay within the budget, or
   :class:`GiveUp`; :func:`give_up` then plans the hand-off (:class:`HandOff`): the
   fallback receiver's send requests, the dead letter, the final record.

Imports contracts, msgspec and the notifier's pure modules only (checked by import-linter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from contracts.messages import Integration, SendRequest

from .breaker import RetryBudget, retry_delay
from .classify import Outcome, Verdict, classify_transport
from .payloads.common import idempotency_key
from .records import FINAL_STATES, AttemptRecord, LedgerRecord, integration_name

__all__ = [
    "CLAIM_LOST_NEW",
    "CLAIM_LOST_RESUME",
    "GO",
    "Claim",
    "Defer",
    "GiveUp",
    "Go",
    "HandOff",
    "Retry",
    "SenderKey",
    "Sent",
    "Skip",
    "Wait",
    "admit",
    "after_attempt",
    "attempt_record",
    "claim",
    "claim_lost",
    "cut_attempt",
    "endpoint_failed",
    "fallback_request",
    "gate",
    "give_up",
    "is_final",
    "resume_give_up",
]

SenderKey = tuple[str, str, int]  # (receiver, integration kind, index)

# How long a request whose claim lost waits before it is tried again: a new send's claim
# lost to a record not readable yet (rare: look again soon); a resumed one lost to another
# worker holding the send (it may be mid-attempt: leave it that worker's time).
CLAIM_LOST_NEW = 1.0
CLAIM_LOST_RESUME = 5.0


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Skip:
    """Acknowledge the request without sending (``why``: the metric's label)."""

    why: Literal["already_done", "nothing_to_send"]


@dataclass(frozen=True)
class Defer:
    """Return the request to the stream for ``delay`` seconds (a delayed nak)."""

    delay: float
    cause: Literal["breaker", "rate", "claim"]


@dataclass(frozen=True)
class Go:
    """Send now."""


GO = Go()


@dataclass(frozen=True)
class Wait:
    """Sleep ``seconds`` in the worker, then ask the gates again."""

    seconds: float


@dataclass(frozen=True)
class Claim:
    """Write ``record`` if the send's last ledger record has sequence ``expect`` (0: none)."""

    record: LedgerRecord
    expect: int


@dataclass(frozen=True)
class Sent:
    """The attempt succeeded: write ``record`` (final) and acknowledge."""

    record: LedgerRecord


@dataclass(frozen=True)
class Retry:
    """Write ``record`` (its ``spent`` includes the wait), sleep ``delay``, attempt again."""

    record: LedgerRecord
    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Retrying has ended: write ``record`` (``giving_up``), then hand off (:func:`give_up`)."""

    record: LedgerRecord


@dataclass(frozen=True)
class HandOff:
    """What giving up does, in this order: publish ``requests`` (the fallback receiver's
    sends), dead-letter the request (``reason``, ``cause``), log ``entry``, write ``record``
    (final) and acknowledge. Publishing first and recording last makes a crash in between
    redo the hand-off, never skip it."""

    requests: list[SendRequest]
    reason: str
    cause: Literal["exhausted", "permanent"]
    entry: AttemptRecord
    record: LedgerRecord
    why: str


# --------------------------------------------------------------------------- before sending


def is_final(record: LedgerRecord | None) -> bool:
    return record is not None and record.state in FINAL_STATES


def admit(found: LedgerRecord | None) -> Skip | None:
    """``Skip`` when the send's ledger record is final (sent, failed or handed over): a
    redelivered request whose work is done is only acknowledged; else None (go on)."""
    return Skip("already_done") if is_final(found) else None


def gate(wait: float, cause: Literal["", "breaker", "rate"], *, max_wait_in_process: float,
         rand: float) -> Go | Wait | Defer:
    """What to do about the gates' answer ``(wait, cause)`` (``breaker.Gates.wait``).

    Any wait behind an open circuit, and a rate-limit wait longer than
    ``max_wait_in_process``, returns the request: it holds no worker slot meanwhile. The
    returns are spread by up to a second (``rand`` in [0, 1]) so that a reopened endpoint is
    not hit by all of them at once.
    """
    if wait <= 0:
        return GO
    if cause == "breaker" or wait > max_wait_in_process:
        return Defer(wait + rand * min(wait, 1.0), "rate" if cause == "rate" else "breaker")
    return Wait(wait)


def claim(req: SendRequest, found: tuple[int, LedgerRecord] | None, now: float) -> Claim | Skip:
    """The ``sending`` record to write before the first attempt, or ``Skip`` when the send
    is already final. A new send starts a record (``expect=0``: only if none exists); a
    resumed one (its worker died, or it was deferred mid-retry) keeps its attempts and spent
    budget, compared against the sequence it was read at: a decision taken on a stale read
    fails the write instead of sending."""
    if found is None:
        record = LedgerRecord(id=req.id, state="sending", at=now, org=req.org, receiver=req.receiver,
                              integration=integration_name(req), group_key=req.group_key,
                              fingerprints=[a.fingerprint for a in req.alerts], first_at=now,
                              idempotency_key=idempotency_key(req), flush_seq=req.flush_seq)
        return Claim(record, 0)
    seq, prev = found
    if is_final(prev):
        return Skip("already_done")
    return Claim(msgspec.structs.replace(prev, at=now), seq)


def claim_lost(req: SendRequest, lost: Claim, latest: tuple[int, LedgerRecord] | None,
               now: float) -> Claim | Skip | Defer:
    """After the write of ``lost`` found another record, read again (``latest``): final
    means done; a new send's claim is retried once on what it lost to; otherwise another
    worker holds the send and the request comes back later."""
    if latest is not None and is_final(latest[1]):
        return Skip("already_done")
    if lost.expect == 0:
        if latest is None:
            return Defer(CLAIM_LOST_NEW, "claim")
        return claim(req, latest, now)
    return Defer(CLAIM_LOST_RESUME, "claim")


def resume_give_up(record: LedgerRecord) -> Outcome | None:
    """A claimed record marked ``giving_up`` (a worker died handing the failure over): the
    outcome to finish that hand-off with, sending nothing; else None (send)."""
    if not record.giving_up:
        return None
    verdict = Verdict(ok=False, retryable=not record.permanent, reason=record.reason)  # type: ignore[arg-type]
    return Outcome(verdict, record.last_error)


# --------------------------------------------------------------------------- after an attempt


def endpoint_failed(outcome: Outcome) -> bool:
    """Whether the attempt counts against the endpoint's circuit breaker: a success, and a
    permanent refusal (about the request, not the endpoint), count as the endpoint working."""
    return not (outcome.ok or not outcome.verdict.retryable)


def after_attempt(record: LedgerRecord, outcome: Outcome, budget: RetryBudget, *, now: float, duration: float,
                  rand: float, template_errors: Sequence[str] = ()) -> Sent | Retry | GiveUp:
    """Sent, retry after a delay, or give up, for the attempt that ended ``outcome`` after
    ``duration`` seconds on the send held as ``record``.

    The ``sent`` record carries the attempt's details (status, duration, ``template_errors``):
    it is also that attempt's log entry (``records.sent_entry``), so a success is one write.

    The retry delay is :func:`~stages.notifier.breaker.retry_delay` (backoff with full jitter
    from ``rand``, or the receiver's ``Retry-After``), counted into ``spent`` before the wait
    so that a worker dying in it does not give the send a fresh budget.
    """
    attempts = record.attempts + 1
    spent = record.spent + duration
    if outcome.ok:
        return Sent(msgspec.structs.replace(record, state="sent", attempts=attempts, spent=spent, at=now,
                                            status_code=outcome.status, duration=duration,
                                            template_errors=list(template_errors)))
    failed = msgspec.structs.replace(record, attempts=attempts, spent=spent, last_error=outcome.error,
                                     reason=outcome.verdict.reason, at=now)
    delay = retry_delay(budget, outcome.verdict, attempts=attempts, spent=spent, rand=rand,
                        retry_after=outcome.retry_after)
    if delay is None:
        return GiveUp(msgspec.structs.replace(failed, giving_up=True, permanent=not outcome.verdict.retryable))
    return Retry(msgspec.structs.replace(failed, spent=spent + delay), delay)


def cut_attempt(record: LedgerRecord, now: float) -> tuple[Outcome, LedgerRecord]:
    """An attempt cut short by the worker stopping: its outcome and the record that counts
    it (so the attempt count stays true; the send stays ``sending`` for the next worker)."""
    cut = Outcome(classify_transport("canceled"), "canceled: the worker stopped during the attempt")
    return cut, msgspec.structs.replace(record, attempts=record.attempts + 1, last_error=cut.error,
                                        reason=cut.verdict.reason, at=now)


def attempt_record(req: SendRequest, record: LedgerRecord, attempt_no: int, outcome: Outcome, now: float,
                   duration: float, template_errors: Sequence[str] = ()) -> AttemptRecord:
    """The attempt log's entry for one attempt."""
    return AttemptRecord(send_id=req.id, status="sent" if outcome.ok else "failed", at=now, org=req.org,
                         receiver=req.receiver, integration=record.integration, group_key=req.group_key,
                         attempt=attempt_no, error=outcome.error, reason=outcome.verdict.reason,
                         status_code=outcome.status, duration=duration, fingerprints=record.fingerprints,
                         flush_seq=req.flush_seq, template_errors=list(template_errors))


# --------------------------------------------------------------------------- giving up


def fallback_request(req: SendRequest, receiver: str, kind: str, index: int) -> SendRequest:
    """The send request handing ``req`` to one integration of the fallback ``receiver``
    (a new send with its own deterministic id, ledger record and idempotency key)."""
    return msgspec.structs.replace(req, id=f"{req.id}/fallback/{receiver}/{kind}/{index}", receiver=receiver,
                                   integration=Integration(kind=kind, index=index))


def give_up(req: SendRequest, record: LedgerRecord, outcome: Outcome, *, fallback: str,
            targets: Sequence[SenderKey], now: float) -> HandOff:
    """The hand-off of a send that will not be sent: to each integration of the ``fallback``
    receiver (``targets``: its deliverable integrations; none leaves the send ``failed``)."""
    exhausted = outcome.verdict.retryable
    why = (f"gave up after {record.attempts} attempt(s) ({'retry budget exhausted' if exhausted else 'permanent'})"
           f": {outcome.error}")
    reason = f"{req.receiver}/{record.integration}: {why}"
    handed = fallback if targets else ""
    if handed:
        reason += f"; handed to fallback receiver {fallback!r}"
    entry = AttemptRecord(send_id=req.id, status="gave_up", at=now, org=req.org, receiver=req.receiver,
                          integration=record.integration, group_key=req.group_key, attempt=record.attempts,
                          error=why, reason=outcome.verdict.reason, fingerprints=record.fingerprints,
                          flush_seq=req.flush_seq, fallback=handed)
    final = msgspec.structs.replace(record, state="fallback" if handed else "failed", at=now, fallback=handed)
    return HandOff(requests=[fallback_request(req, *key) for key in targets], reason=reason,
                   cause="exhausted" if exhausted else "permanent", entry=entry, record=final, why=why)
