"""Pure parts of the runtime: subject tokens, partition assignment, ack metadata, listen addresses."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.startup import parse_listen_address
from pipeline.foundation.runtime.membership import assign
from pipeline.foundation.runtime.partition import ack_metadata, event_time
from pipeline.foundation.runtime.subjects import StreamNames, decode_key, encode_key, message_token, token
from pipeline.foundation.runtime.wire import TIME_HEADER


@given(st.text(max_size=80))
def test_state_keys_round_trip_through_subject_tokens(key: str) -> None:
    toks = encode_key(key)
    assert decode_key(toks) == key
    assert all(t and not set(t) & set(" *>\t\r\n") for t in toks.split("."))
    n = StreamNames("x")
    assert n.key_of_state_subject(n.state(5, key)) == key


@given(st.lists(st.text(st.characters(blacklist_characters="/"), max_size=10), min_size=1, max_size=3),
       st.text(max_size=10))
def test_key_prefix_filters_select_exactly_the_keys_under_the_prefix(prefix: list[str], rest: str) -> None:
    n = StreamNames("x")
    flt = n.state_filter(1, *prefix).split(".")
    subj = n.state(1, "/".join([*prefix, rest])).split(".")
    assert flt[-1] == ">" and subj[: len(flt) - 1] == flt[:-1] and len(subj) >= len(flt)
    other = n.state(1, "/".join([*prefix[:-1], prefix[-1] + "x", rest])).split(".")
    assert other[: len(flt) - 1] != flt[:-1]


@given(st.text(min_size=1, max_size=40))
def test_tokens_are_subject_safe(text: str) -> None:
    assert not set(token(text)) & set(". *>")


def test_stream_names() -> None:
    n = StreamNames("alerts")
    assert (n.stream, n.out(3, "acme.fp"), n.out_filter(3), n.progress(3)) == (
        "TOCSIN_ALERTS", "tocsin.alerts.out.3.acme.fp", "tocsin.alerts.out.3.>", "tocsin.alerts.progress.3")
    assert n.partition_of_subject(n.out(11)) == 11


@pytest.mark.parametrize(("name", "one"), [
    pytest.param("alerts", True, id="rules-output"), pytest.param("groups", True, id="router-output"),
    pytest.param("sends", True, id="filter-output"), pytest.param("counts", True, id="counter-output"),
    pytest.param("events", False, id="events-shared-subjects"), pytest.param("commands", False, id="commands"),
    pytest.param("audit", False, id="audit"),
])
def test_only_the_stage_streams_keep_one_message_per_subject(name: str, one: bool) -> None:
    assert StreamNames(name).one_per_subject is one


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_every_output_and_dead_letter_has_a_subject_of_its_own(a: str, b: str) -> None:
    n = StreamNames("groups")
    out_a, dlq_a = n.out(2, "g1", a), n.dlq(2, a)
    assert out_a == n.out(2, "g1", a) and dlq_a == n.dlq(2, a)  # deterministic: a redone step writes the same
    assert out_a.startswith("tocsin.groups.out.2.g1.") and dlq_a.startswith("tocsin.groups.dlq.2.")
    assert re.fullmatch(r"[0-9a-f]{16}", out_a.rsplit(".", 1)[1]) and message_token(a) == out_a.rsplit(".", 1)[1]
    if a != b:
        assert n.out(2, "g1", b) != out_a and n.dlq(2, b) != dlq_a
    assert n.partition_of_subject(out_a) == 2


@given(st.sets(st.text(alphabet="abcdef0123", min_size=1, max_size=6), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=64))
def test_every_partition_has_exactly_one_owner(members: set[str], partitions: int) -> None:
    shares = [assign(partitions, members, m) for m in members]
    assert sorted(p for s in shares for p in s) == list(range(partitions))


@given(st.sets(st.text(alphabet="abcdef0123", min_size=1, max_size=6), min_size=2, max_size=6))
def test_a_death_moves_only_the_dead_members_partitions(members: set[str]) -> None:
    dead = sorted(members)[0]
    survivors = members - {dead}
    for m in survivors:
        before, after = assign(32, members, m), assign(32, survivors, m)
        assert before <= after  # nobody loses a partition it had


def test_assignment_is_balanced_enough() -> None:
    members = {f"replica-{i}" for i in range(4)}
    sizes = sorted(len(assign(64, members, m)) for m in members)
    assert sizes[0] >= 8 and sizes[-1] <= 24, sizes


class _M:
    def __init__(self, reply: str) -> None:
        self.reply = reply


@pytest.mark.parametrize("reply,expected", [
    ("$JS.ACK.S.C.1.100.7.1763800000123456789.42", (100, 7, 1, 1763800000123456789, 42)),
    ("$JS.ACK.dom.acc.S.C.3.100.7.1763800000123456789.42.rnd", (100, 7, 3, 1763800000123456789, 42)),
], ids=["v1", "v2-domain"])
def test_ack_metadata(reply: str, expected: tuple[int, ...]) -> None:
    assert ack_metadata(_M(reply)) == expected  # type: ignore[arg-type]


class _H:
    def __init__(self, headers: dict[str, str] | None) -> None:
        self.headers = headers


@pytest.mark.parametrize("headers,expected", [
    (None, 100.0),
    ({}, 100.0),
    ({TIME_HEADER: "97.25"}, 97.25),
    ({TIME_HEADER: "250.0"}, 100.0),  # never later than the message was stored
    ({TIME_HEADER: "soon"}, 100.0),
], ids=["no-headers", "no-time", "event-time", "capped-by-stream-time", "garbage"])
def test_event_time(headers: dict[str, str] | None, expected: float) -> None:
    assert event_time(_H(headers), 100.0) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("addr,expected", [
    (":9093", ("0.0.0.0", 9093)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9093", ("::1", 9093)),
], ids=["port-only", "ipv4", "ipv6"])
def test_listen_address(addr: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(addr) == expected


def test_listen_address_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_listen_address("localhost")
