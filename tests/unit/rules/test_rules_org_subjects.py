"""One organisation, one token, one partition, from the push to the reads (issue #26).

The rules stage's output subjects and the API's history and audit reads derive an
organisation's subject token in one place (``pipeline.foundation.runtime.subjects.token``);
the rules core once had a copy that disagreed for long text. And an alert is keyed under the
organisation its push message was published for (the API splits a request by ``org_id``
label first), so the partition the history read looks in is the one the rules stage wrote.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rules_fold import Fold, pa, push

from contracts.labels import fingerprint
from contracts.messages import AlertChange
from contracts.partition import partition_of
from pipeline.application.api.push import parse_push
from pipeline.foundation.runtime.subjects import token
from stages.rules.core import RulesCore, alert_subject

P = 16


@pytest.mark.parametrize("org", ["acme", "a\n", "tenant a", "ü" * 150, "x" * 2000, ""],
                         ids=["safe", "trailing-newline", "space", "long-unicode", "over-max-token", "empty"])
def test_the_rules_subject_of_an_org_is_the_reads_token(org: str) -> None:
    fp = "0123456789abcdef"
    assert alert_subject(org, fp) == f"{token(org)}.{fp}"


@given(st.text(max_size=3000))
def test_any_text_gets_the_one_token(org: str) -> None:
    assert alert_subject(org, "0123456789abcdef").rpartition(".")[0] == token(org)


@pytest.mark.parametrize("label_org", ["tenant-b", "tenant b", "é"], ids=["safe", "space", "unicode"])
def test_a_labelled_alert_lands_where_the_history_read_looks(label_org: str) -> None:
    """The API's push path and the rules core agree: the message goes to the label's
    organisation's partition and the alert's changes are on that organisation's subject."""
    labels = {"alertname": "X", "org_id": label_org}
    body = msgspec.json.encode([{"labels": labels}, {"labels": {"alertname": "Y"}}])
    pushes, errors = parse_push(body, request_org="home", now=1.0, request_id="r1")
    assert errors == []
    by_org = {p.org: p for p in pushes}
    assert set(by_org) == {label_org, "home"}
    for org, pushed in by_org.items():
        out = Fold(RulesCore()).step(pushed, 1.0)
        change = out[0].payload
        assert isinstance(change, AlertChange) and change.alert.org == org
        # where GET /api/tocsin/history reads: ALERTS.out(partition_of(org), token(org)).<fp>
        assert out[0].subject.startswith(token(org) + ".")
        assert partition_of(change.alert.org, P) == partition_of(pushed.org, P)


def test_a_push_is_never_split_by_the_core() -> None:
    """A producer that did not split by label still gets every alert under the push's org."""
    labelled = {"alertname": "X", "org_id": "elsewhere"}
    out = Fold(RulesCore()).step(push(pa(labelled), at=1.0, org="o1"), 1.0)
    assert out[0].subject == f"{token('o1')}.{fingerprint(labelled)}"
