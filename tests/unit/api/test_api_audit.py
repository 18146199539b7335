"""Audit records (pipeline.application.api.audit)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.audit import AuditRecord, audit_record, decode_audit_record
from pipeline.application.config.identity import Identity

ALICE = Identity("alice", frozenset({"acme"}), "responder", method="jwt")


def test_record_carries_who_what_where_when() -> None:
    record = audit_record(
        ALICE,
        org="acme",
        action="silence.create",
        target="s-1",
        now=1700.5,
        request_id="r-1",
        details={"matchers": '{alertname="A"}', "count": 2},
    )
    assert record == AuditRecord(
        at=1700.5,
        request_id="r-1",
        subject="alice",
        method="jwt",
        role="responder",
        org="acme",
        action="silence.create",
        target="s-1",
        outcome="ok",
        details={"matchers": '{alertname="A"}', "count": "2"},
    )


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [({"action": ""}, "action"), ({"org": ""}, "organisation"), ({"outcome": "meh"}, "unknown outcome")],
    ids=["no-action", "no-org", "bad-outcome"],
)
def test_record_refuses_incomplete_facts(kwargs: dict[str, str], text: str) -> None:
    base = {"org": "acme", "action": "alert.ack", "now": 1.0, "request_id": "r"}
    with pytest.raises(ValueError, match=text):
        audit_record(ALICE, **{**base, **kwargs})  # type: ignore[arg-type]


@given(
    details=st.dictionaries(
        st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.booleans()), max_size=5
    ),
    outcome=st.sampled_from(["ok", "denied", "failed"]),
    now=st.floats(0, 4e9),
)
def test_records_round_trip_through_json(details: dict[str, object], outcome: str, now: float) -> None:
    record = audit_record(
        ALICE, org="acme", action="alerts.push", now=now, request_id="r", outcome=outcome, details=details
    )
    assert decode_audit_record(msgspec.json.encode(record)) == record
    assert set(record.details) == {str(k) for k in details}
