"""Contracts: round trips, frozen v1 fixtures, tolerance of unknown fields."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import contracts as c
from contracts.labels import fingerprint
from contracts.partition import partition_of

FIXTURES = Path(__file__).parents[2] / "fixtures" / "contracts" / "v1"

ALERT = c.Alert(fingerprint="f", org="o", labels={"a": "b"}, annotations={"s": "t"}, starts_at=1.0, ends_at=2.0,
                generator_url="g", updated_at=1.5)
SAMPLES: list[msgspec.Struct] = [
    c.Event(id="1", org="o", reason="R", resource_kind="device", resource_name="n", occurred_at=1.0,
            fields={"x": 1, "y": [1, "a"]}, trace={"traceparent": "00-a-b-01"}),
    c.PushedAlerts(request_id="r", org="o", received_at=1.0,
                   alerts=[c.PushedAlert(labels={"a": "b"}, starts_at=None, ends_at=3.0)]),
    c.AlertChange(change="resolved", alert=ALERT, cause=c.Cause(kind="timer", at=2.0)),
    c.GroupFlush(org="o", group_key="k", group_id="g", route_id="0.1", receiver="r", group_labels={},
                 alerts=[ALERT], flush_seq=1, flushed_at=1.0, group_interval=300, repeat_interval=3600),
    c.SendRequest(id="i", org="o", group_key="k", group_id="g", receiver="r",
                  integration=c.Integration(kind="email", index=2), flush_seq=1, status="resolved",
                  group_labels={}, alerts=[ALERT], created_at=1.0),
    c.DeadLetter(stage="s", reason="why", payload=b"\x00\xff", headers={"h": "v"}),
    c.SilenceCommand(action="upsert", org="o", id="s1", at=1.0, silence=c.Silence(
        id="s1", org="o", matchers=[c.SilenceMatcher(name="a", value="b.*", is_regex=True)], starts_at=1.0,
        ends_at=2.0, created_by="me", comment="why")),
    c.AckCommand(action="ack", org="o", at=1.0, group_key="k", by="me", expires_at=5.0),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: msgspec.Struct) -> None:
    data = c.encode(msg)
    assert c.decode(data) == msg
    assert json.loads(data)["type"].endswith(".v1")


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_frozen_v1_fixture_decodes(path: Path) -> None:
    raw = path.read_bytes()
    msg = c.decode(raw)
    # Re-encoding keeps every field the fixture set (defaults are omitted, so compare one way).
    again = json.loads(c.encode(msg))
    for key, value in json.loads(raw).items():
        assert again.get(key, value) == value, key


def test_fixture_values() -> None:
    ev = c.decode((FIXTURES / "event.json").read_bytes())
    assert isinstance(ev, c.Event)
    assert (ev.org, ev.reason, ev.fields["rssi"], ev.occurred_at) == ("acme", "DeviceDisconnected", -71, 1763800000.5)
    dl = c.decode((FIXTURES / "dead_letter.json").read_bytes())
    assert isinstance(dl, c.DeadLetter) and dl.payload == b"{not json"


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_unknown_fields_are_tolerated(msg: msgspec.Struct) -> None:
    doc = json.loads(c.encode(msg))
    doc["added_in_v1_1"] = {"nested": [1, 2]}
    assert c.decode(json.dumps(doc).encode()) == msg


@pytest.mark.parametrize("data,error", [
    (b'{"type":"event.v9","id":"1"}', "Invalid value 'event.v9'"),
    (b'{"type":"event.v1","id":"1"}', "missing required field"),
    (b"not json", "JSON"),
], ids=["unknown-version", "missing-field", "not-json"])
def test_bad_messages_raise(data: bytes, error: str) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError), match=error):
        c.decode(data)


def test_decode_as_checks_the_kind() -> None:
    data = c.encode(SAMPLES[0])
    assert isinstance(c.decode_as(data, c.Event), c.Event)
    with pytest.raises(msgspec.ValidationError, match="expected AlertChange"):
        c.decode_as(data, c.AlertChange)


@pytest.mark.parametrize("labels,expected", [
    ({}, "cbf29ce484222325"),  # FNV-1a 64 offset basis: Prometheus' empty label set
], ids=["empty"])
def test_fingerprint_known_values(labels: dict[str, str], expected: str) -> None:
    assert fingerprint(labels) == expected


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=6))
def test_fingerprint_ignores_order_and_separates_names_from_values(labels: dict[str, str]) -> None:
    assert fingerprint(dict(reversed(list(labels.items())))) == fingerprint(labels)
    assert len(fingerprint(labels)) == 16


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=8))
def test_fingerprint_in_c_equals_the_python_reference(labels: dict[str, str]) -> None:
    import contracts.labels as labels_mod

    pairs = tuple(sorted(labels.items()))
    assert labels_mod._fnv_c(pairs) == labels_mod._fnv_py(pairs)


def test_fingerprint_uses_the_c_hash_when_it_is_installed() -> None:
    import contracts.labels as labels_mod

    # fnv-c is a dependency; without it fingerprints stay right but cost 9x as much
    assert labels_mod._fnv is labels_mod._fnv_c


def test_fingerprint_separator_prevents_collisions() -> None:
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


@given(st.text(max_size=30), st.integers(min_value=1, max_value=256))
def test_partition_is_stable_and_in_range(org: str, partitions: int) -> None:
    p = partition_of(org, partitions)
    assert 0 <= p < partitions and p == partition_of(org, partitions)


def test_partition_spreads_orgs() -> None:
    counts = [0] * 16
    for i in range(1600):
        counts[partition_of(f"org-{i}", 16)] += 1
    assert min(counts) > 50, counts


def test_fingerprints_are_remembered_within_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import contracts.labels as labels_mod

    monkeypatch.setattr(labels_mod, "_CACHE", {})
    monkeypatch.setattr(labels_mod, "_CACHE_SIZE", 4)
    sets = [{"alertname": f"A{i}", "org": "o"} for i in range(10)]
    first = [labels_mod.fingerprint_int(s) for s in sets]
    assert len(labels_mod._CACHE) == 4  # the six oldest were let go
    assert first == [labels_mod._fnv(tuple(sorted(s.items()))) for s in sets]
    assert [labels_mod.fingerprint_int(dict(reversed(list(s.items())))) for s in sets] == first
    assert len(set(first)) == len(sets)
