"""The notifier's decisions (stages.notifier.core): pure, ``now`` and ``rand`` passed in."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.messages import Alert, Integration, SendRequest
from stages.notifier import core
from stages.notifier.breaker import RetryBudget
from stages.notifier.classify import OK, Outcome, Verdict, permanent
from stages.notifier.records import FINAL_STATES, LedgerRecord, sent_entry

NOW = 1_700_000_000.0
BUDGET = RetryBudget(seconds=60.0, max_attempts=4, backoff_base=1.0, backoff_cap=8.0, max_retry_after=30.0)
RETRYABLE = Outcome(Verdict(ok=False, retryable=True, reason="serverError"), "unexpected status code 503", 503)
LIMITED = Outcome(Verdict(ok=False, retryable=True, reason="rateLimited"), "unexpected status code 429", 429, 12.0)
REFUSED = Outcome(Verdict(ok=False, retryable=False, reason="clientError"), "unexpected status code 400", 400)


def _req(send_id: str = "s-1", receiver: str = "team") -> SendRequest:
    alert = Alert(fingerprint="fp1", org="acme", labels={"alertname": "Down"}, annotations={}, starts_at=NOW - 60)
    return SendRequest(id=send_id, org="acme", group_key="{}:{}", group_id="g1", receiver=receiver,
                       integration=Integration(kind="webhook", index=0), flush_seq=3, status="firing",
                       group_labels={}, alerts=[alert], created_at=NOW - 1)


def _record(**kw: Any) -> LedgerRecord:
    base: dict[str, Any] = {"id": "s-1", "state": "sending", "at": NOW - 10, "org": "acme", "receiver": "team",
                            "integration": "webhook[0]", "group_key": "{}:{}", "fingerprints": ["fp1"],
                            "first_at": NOW - 10, "idempotency_key": "s-1"}
    return LedgerRecord(**{**base, **kw})


# --------------------------------------------------------------------------- before sending


@pytest.mark.parametrize(("record", "expected"), [
    (None, None),
    (_record(), None),
    (_record(state="sent"), core.Skip("already_done")),
    (_record(state="failed"), core.Skip("already_done")),
    (_record(state="fallback"), core.Skip("already_done")),
], ids=["no-record", "sending-resumes", "sent", "failed", "fallback"])
def test_admit(record: LedgerRecord | None, expected: core.Skip | None) -> None:
    assert core.admit(record) == expected


@pytest.mark.parametrize(("wait", "cause", "rand", "expected"), [
    (0.0, "", 0.5, core.GO),
    (0.3, "rate", 0.5, core.Wait(0.3)),
    (1.0, "rate", 0.5, core.Wait(1.0)),
    (4.0, "rate", 0.5, core.Defer(4.5, "rate")),
    (0.3, "breaker", 0.0, core.Defer(0.3, "breaker")),
    (0.3, "breaker", 1.0, core.Defer(0.6, "breaker")),
    (20.0, "breaker", 1.0, core.Defer(21.0, "breaker")),
], ids=["go", "short-rate-wait-sleeps", "rate-wait-at-the-limit-sleeps", "long-rate-wait-defers",
        "open-circuit-defers", "spread-by-the-wait-when-short", "spread-by-a-second-at-most"])
def test_gate(wait: float, cause: Any, rand: float, expected: object) -> None:
    assert core.gate(wait, cause, max_wait_in_process=1.0, rand=rand) == expected


def test_claim_of_a_new_send_starts_a_record() -> None:
    decision = core.claim(_req(), None, NOW)
    assert isinstance(decision, core.Claim) and decision.expect == 0
    assert decision.record == LedgerRecord(id="s-1", state="sending", at=NOW, org="acme", receiver="team",
                                           integration="webhook[0]", group_key="{}:{}", fingerprints=["fp1"],
                                           first_at=NOW, idempotency_key="s-1", flush_seq=3)


@pytest.mark.parametrize(("found", "expected"), [
    ((7, _record(attempts=2, spent=3.5)), core.Claim(_record(attempts=2, spent=3.5, at=NOW), 7)),
    ((7, _record(giving_up=True, attempts=4)), core.Claim(_record(giving_up=True, attempts=4, at=NOW), 7)),
    ((7, _record(state="sent")), core.Skip("already_done")),
    ((7, _record(state="fallback")), core.Skip("already_done")),
], ids=["resume-keeps-attempts-and-budget", "resume-a-hand-off", "sent", "handed-over"])
def test_claim_of_a_redelivered_send(found: tuple[int, LedgerRecord], expected: object) -> None:
    assert core.claim(_req(), found, NOW) == expected


NEW = core.Claim(_record(at=NOW), 0)
RESUMED = core.Claim(_record(at=NOW), 7)


@pytest.mark.parametrize(("lost", "latest", "expected"), [
    (NEW, None, core.Defer(core.CLAIM_LOST_NEW, "claim")),
    (NEW, (9, _record(attempts=1)), core.Claim(_record(attempts=1, at=NOW), 9)),
    (NEW, (9, _record(state="sent")), core.Skip("already_done")),
    (RESUMED, (9, _record(attempts=1)), core.Defer(core.CLAIM_LOST_RESUME, "claim")),
    (RESUMED, (9, _record(state="failed")), core.Skip("already_done")),
    (RESUMED, None, core.Defer(core.CLAIM_LOST_RESUME, "claim")),
], ids=["new-lost-to-an-unreadable-record", "new-lost-claims-the-newer-once", "new-lost-to-a-final-record",
        "resumed-lost-to-another-worker", "resumed-lost-to-a-final-record", "resumed-lost-and-gone"])
def test_claim_lost(lost: core.Claim, latest: tuple[int, LedgerRecord] | None, expected: object) -> None:
    assert core.claim_lost(_req(), lost, latest, NOW) == expected


@pytest.mark.parametrize(("record", "expected"), [
    (_record(), None),
    (_record(giving_up=True, permanent=True, reason="clientError", last_error="400"),
     Outcome(Verdict(ok=False, retryable=False, reason="clientError"), "400")),
    (_record(giving_up=True, reason="serverError", last_error="503"),
     Outcome(Verdict(ok=False, retryable=True, reason="serverError"), "503")),
], ids=["send", "finish-a-permanent-hand-off", "finish-an-exhausted-hand-off"])
def test_resume_give_up(record: LedgerRecord, expected: Outcome | None) -> None:
    assert core.resume_give_up(record) == expected


# --------------------------------------------------------------------------- after an attempt


@pytest.mark.parametrize(("record", "outcome", "rand", "expected"), [
    (_record(), OK, 0.5, core.Sent(_record(state="sent", attempts=1, spent=0.25, at=NOW, duration=0.25))),
    (_record(attempts=2, spent=5.0), OK, 0.5,
     core.Sent(_record(state="sent", attempts=3, spent=5.25, at=NOW, duration=0.25))),
    (_record(), RETRYABLE, 0.5,
     core.Retry(_record(attempts=1, spent=0.75, last_error=RETRYABLE.error, reason="serverError", at=NOW), 0.5)),
    (_record(attempts=2, spent=5.0), RETRYABLE, 1.0,
     core.Retry(_record(attempts=3, spent=9.25, last_error=RETRYABLE.error, reason="serverError", at=NOW), 4.0)),
    (_record(), LIMITED, 0.5,
     core.Retry(_record(attempts=1, spent=12.25, last_error=LIMITED.error, reason="rateLimited", at=NOW), 12.0)),
    (_record(), REFUSED, 0.5,
     core.GiveUp(_record(attempts=1, spent=0.25, last_error=REFUSED.error, reason="clientError", at=NOW,
                         giving_up=True, permanent=True))),
    (_record(attempts=3, spent=5.0), RETRYABLE, 0.5,
     core.GiveUp(_record(attempts=4, spent=5.25, last_error=RETRYABLE.error, reason="serverError", at=NOW,
                         giving_up=True))),
    (_record(attempts=1, spent=50.0), LIMITED, 0.5,
     core.GiveUp(_record(attempts=2, spent=50.25, last_error=LIMITED.error, reason="rateLimited", at=NOW,
                         giving_up=True))),
], ids=["sent", "sent-after-retries", "retry-backoff", "retry-backoff-grows", "retry-after-header", "permanent",
        "out-of-attempts", "retry-after-past-the-budget"])
def test_after_attempt(record: LedgerRecord, outcome: Outcome, rand: float, expected: object) -> None:
    assert core.after_attempt(record, outcome, BUDGET, now=NOW, duration=0.25, rand=rand) == expected


@pytest.mark.parametrize(("outcome", "failed"), [
    (OK, False), (REFUSED, False), (RETRYABLE, True), (LIMITED, True), (permanent("bad URL"), False),
], ids=["success", "permanent-refusal-is-about-the-request", "server-error", "rate-limited", "config-error"])
def test_endpoint_failed(outcome: Outcome, failed: bool) -> None:
    assert core.endpoint_failed(outcome) is failed


def test_cut_attempt_counts_the_attempt_and_keeps_the_send() -> None:
    cut, record = core.cut_attempt(_record(attempts=1, spent=2.0), NOW)
    assert not cut.ok and not cut.verdict.retryable and cut.verdict.reason == "contextCanceled"
    assert record == _record(attempts=2, spent=2.0, last_error=cut.error, reason="contextCanceled", at=NOW)


def test_sent_record_is_its_attempts_log_entry() -> None:
    """A success writes no log entry of its own: its ``sent`` record, read back through
    ``records.sent_entry``, is the entry ``attempt_record`` would have written."""
    claimed = core.claim(_req(), None, NOW - 1)
    assert isinstance(claimed, core.Claim)
    ok = Outcome(OK.verdict, "", 202)
    sent = core.after_attempt(claimed.record, ok, BUDGET, now=NOW, duration=0.5, rand=0.5, template_errors=["title"])
    assert isinstance(sent, core.Sent)
    assert sent_entry(sent.record) == core.attempt_record(_req(), claimed.record, 1, ok, NOW, 0.5, ["title"])


def test_attempt_record() -> None:
    entry = core.attempt_record(_req(), _record(), 2, RETRYABLE, NOW, 0.5, ["title"])
    assert (entry.status, entry.attempt, entry.status_code, entry.reason, entry.flush_seq, entry.template_errors) == \
        ("failed", 2, 503, "serverError", 3, ["title"])
    assert core.attempt_record(_req(), _record(), 1, OK, NOW, 0.5).status == "sent"


# --------------------------------------------------------------------------- giving up


@pytest.mark.parametrize(("outcome", "fallback", "targets", "state", "cause", "sends"), [
    (RETRYABLE, "", [], "failed", "exhausted", []),
    (REFUSED, "", [], "failed", "permanent", []),
    (RETRYABLE, "backup", [], "failed", "exhausted", []),
    (RETRYABLE, "backup", [("backup", "email", 0), ("backup", "slack", 1)], "fallback", "exhausted",
     ["s-1/fallback/backup/email/0", "s-1/fallback/backup/slack/1"]),
], ids=["exhausted-no-fallback", "permanent-no-fallback", "fallback-without-integrations", "handed-to-fallback"])
def test_give_up(outcome: Outcome, fallback: str, targets: list[core.SenderKey], state: str, cause: str,
                 sends: list[str]) -> None:
    record = _record(attempts=4, giving_up=True)
    plan = core.give_up(_req(), record, outcome, fallback=fallback, targets=targets, now=NOW)
    assert [r.id for r in plan.requests] == sends
    assert [(r.receiver, r.integration.kind, r.integration.index) for r in plan.requests] == targets
    assert (plan.record.state, plan.record.at, plan.cause) == (state, NOW, cause)
    assert plan.record.fallback == plan.entry.fallback == (fallback if sends else "")
    assert plan.entry.status == "gave_up" and plan.entry.attempt == 4 and plan.entry.error == plan.why
    assert plan.reason.startswith("team/webhook[0]: gave up after 4 attempt(s)")
    assert ("handed to fallback receiver" in plan.reason) is bool(sends)


def test_fallback_request_keeps_the_notification() -> None:
    req = _req()
    fb = core.fallback_request(req, "backup", "email", 2)
    assert (fb.id, fb.receiver, fb.integration) == ("s-1/fallback/backup/email/2", "backup",
                                                    Integration(kind="email", index=2))
    assert msgspec.structs.replace(fb, id=req.id, receiver=req.receiver, integration=req.integration) == req


# --------------------------------------------------------------------------- properties

_outcomes = st.one_of(
    st.just(OK), st.just(REFUSED), st.just(RETRYABLE),
    st.builds(lambda after: Outcome(LIMITED.verdict, LIMITED.error, 429, after), st.floats(0, 1e6)))
_records = st.builds(lambda attempts, spent, state: _record(attempts=attempts, spent=spent, state=state),
                     st.integers(0, 10), st.floats(0, 100), st.sampled_from(["sending", "sent", "failed", "fallback"]))
_budgets = st.builds(RetryBudget, seconds=st.floats(0.1, 1000), max_attempts=st.integers(1, 30),
                     backoff_base=st.floats(0, 10), backoff_cap=st.floats(0, 60), max_retry_after=st.floats(0, 300))


@given(_records.filter(lambda r: r.state == "sending"), _outcomes, _budgets, st.floats(0, 30), st.floats(0, 1))
def test_a_retry_stays_within_the_budget(record: LedgerRecord, outcome: Outcome, budget: RetryBudget,
                                         duration: float, rand: float) -> None:
    decision = core.after_attempt(record, outcome, budget, now=NOW, duration=duration, rand=rand)
    assert decision.record.attempts == record.attempts + 1
    if isinstance(decision, core.Retry):
        assert 0 <= decision.delay <= max(budget.backoff_cap, budget.max_retry_after)
        assert decision.record.spent < budget.seconds  # the wait is counted, and ends inside the budget
        assert decision.record.attempts < budget.max_attempts
        assert decision.record.state == "sending" and not decision.record.giving_up
    elif isinstance(decision, core.Sent):
        assert outcome.ok and decision.record.state == "sent"
    else:
        assert not outcome.ok and decision.record.giving_up
        assert decision.record.permanent is not outcome.verdict.retryable


@given(st.floats(0, 1e4), st.sampled_from(["", "breaker", "rate"]), st.floats(0, 60), st.floats(0, 1))
def test_a_gate_never_sleeps_longer_than_allowed(wait: float, cause: Any, max_wait: float, rand: float) -> None:
    decision = core.gate(wait, cause, max_wait_in_process=max_wait, rand=rand)
    if isinstance(decision, core.Wait):
        assert 0 < decision.seconds <= max_wait and cause != "breaker"
    elif isinstance(decision, core.Defer):
        assert wait <= decision.delay <= wait + 1.0
    else:
        assert wait <= 0


@given(_records.filter(lambda r: r.state in FINAL_STATES), st.integers(1, 1 << 40), st.booleans(),
       _records, st.integers(1, 1 << 40))
def test_a_final_record_is_never_sent_again(final: LedgerRecord, seq: int, new: bool, other: LedgerRecord,
                                            other_seq: int) -> None:
    req = _req()
    assert core.admit(final) == core.Skip("already_done")
    assert core.claim(req, (seq, final), NOW) == core.Skip("already_done")
    # a claim that lost to a final record does not write over it
    lost = core.claim(req, None if new else (other_seq, msgspec.structs.replace(other, state="sending")), NOW)
    assert isinstance(lost, core.Claim)
    assert core.claim_lost(req, lost, (seq, final), NOW) == core.Skip("already_done")


@given(st.lists(st.tuples(st.one_of(st.none(), _records), st.integers(1, 100)), max_size=5))
def test_claiming_ends_after_two_writes_at_most(reads: list[tuple[LedgerRecord | None, int]]) -> None:
    """A worker whose claims keep losing writes at most twice, then defers or skips."""
    req = _req()
    decision: object = core.claim(req, None, NOW)
    for i, (record, seq) in enumerate(reads):
        if not isinstance(decision, core.Claim):
            break
        decision = core.claim_lost(req, decision, None if record is None else (seq, record), NOW)
        if i >= 1:
            assert not isinstance(decision, core.Claim)
        if isinstance(decision, core.Claim):
            assert decision.record.state == "sending" and decision.expect == seq
