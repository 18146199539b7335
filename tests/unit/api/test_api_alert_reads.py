"""Reads of alerts (api.query, api.unprocessed, stages.rules.views): query booleans as go-swagger binds
them, Alertmanager's exclusion filter, and the alerts of pushes the rules stage has not applied."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from contracts import PushedAlert, PushedAlerts
from contracts.labels import fingerprint
from pipeline.application.api.convert import alert_status
from pipeline.application.api.query import query_bool, suppression_kept
from pipeline.application.api.unprocessed import Backlog
from stages.rules.views import unprocessed_alerts


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": []})


@pytest.mark.parametrize("query,default,expected", [
    ("", True, True),
    ("", False, False),
    ("active=", False, False),  # empty: the default
    ("active=true", False, True),
    ("active=TRUE", False, True),
    ("active=1", False, True),
    ("active=yes", False, True),
    ("active=false", True, False),
    ("active=0", True, False),
    ("active=nonsense", True, False),  # swag.ConvertBool: anything else is false, never an error
    ("active=false&active=true", False, True),  # the last value counts
    ("other=false", True, True),
], ids=["missing", "missing-false-default", "empty", "true", "upper", "one", "yes", "false", "zero", "nonsense",
        "last-wins", "other-name"])
def test_query_bool(query: str, default: bool, expected: bool) -> None:
    assert query_bool(request(query), "active", default) is expected


ACTIVE = alert_status()
SILENCED = alert_status("suppressed", ["s"])
INHIBITED = alert_status("suppressed", inhibited_by=["fp"])
BOTH = alert_status("suppressed", ["s"], ["fp"])
MUTED = alert_status("suppressed", muted_by=["night"])
UNPROCESSED = alert_status("unprocessed")


@pytest.mark.parametrize("status,flags,kept", [
    (ACTIVE, {}, True),
    (ACTIVE, {"active": False}, False),
    (ACTIVE, {"silenced": False, "inhibited": False}, True),
    (SILENCED, {"active": False}, True),
    (SILENCED, {"silenced": False}, False),
    (INHIBITED, {"silenced": False}, True),
    (INHIBITED, {"inhibited": False}, False),
    (BOTH, {"inhibited": False}, False),  # excluded by either flag
    (BOTH, {"silenced": False}, False),
    (MUTED, {"active": False, "silenced": False, "inhibited": False}, True),  # muting is the groups' muted flag
    (UNPROCESSED, {"active": False, "silenced": False, "inhibited": False}, True),
    (UNPROCESSED, {"unprocessed": False}, False),
    (ACTIVE, {"unprocessed": False}, True),
], ids=["active", "active-excluded", "active-other-flags", "silenced-not-active", "silenced-excluded",
        "inhibited-kept-by-silenced-false", "inhibited-excluded", "both-by-inhibited", "both-by-silenced",
        "muted", "unprocessed", "unprocessed-excluded", "active-not-unprocessed"])
def test_alertmanagers_filter_excludes_what_a_false_flag_names(status: dict[str, Any], flags: dict[str, bool],
                                                              kept: bool) -> None:
    args = {"active": True, "silenced": True, "inhibited": True} | flags
    assert suppression_kept(status, **args) is kept


A = {"alertname": "A"}
B = {"alertname": "B"}


def pushed(at: float, *alerts: PushedAlert, org: str = "acme") -> tuple[float, PushedAlerts]:
    return at, PushedAlerts(request_id=f"r{at}", org=org, received_at=at, alerts=list(alerts))


@pytest.mark.parametrize("pushes,processed,now,expected", [
    # times filled in as the rules stage will: start = stream time, end = start + resolve_timeout
    ([pushed(100, PushedAlert(labels=A))], set(), 150, [(A, 100, 400, 100)]),
    # a known firing alert keeps its processed version
    ([pushed(100, PushedAlert(labels=A), PushedAlert(labels=B))], {fingerprint(A)}, 150, [(B, 100, 400, 100)]),
    # resolved by the time of the read
    ([pushed(100, PushedAlert(labels=A, ends_at=120))], set(), 150, []),
    # an explicit start and end
    ([pushed(100, PushedAlert(labels=A, starts_at=50, ends_at=900))], set(), 150, [(A, 50, 900, 100)]),
    # two pushes of one alert merge as Alertmanager merges: earliest start, latest update
    ([pushed(100, PushedAlert(labels=A)), pushed(200, PushedAlert(labels=A))], set(), 250, [(A, 100, 500, 200)]),
    # another organisation's push on the same partition
    ([pushed(100, PushedAlert(labels=A), org="beta")], set(), 150, []),
    # an alert the rules stage will refuse
    ([pushed(100, PushedAlert(labels={}))], set(), 150, []),
], ids=["fills-times", "known-alert", "resolved", "explicit-times", "merged", "other-org", "invalid"])
def test_unprocessed_alerts(pushes: list[tuple[float, PushedAlerts]], processed: set[str], now: float,
                            expected: list[tuple[dict[str, str], float, float, float]]) -> None:
    got = unprocessed_alerts(pushes, "acme", processed, 300.0, now)
    assert [(a.labels, a.starts_at, a.ends_at, a.updated_at) for a in got] == expected
    assert all(a.fingerprint == fingerprint(a.labels) and a.org == "acme" for a in got)


def test_unprocessed_alerts_are_ordered_by_fingerprint() -> None:
    labels = [{"alertname": f"A{i}"} for i in range(20)]
    got = unprocessed_alerts([pushed(100, *(PushedAlert(labels=x) for x in labels))], "acme", set(), 300.0, 150)
    assert [a.fingerprint for a in got] == sorted(fingerprint(x) for x in labels)


@pytest.mark.parametrize("consumed,last,empty", [(0, 0, True), (5, 5, True), (6, 5, True), (4, 5, False)],
                         ids=["nothing", "caught-up", "ahead", "behind"])
def test_backlog_empty(consumed: int, last: int, empty: bool) -> None:
    assert Backlog(0, consumed, last).empty is empty
