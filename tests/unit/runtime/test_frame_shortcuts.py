"""The runtime's shortcuts make the same bytes as the long way (issue #24, burst CPU).

What is stored must not change: a batch message framed from its ready-made header lines
(:func:`~pipeline.foundation.runtime.jetstream.batch_frame`) is the ``HPUB`` that
:func:`~pipeline.foundation.runtime.jetstream.hpub_frame` makes of the batch's headers and its
own; the header lines the machine writes for its outputs and state values are those of their
headers; a state key's subject made the short way is the one the bounded encoding gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.foundation.runtime.jetstream import batch_frame, hpub_frame
from pipeline.foundation.runtime.machine import CommitDraft, Input, PartitionMachine, StageSpec
from pipeline.foundation.runtime.step import Out, Step
from pipeline.foundation.runtime.subjects import StreamNames, _encode_parts, encode_key
from pipeline.foundation.runtime.wire import BatchMsg, header_lines

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_hostile = st.one_of(_text, st.sampled_from(["", "a\r\nb", "x\n", "\r", "Nats-Batch-Id", "Nats-Batch-Sequence",
                                             "Nats-Batch-Commit", "é ü", "a b", "\t"]))
_headers = st.one_of(st.none(), st.dictionaries(_hostile, _hostile, max_size=5))
_subject = st.one_of(st.sampled_from(["a.b", "tocsin.alerts.out.3.x.0123", "", "a b", "a\tb", "a\r\nb",
                                      "é.ü", "a\x00b", "a\x85b"]), _text)


def _long_way(m: BatchMsg, batch_id: str, seq: int) -> bytes:
    """What _publish_batch framed before the shortcut: the batch headers, updated by the message's."""
    hdrs = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(seq)}
    if m.headers:
        hdrs.update(m.headers)
    return hpub_frame(m.subject, hdrs, m.payload)


def _outcome(fn: Any, *args: Any) -> bytes | type:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except ValueError as exc:  # (a UnicodeEncodeError is one)
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(_subject, _headers, st.binary(max_size=64), st.integers(1, 999), st.booleans())
def test_a_batch_frame_is_the_hpub_of_the_merged_headers(subject: str, headers: dict[str, str] | None,
                                                         payload: bytes, seq: int, with_lines: bool) -> None:
    lines = header_lines(headers) if with_lines else None
    m = BatchMsg(subject, payload, headers, lines)
    batch_id = "0123456789abcdef"
    assert _outcome(batch_frame, m, batch_id.encode(), seq) == _outcome(_long_way, m, batch_id, seq)


@pytest.mark.parametrize(("headers", "lines"), [
    (None, b""),
    ({}, b""),
    ({"Nats-Msg-Id": "a", "Tocsin-Time": "1.5"}, b"Nats-Msg-Id: a\r\nTocsin-Time: 1.5\r\n"),
    ({"K": "a\nb"}, None),
    ({"K\r": "v"}, None),
    ({"Nats-Batch-Id": "x"}, None),
    ({"Nats-Batch-Commit": "1"}, None),
], ids=["none", "empty", "two", "line-break-in-value", "line-break-in-name", "batch-id", "batch-commit"])
def test_header_lines(headers: dict[str, str] | None, lines: bytes | None) -> None:
    assert header_lines(headers) == lines


class _Core:
    """Outputs as the table says; state changes (a deletion too) so seal writes values and tombstones."""

    value_type = dict

    def __init__(self, outputs: list[Out]) -> None:
        self.outputs = outputs

    def step(self, state: Any, inp: Any, now: float) -> Step[Any]:
        return Step(changes={"alert/acme/1": {"v": 1}, "gone/acme": None, "k/" + "é" * 3000: {"v": 2}},
                    outputs=list(self.outputs))

    def fire(self, state: Any, key: str, now: float) -> Step[Any]:
        return Step()

    def deadline(self, key: str, value: Any) -> float | None:
        return None


@pytest.mark.parametrize("ttl", [None, 3600], ids=["no-ttl", "ttl"])
@pytest.mark.parametrize("rollup", [False, True], ids=["one-per-subject", "rollup"])
@pytest.mark.parametrize(("out", "shortcut"), [
    (Out(payload={}, msg_id="plain"), True),  # type: ignore[arg-type]
    (Out(payload={}, msg_id="with\nbreak"), False),  # type: ignore[arg-type]
    (Out(payload={}, msg_id="ünïcode"), False),  # type: ignore[arg-type]
    (Out(payload={}, msg_id="x", headers={"traceparent": "00-1-2-01"}), False),  # type: ignore[arg-type]
    (Out(payload={}, subject="a.b.c"), True),  # type: ignore[arg-type]
], ids=["plain", "line-break-in-id", "non-ascii-id", "own-headers", "subject-of-tokens"])
def test_the_machine_s_header_lines_are_those_of_its_headers(ttl: int | None, rollup: bool, out: Out,
                                                             shortcut: bool) -> None:
    names = StreamNames("alerts")
    spec = StageSpec(name="s", core=_Core([out, Out(payload={}, subject="plain")]),  # type: ignore[arg-type]
                     inputs=[Input("events", StreamNames("events"))], output=names, partitions=4, output_ttl=ttl)
    machine = PartitionMachine(spec, 1)
    machine.claimed(machine.progress, rollup=rollup)
    draft = machine.add(CommitDraft(), spec.core.step({}, None, 7.25), "s:1:events:9", 7.25)
    commit = machine.seal(draft)
    body = commit.body  # type: ignore[union-attr]
    assert len(body) == 5  # three state messages (one a tombstone, one digested), two outputs
    for m in body:
        if m.lines is not None:
            assert m.lines == header_lines(m.headers), m
    # the shortcut is taken wherever it can be
    assert [m.lines is not None for m in body] == [True, True, False, shortcut, True]


@given(st.one_of(st.lists(st.one_of(_text, st.text(min_size=100, max_size=600)), min_size=1, max_size=8)
                 .map("/".join), st.text(max_size=700)))
def test_a_key_s_subject_tokens_are_those_of_the_bounded_encoding(key: str) -> None:
    assert encode_key(key) == ".".join(_encode_parts(key.split("/"))[0])
