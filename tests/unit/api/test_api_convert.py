"""Alertmanager's API v2 shapes (pipeline.application.api.convert): times, alerts, silences, statuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import Alert, Silence, SilenceMatcher
from pipeline.application.api.convert import ZERO_TIME, alert_status, gettable_alert, gettable_silence, rfc3339

GO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")  # strfmt.DateTime in UTC


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("t,expected", [
    (None, "0001-01-01T00:00:00.000Z"),
    (0.0, "1970-01-01T00:00:00.000Z"),
    (ts("2024-02-29T13:14:15.678901"), "2024-02-29T13:14:15.678Z"),  # milliseconds, truncated as Go does
    (ts("2024-02-29T13:14:15"), "2024-02-29T13:14:15.000Z"),  # always three digits
    (-1.5, "1969-12-31T23:59:58.500Z"),
    (1e13, "9999-12-31T23:59:59.999Z"),  # beyond year 9999: the last time RFC 3339 can write
    (-1e12, "0001-01-01T00:00:00.000Z"),
    (float("nan"), "0001-01-01T00:00:00.000Z"),
    (float("inf"), "0001-01-01T00:00:00.000Z"),
], ids=["none-is-go-zero", "epoch", "millis-truncated", "whole-second", "before-epoch", "too-late", "too-early",
        "nan", "inf"])
def test_rfc3339(t: float | None, expected: str) -> None:
    assert rfc3339(t) == expected


@given(st.floats(min_value=-6e10, max_value=2.5e11, allow_nan=False))
def test_rfc3339_is_go_strfmt_and_round_trips_to_the_millisecond(t: float) -> None:
    text = rfc3339(t)
    assert GO_DATETIME.fullmatch(text), text
    back = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    assert -1e-6 <= t - back < 0.0011  # truncated to the millisecond (after rounding to the microsecond)


def alert(**kw: Any) -> Alert:
    base: dict[str, Any] = {"fingerprint": "0123456789abcdef", "org": "acme", "labels": {"alertname": "Disk"},
                            "starts_at": ts("2024-01-01T00:00:00")}
    return Alert(**(base | kw))


ALERT_CASES: list[tuple[Alert, list[str], dict[str, Any] | None, dict[str, Any]]] = [
    (alert(), ["team"], None, {
        "labels": {"alertname": "Disk"}, "annotations": {}, "receivers": [{"name": "team"}],
        "fingerprint": "0123456789abcdef", "startsAt": "2024-01-01T00:00:00.000Z",
        "updatedAt": "2024-01-01T00:00:00.000Z",  # never updated: its start
        "endsAt": ZERO_TIME,  # firing with no known end
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}}),
    (alert(annotations={"summary": "s"}, ends_at=ts("2024-01-01T00:05:00"), generator_url="http://prom/g",
           updated_at=ts("2024-01-01T00:01:00")), [], alert_status("suppressed", ["s1"], ["fp"], ["night"]), {
        "labels": {"alertname": "Disk"}, "annotations": {"summary": "s"}, "receivers": [],
        "fingerprint": "0123456789abcdef", "startsAt": "2024-01-01T00:00:00.000Z",
        "updatedAt": "2024-01-01T00:01:00.000Z", "endsAt": "2024-01-01T00:05:00.000Z",
        "generatorURL": "http://prom/g",
        "status": {"state": "suppressed", "silencedBy": ["s1"], "inhibitedBy": ["fp"], "mutedBy": ["night"]}}),
    (alert(), ["db", "team"], alert_status("unprocessed"), {
        "labels": {"alertname": "Disk"}, "annotations": {}, "receivers": [{"name": "db"}, {"name": "team"}],
        "fingerprint": "0123456789abcdef", "startsAt": "2024-01-01T00:00:00.000Z",
        "updatedAt": "2024-01-01T00:00:00.000Z", "endsAt": ZERO_TIME,
        "status": {"state": "unprocessed", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}}),
]


@pytest.mark.parametrize("a,receivers,status,expected", ALERT_CASES,
                         ids=["defaults-no-generator-url", "every-field", "unprocessed-two-receivers"])
def test_gettable_alert(a: Alert, receivers: list[str], status: dict[str, Any] | None,
                        expected: dict[str, Any]) -> None:
    assert gettable_alert(a, receivers, status) == expected


def test_gettable_alert_does_not_share_the_alerts_dicts() -> None:
    a = alert(annotations={"x": "1"})
    out = gettable_alert(a, [])
    out["labels"]["y"] = "2"
    out["annotations"]["y"] = "2"
    assert a.labels == {"alertname": "Disk"} and a.annotations == {"x": "1"}


def silence(**kw: Any) -> Silence:
    base: dict[str, Any] = {
        "id": "5e3f4a2b-0000-4000-8000-000000000001", "org": "acme",
        "matchers": [SilenceMatcher(name="alertname", value="Disk", is_regex=False, is_equal=True),
                     SilenceMatcher(name="env", value="dev|test", is_regex=True, is_equal=False)],
        "starts_at": ts("2024-01-01T00:00:00"), "ends_at": ts("2024-01-01T02:00:00")}
    return Silence(**(base | kw))


@pytest.mark.parametrize("s,state,expected", [
    (silence(created_by="ops", comment="maintenance", updated_at=ts("2024-01-01T00:30:00")), "active", {
        "id": "5e3f4a2b-0000-4000-8000-000000000001", "status": {"state": "active"},
        "updatedAt": "2024-01-01T00:30:00.000Z", "comment": "maintenance", "createdBy": "ops",
        "startsAt": "2024-01-01T00:00:00.000Z", "endsAt": "2024-01-01T02:00:00.000Z",
        "matchers": [{"name": "alertname", "value": "Disk", "isRegex": False, "isEqual": True},
                     {"name": "env", "value": "dev|test", "isRegex": True, "isEqual": False}]}),
    (silence(), "expired", {  # no author or comment: empty strings, never missing; updatedAt falls back to start
        "id": "5e3f4a2b-0000-4000-8000-000000000001", "status": {"state": "expired"},
        "updatedAt": "2024-01-01T00:00:00.000Z", "comment": "", "createdBy": "",
        "startsAt": "2024-01-01T00:00:00.000Z", "endsAt": "2024-01-01T02:00:00.000Z",
        "matchers": [{"name": "alertname", "value": "Disk", "isRegex": False, "isEqual": True},
                     {"name": "env", "value": "dev|test", "isRegex": True, "isEqual": False}]}),
], ids=["every-field", "empty-author-and-comment"])
def test_gettable_silence(s: Silence, state: Any, expected: dict[str, Any]) -> None:
    assert gettable_silence(s, state) == expected


@pytest.mark.parametrize("args,expected", [
    ((), {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}),
    (("suppressed", ("a", "b"), (), ["t"]), {"state": "suppressed", "silencedBy": ["a", "b"], "inhibitedBy": [],
                                             "mutedBy": ["t"]}),
], ids=["default", "lists-from-any-sequence"])
def test_alert_status_always_has_its_three_lists(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    assert alert_status(*args) == expected


@pytest.mark.parametrize(("ends_at", "open_end", "shown"), [
    (None, ts("2024-01-01T00:10:00"), "2024-01-01T00:10:00.000Z"),  # an event alert: its open end
    (ts("2024-01-01T00:05:00"), ts("2024-01-01T00:10:00"), "2024-01-01T00:05:00.000Z"),  # its own end wins
    (None, None, ZERO_TIME),
], ids=["no-end-shows-open-end", "own-end-wins", "neither"])
def test_gettable_alert_end(ends_at: float | None, open_end: float | None, shown: str) -> None:
    assert gettable_alert(alert(ends_at=ends_at), [], open_end=open_end)["endsAt"] == shown
