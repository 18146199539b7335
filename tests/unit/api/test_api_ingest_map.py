"""Pure mapping of ingested payloads (pipeline.application.api.ingest_map): field paths, Go-template
expressions, times, Grafana's webhook payload and generic mappings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.ingest_map import (
    OPEN_END,
    PayloadError,
    Unmappable,
    am_alert,
    evaluate,
    expression_problem,
    get_path,
    map_generic,
    map_grafana,
    parse_path,
    to_time,
)
from pipeline.application.api.push import parse_push
from pipeline.application.config.ingest import IngestMapping

NOW = 1_800_000_000.0


def test_field_paths() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": "two"}]}, "x.y": True}
    assert parse_path("$.a.b[1].c") == ["a", "b", 1, "c"]
    assert get_path(doc, "a.b[1].c") == "two"
    assert get_path(doc, "$.a.b[0].c") == 1
    assert get_path(doc, '["x.y"]') == True  # noqa: E712 (the value itself)
    assert get_path(doc, "a.b[5].c") is None and get_path(doc, "a.z") is None and get_path(doc, "a.b.c") is None
    for bad in ("a[", "a..b", "a[x]", "[1"):
        with pytest.raises(ValueError, match="invalid"):
            parse_path(bad)


@given(st.lists(st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
                          st.integers(0, 20)), min_size=1, max_size=6))
def test_a_path_finds_what_it_names(steps: list[str | int]) -> None:
    if isinstance(steps[0], int):
        steps = ["root", *steps]
    doc: Any = "leaf"
    for step in reversed(steps):
        doc = [None] * step + [doc] if isinstance(step, int) else {step: doc}
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    assert parse_path(text) == steps and get_path(doc, text) == "leaf"


def test_expressions() -> None:
    item = {"level": "CRIT", "n": 3, "f": 1.5, "ok": False, "tags": ["a", "b"], "obj": {"k": "v"}}
    assert evaluate("{{ .level | toLower }}", item) == "crit"
    assert evaluate("{{ index .tags 1 }}-{{ .n }}", item) == "b-3"
    assert evaluate("{{ .missing }}", item) == ""  # Go's "<no value>" is nothing
    assert [evaluate(p, item) for p in ("n", "f", "ok", "tags", "obj", "missing")] == \
        ["3", "1.5", "false", '["a","b"]', '{"k":"v"}', ""]
    with pytest.raises(Unmappable, match="toLower"):
        evaluate("{{ .missing | toLower }}", item)
    assert expression_problem("{{ .a ") is not None and expression_problem("a.b[0]") is None


def test_times() -> None:
    assert to_time("2026-12-07T01:00:00Z", "t") == to_time("2026-12-07T01:00:00.000+0000", "t")
    assert to_time("1765069200", "t") == to_time("1765069200000", "t") == 1765069200.0  # seconds or milliseconds
    assert to_time("", "t") is None and to_time("0001-01-01T00:00:00Z", "t") is None
    with pytest.raises(Unmappable, match="neither RFC 3339"):
        to_time("yesterday", "t")
    with pytest.raises(Unmappable, match="out of range"):
        to_time("-5", "t")


def test_firing_alerts_end_with_the_ttl_or_never_and_resolved_ones_not_after_now() -> None:
    fire = am_alert({"alertname": "A"}, {}, firing=True, now=NOW, firing_ttl=0, starts_at=NOW - 60)
    (push,), errors = parse_push(__import__("msgspec").json.encode([fire]), request_org="o", now=NOW)
    assert not errors and push.alerts[0].ends_at == pytest.approx(OPEN_END, abs=1)
    assert push.alerts[0].starts_at == NOW - 60
    fire = am_alert({"alertname": "A"}, {}, firing=True, now=NOW, firing_ttl=600)
    assert fire["endsAt"] == "2027-01-15T08:10:00.000Z" and "startsAt" not in fire
    late = am_alert({"alertname": "A"}, {}, firing=False, now=NOW, firing_ttl=0, ends_at=NOW + 3600)
    assert late["endsAt"] == "2027-01-15T08:00:00.000Z"  # a resolve in the future would still fire


GRAFANA = {
    "receiver": "tocsin", "status": "firing", "orgId": 1, "version": "1",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "DiskFull"}, "annotations": {"summary": "full"},
         "startsAt": "2027-01-15T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://g/x",
         "fingerprint": "abc"},
        {"status": "resolved", "labels": {"alertname": "Other"}, "startsAt": "2027-01-15T07:00:00Z",
         "endsAt": "2027-01-15T07:30:00Z"},
        {"status": "pending", "labels": {"alertname": "Odd"}},
        "not an alert",
    ],
}


def test_grafana_payload() -> None:
    alerts, reasons = map_grafana(GRAFANA, now=NOW, firing_ttl=0)
    assert alerts == [
        {"labels": {"alertname": "DiskFull"}, "annotations": {"summary": "full"},
         "startsAt": "2027-01-15T07:00:00.000Z", "endsAt": "9999-12-31T23:59:59.000Z", "generatorURL": "http://g/x"},
        {"labels": {"alertname": "Other"}, "annotations": {}, "startsAt": "2027-01-15T07:00:00.000Z",
         "endsAt": "2027-01-15T07:30:00.000Z"},
    ]
    assert reasons == ["alerts[2]: status 'pending' is neither firing nor resolved", "alerts[3]: is not an object"]
    bad: Any
    for bad in ([], {"alerts": {}}, {"title": "x"}):
        with pytest.raises(PayloadError, match="Grafana"):
            map_grafana(bad, now=NOW, firing_ttl=0)


MAPPING = IngestMapping(alerts="data.items", alertname="{{ .kind }}Alert", labels={"host": "target.host"},
                        annotations={"summary": "text"}, status="state", firing=["open"], resolved=["done"],
                        fingerprint="id", fingerprint_label="incident", starts_at="at")


def test_generic_mapping() -> None:
    doc = {"data": {"items": [
        {"kind": "Disk", "target": {"host": "h1"}, "text": "t", "state": "OPEN", "id": 7, "at": "2027-01-15T07:00:00Z"},
        {"kind": "Disk", "target": {"host": "h1"}, "state": "done", "id": 8},
        {"kind": "Disk", "state": "weird", "id": 9},
        {"kind": "Disk", "state": "open"},
        {"kind": "Disk", "state": "open", "id": 10, "at": "noon"},
    ]}}
    alerts, reasons = map_generic(doc, MAPPING, now=NOW, firing_ttl=0)
    assert alerts[0] == {"labels": {"alertname": "DiskAlert", "host": "h1", "incident": "7"},
                         "annotations": {"summary": "t"}, "startsAt": "2027-01-15T07:00:00.000Z",
                         "endsAt": "9999-12-31T23:59:59.000Z"}
    assert alerts[1]["labels"]["incident"] == "8" and alerts[1]["endsAt"] == "2027-01-15T08:00:00.000Z"
    assert reasons == ["item 2: status 'weird' is not one of open, done", "item 3: fingerprint 'id' gives nothing",
                       "item 4: starts_at 'noon' is neither RFC 3339 nor Unix seconds"]
    assert map_generic({"data": {}}, MAPPING, now=NOW, firing_ttl=0) == ([], ["alerts 'data.items' is not a list "
                                                                              "in the payload"])
    whole = IngestMapping(alertname="name")
    assert map_generic({"name": "One"}, whole, now=NOW, firing_ttl=0)[0][0]["labels"] == {"alertname": "One"}
    assert len(map_generic([{"name": "A"}, {"name": "B"}], whole, now=NOW, firing_ttl=0)[0]) == 2
