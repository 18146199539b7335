"""The push body's one-pass decode (msgspec into typed alerts) answers exactly as the
field-by-field path that names go-swagger's errors: same pushes, same errors, same refusals."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.application.api import push as push_module
from pipeline.application.api.push import PushError, parse_push

_good_times = st.sampled_from(["2026-12-07T03:00:00Z", "2026-12-07T05:00:00+02:00", "2026-12-07T03:00:00"])
_odd_times = st.sampled_from(["", "0001-01-01T00:00:00Z", "soon", "9999-12-31T23:00:00-05:00"])
_times = st.integers(0, 2).flatmap(lambda n: _good_times if n else _odd_times)
_text = st.text(max_size=6)
_value: st.SearchStrategy[Any] = st.one_of(st.none(), _text, st.integers(), st.booleans(),
                                           st.dictionaries(_text, _text, max_size=3),
                                           st.dictionaries(_text, st.integers(), max_size=2))
_labels = st.dictionaries(st.sampled_from(["alertname", "org_id", "", "x", "instance"]),
                          st.sampled_from(["A", "", "tenant-b", "v"]), min_size=1, max_size=3)


def _or_wrong(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-typed value, sometimes anything (a body takes the fast path only when
    every field of every alert is well typed)."""
    return st.integers(0, 11).flatmap(lambda n: good if n else _value)  # (one_of dedups repeats)


_alert = st.fixed_dictionaries({"labels": _or_wrong(_labels)}, optional={
    "annotations": _or_wrong(st.dictionaries(_text, _text, max_size=2)),
    "startsAt": _or_wrong(_times), "endsAt": _or_wrong(_times),
    "generatorURL": _or_wrong(st.sampled_from(["http://p/graph", "/x", "bad url", ""])),
    "extra": _value})
_body = _or_wrong(st.lists(_or_wrong(_alert), max_size=4))


def _outcome(body: bytes) -> tuple[str, Any]:
    try:
        pushes, errors = parse_push(body, request_org="home", now=1.0, request_id="r")
    except PushError as exc:
        return "refused", (str(exc), exc.code)
    return "taken", ([msgspec.json.encode(p) for p in pushes], errors)


@settings(max_examples=300, deadline=None)
@given(_body)
def test_the_fast_path_answers_as_the_slow_one(doc: Any) -> None:
    body = msgspec.json.encode(doc)
    fast = _outcome(body)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(push_module, "_fast", lambda _body: None)
        slow = _outcome(body)
    assert fast == slow


def test_a_well_typed_body_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(push_module, "_decode", lambda raw, i: calls.append(i))
    body = msgspec.json.encode([{"labels": {"alertname": "A"}, "startsAt": "2026-12-07T03:00:00Z"}])
    pushes, errors = parse_push(body, request_org="o", now=1.0)
    assert calls == [] and errors == [] and pushes[0].alerts[0].labels == {"alertname": "A"}
