"""``POST /api/v2/alerts`` bodies (pipeline.application.api.push): go-swagger's three passes and their answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import PushedAlert, PushedAlerts, encode
from pipeline.application.api.push import PushError, is_request_uri, parse_push, parse_time, split_push
from pipeline.application.config.limits import LimitsConfig


def push(body: Any, org: str = "acme") -> tuple[list[Any], list[str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_push(raw, request_org=org, now=1000.0, request_id="r1")


@pytest.mark.parametrize("body,code,message", [
    (b"", 602, "alerts in body is required"),
    (b"  \n", 602, "alerts in body is required"),
    (b"[{", 400, "parsing alerts body from \"\" failed"),
    ({"labels": {"a": "b"}}, 400, "alerts in body must be of type array"),
    ([None], 400, "alerts.0 in body must be of type object"),
    ([{"labels": {"a": 1}}], 400, "alerts.0.labels in body must be of type object with string values"),
    ([{"labels": ["a"]}], 400, "alerts.0.labels in body must be of type object"),
    ([{"labels": {"a": "b"}, "annotations": {"s": None}}], 400, "alerts.0.annotations"),
    ([{"labels": {"a": "b"}, "startsAt": "yesterday"}], 400, "alerts.0.startsAt in body must be of type date-time"),
    ([{"labels": {"a": "b"}, "endsAt": 5}], 400, "alerts.0.endsAt in body must be of type date-time"),
    ([{"labels": {"a": "b"}, "generatorURL": 5}], 400, "alerts.0.generatorURL in body must be of type string"),
    ([{"labels": {"a": "b"}}, {}], 602, "1.labels in body is required"),
    ([{"labels": {"a": "b"}}, {"labels": None}], 602, "1.labels in body is required"),
    ([{"labels": {"a": "b"}, "generatorURL": "not a url"}], 601,
     '0.generatorURL in body must be of type uri: "not a url"'),
    # every alert is decoded before any is validated: a type error anywhere wins over a missing field
    ([{}, {"labels": {"a": "b"}, "startsAt": "x"}], 400, "alerts.1.startsAt"),
    # within one alert, the URL is checked before the labels (go-swagger's order)
    ([{"generatorURL": "x"}], 601, "0.generatorURL"),
], ids=["empty", "blank", "not-json", "not-array", "null-alert", "label-not-string", "labels-not-object",
        "annotation-not-string", "bad-time", "time-not-string", "url-not-string", "no-labels", "null-labels",
        "url-not-uri", "decoding-first", "url-before-labels"])
def test_requests_refused_as_a_whole(body: Any, code: int, message: str) -> None:
    with pytest.raises(PushError) as info:
        push(body)
    assert info.value.code == code and message in str(info.value)


@pytest.mark.parametrize("alerts,errors,accepted", [
    ([{"labels": {"a": "b"}}, {"labels": {}}], ["at least one label pair required"], [{"a": "b"}]),
    ([{"labels": {"a": ""}}], ["at least one label pair required"], []),  # empty values are absent labels
    ([{"labels": {"": "x"}}], ['invalid label set: invalid name ""'], []),
    ([{"labels": {"a": "b"}, "annotations": {"": "x"}}], ['invalid annotations: invalid name ""'], []),
    ([{"labels": {"a": "b"}, "startsAt": "2024-01-01T00:10:00Z", "endsAt": "2024-01-01T00:00:00Z"}],
     ["start time must be before end time"], []),
    ([{"labels": {"a": "b", "c": ""}}, {"labels": {"d": "e"}}], [], [{"a": "b"}, {"d": "e"}]),
], ids=["one-of-two-refused", "only-empty-values", "empty-name", "empty-annotation-name", "backwards", "all-good"])
def test_invalid_alerts_are_dropped_and_the_others_accepted(alerts: list[Any], errors: list[str],
                                                            accepted: list[dict[str, str]]) -> None:
    pushes, got = push(alerts)
    assert got == errors
    assert [a.labels for p in pushes for a in p.alerts] == accepted


def test_alerts_are_grouped_by_their_org_label_else_the_requests_org() -> None:
    pushes, errors = push([{"labels": {"a": "1", "org_id": "beta"}}, {"labels": {"a": "2"}},
                           {"labels": {"a": "3", "org_id": "beta"}, "annotations": {"s": "x"},
                            "generatorURL": "/graph", "startsAt": "2024-01-01T00:00:00Z"}])
    assert errors == []
    by_org = {p.org: p for p in pushes}
    assert sorted(by_org) == ["acme", "beta"]
    assert all(p.request_id == "r1" and p.received_at == 1000.0 for p in pushes)
    assert by_org["acme"].alerts == [PushedAlert(labels={"a": "2"})]
    assert by_org["beta"].alerts[1] == PushedAlert(labels={"a": "3", "org_id": "beta"}, annotations={"s": "x"},
                                                   generator_url="/graph", starts_at=1704067200.0)


@pytest.mark.parametrize("value,expected", [
    (None, None),
    ("", None),
    ("0001-01-01T00:00:00Z", None),  # Go's zero time: unset
    ("2024-01-01T00:00:00Z", 1704067200.0),
    ("2024-01-01T01:00:00+01:00", 1704067200.0),
    ("2024-01-01T00:00:00.250Z", 1704067200.25),
    ("2024-01-01T00:00:00", 1704067200.0),  # no offset: UTC, whatever the machine's zone
    ("2024-01-01 00:00:00", 1704067200.0),
    ("2024-01-01T01:00+0100", 1704067200.0),
], ids=["null", "empty", "go-zero", "utc", "offset", "fraction", "local-time-is-utc", "space", "no-colon"])
def test_parse_time(value: Any, expected: float | None) -> None:
    assert parse_time(value, "startsAt") == expected


@pytest.mark.parametrize("value", ["soon", 17, "9999-12-31T23:00:00-05:00", "2024-13-01T00:00:00Z"],
                         ids=["words", "number", "after-year-9999-in-utc", "month-13"])
def test_parse_time_refuses(value: Any) -> None:
    with pytest.raises(PushError) as info:
        parse_time(value, "endsAt")
    assert info.value.code == 400 and str(info.value).startswith("endsAt in body must be of type date-time")


@pytest.mark.parametrize("text,ok", [
    ("http://prometheus:9090/graph?g0.expr=up", True),
    ("https://h/x#frag", True),
    ("/graph?x=1", True),
    ("mailto:ops@example.com", True),
    ("urn:isbn:123", True),
    ("graph", False),  # relative: not a request URI
    ("", False),
    ("http://bad host/x", False),
    ("http://h/%zz", False),
    ("http://h/\x01", False),
    ("1http://h", False),
], ids=["http", "fragment", "absolute-path", "mailto", "urn", "relative", "empty", "space-in-host",
        "bad-escape", "control", "bad-scheme"])
def test_is_request_uri(text: str, ok: bool) -> None:
    assert is_request_uri(text) is ok


# --------------------------------------------------------------------------- limits (issue #27)

_ANY = {"alertname": "A"}


@pytest.mark.parametrize("labels,annotations,named", [
    ({**_ANY, "org_id": "o" * 4000}, {}, "invalid org_id label: organisation name is longer than 150 characters"),
    ({**_ANY, "org_id": "*"}, {}, 'invalid org_id label: "*" is not an organisation'),
    ({**_ANY, "org_id": "A|B"}, {}, "invalid org_id label: organisation name contains '|'"),
    ({**_ANY, "org_id": "a\x01"}, {}, "invalid org_id label: organisation name contains a control character"),
    ({**_ANY, "v": "x" * 16385}, {}, "limits.max_label_value_length (16384)"),
    ({**_ANY, "n" * 1025: "x"}, {}, "limits.max_label_name_length (1024)"),
    ({f"l{i}": "x" for i in range(129)}, {}, "limits.max_labels_per_alert (128)"),
    (_ANY, {"d": "é" * 16384}, "annotations are 32769 bytes, more than limits.max_annotation_bytes (32768)"),
    ({**_ANY, **{f"l{i}": "x" * 9000 for i in range(8)}}, {}, "limits.max_alert_bytes (65536)"),
])
def test_an_alert_over_a_limit_is_dropped_with_an_error_naming_it(labels: dict, annotations: dict,
                                                                   named: str) -> None:
    pushes, errors = push([{"labels": labels, "annotations": annotations}, {"labels": {"alertname": "Good"}}])
    assert [a.labels for p in pushes for a in p.alerts] == [{"alertname": "Good"}]  # the others still count
    assert len(errors) == 1 and named in errors[0] and len(errors[0]) < 300  # never echoes the value


def test_alerts_at_the_limits_are_taken() -> None:
    labels = {**{f"l{i}": "x" for i in range(126)}, "v": "y" * 16384, "n" * 1024: "z"}
    pushes, errors = push([{"labels": labels, "annotations": {"d": "x" * 32767}}])
    assert errors == [] and pushes[0].alerts[0].labels == labels


def test_limits_are_configurable_and_zero_is_unlimited() -> None:
    body = json.dumps([{"labels": {"a": "x" * 20_000, "b": "2", "c": "3"}}, {"labels": {"a": "1"}}]).encode()
    tight = LimitsConfig(max_labels_per_alert=2, max_alerts_per_push=1)
    with pytest.raises(PushError, match=r"request holds 2 alerts, more than limits.max_alerts_per_push \(1\)"):
        parse_push(body, request_org="acme", now=0.0, limits=tight)
    none = LimitsConfig(max_label_value_length=0, max_alert_bytes=0)
    pushes, errors = parse_push(body, request_org="acme", now=0.0, limits=none)
    assert errors == [] and len(pushes[0].alerts) == 2
    _, errors = parse_push(body, request_org="acme", now=0.0,
                           limits=LimitsConfig(max_labels_per_alert=2, max_label_value_length=0, max_alert_bytes=0))
    assert errors == ["alert has 3 labels, more than limits.max_labels_per_alert (2)"]


def _alerts(*sizes: int) -> PushedAlerts:
    return PushedAlerts(request_id="r", org="o", received_at=0.0,
                        alerts=[PushedAlert(labels={"alertname": f"a{i}", "v": "x" * n}) for i, n in enumerate(sizes)])


@pytest.mark.parametrize(("sizes", "max_alerts", "max_bytes", "expect"), [
    ((10, 10, 10), 200, 10_000, [3]),
    ((10, 10, 10), 2, 10_000, [2, 1]),
    ((1000, 1000, 1000), 200, 2_100, [2, 1]),
    ((5000, 10), 200, 1_000, [1, 1]),  # an alert over the budget still goes, alone
    ((), 200, 1_000, [0]),
], ids=["fits", "by-count", "by-bytes", "big-alone", "empty"])
def test_split_push(sizes: tuple[int, ...], max_alerts: int, max_bytes: int, expect: list[int]) -> None:
    push = _alerts(*sizes)
    parts = split_push(push, max_alerts=max_alerts, max_bytes=max_bytes)
    assert [len(p.alerts) for p in parts] == expect
    assert [a for p in parts for a in p.alerts] == push.alerts  # in order, none lost
    assert all(p.org == "o" and p.request_id == "r" for p in parts)
    for p in parts:
        if len(p.alerts) > 1:
            assert sum(len(encode(a)) + 1 for a in p.alerts) <= max_bytes
