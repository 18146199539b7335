"""Pure parts of poison handling: dead letters that always fit, message sizes as the server
counts them, the split of a commit into atomic batches, bounded message ids."""

from __future__ import annotations

import hashlib
import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import DeadLetter
from pipeline.foundation.runtime.deadletter import EXCERPT_BYTES, MIN_BUDGET, build_dead_letter
from pipeline.foundation.runtime.jetstream import BatchError, TooLarge, hpub_frame
from pipeline.foundation.runtime.partition import MAX_MSG_ID, bounded_id
from pipeline.foundation.runtime.wire import (
    BATCH_HEADER_ROOM,
    MAX_SUBJECT,
    BatchMsg,
    message_size,
    plan_chunks,
    unpublishable,
)

MiB = 1024 * 1024
# Text at its worst for JSON: control characters (escaped as \u00XX, 6 bytes each), lone
# surrogates (not UTF-8), and 4-byte characters.
_hostile = st.text(st.sampled_from("\x00\x1f\"\\a\ud800\U0001f600é"), max_size=3000)


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([0, 1, 4095, 4097, 100_000, MiB, 6 * MiB, 15 * MiB // 2]),
       reason=_hostile, subject=_hostile, key=_hostile,
       headers=st.dictionaries(_hostile, _hostile, max_size=40),
       budget=st.sampled_from([MIN_BUDGET, MiB, 8 * MiB]))
def test_a_dead_letter_always_fits_its_budget(size: int, reason: str, subject: str, key: str,
                                              headers: dict[str, str], budget: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    _, data = build_dead_letter(stage="rules", reason=reason, budget=budget, payload=payload,
                                     subject=subject, stream_seq=7, headers=headers, at=1.5, key=key,
                                     cause="too_large")
    assert len(data) <= budget
    back = msgspec.json.decode(data, type=DeadLetter)
    assert back.size == size and back.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert back.stream_seq == 7 and back.cause == "too_large"
    assert payload.startswith(back.payload)
    assert back.payload == payload or len(back.payload) == min(size, EXCERPT_BYTES)


@pytest.mark.parametrize(("size", "budget", "whole"), [
    (100, MIN_BUDGET, True),
    (90_000, MIN_BUDGET, True),  # base64: 120,000 bytes, with the rest still under 128 KiB
    (100_000, MIN_BUDGET, False),
    (5 * MiB, 8 * MiB, True),  # 6.7 MiB as base64
    (15 * MiB // 2, 8 * MiB, False),  # the 7.5 MiB input: 10 MiB as base64
], ids=["small", "just-fits", "just-over", "5MiB-of-8", "7.5MiB-of-8"])
def test_an_input_is_kept_whole_when_it_fits_else_an_excerpt(size: int, budget: int, whole: bool) -> None:
    payload = b"p" * size
    letter, data = build_dead_letter(stage="s", reason="why", budget=budget, payload=payload)
    assert (letter.payload == payload) is whole
    assert letter.size == size and len(data) <= budget
    if not whole:
        assert letter.payload == payload[:EXCERPT_BYTES]


def test_a_budget_under_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        build_dead_letter(stage="s", reason="r", budget=MIN_BUDGET - 1)


@given(st.dictionaries(st.text(st.characters(min_codepoint=33, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
                                min_size=1, max_size=20).filter(lambda k: ":" not in k),
                       st.text(st.characters(min_codepoint=32, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
                               max_size=50), max_size=5),
       st.binary(max_size=200))
def test_message_size_is_what_the_frame_declares(headers: dict[str, str], payload: bytes) -> None:
    frame = hpub_frame("a.b", headers, payload)
    declared = int(frame.split(b"\r\n", 1)[0].split()[-1])  # HPUB <subject> <header bytes> <total bytes>
    assert message_size(headers, payload) == (declared if headers else len(payload))


@pytest.mark.parametrize(("subject", "headers", "payload", "problem"), [
    ("a.b", {"Nats-Msg-Id": "x"}, b"x" * 1000, ""),
    ("a.b", None, b"x" * (MiB - BATCH_HEADER_ROOM), ""),
    ("a.b", None, b"x" * (MiB - BATCH_HEADER_ROOM + 1), "max_payload of 1048576"),
    ("a.b", {"Nats-Msg-Id": "i" * MiB}, b"small", "max_payload"),  # headers count too
    ("a." + "s" * MAX_SUBJECT, None, b"", "control line"),
    ("a.b", {"Tocsin-Key": "k" * 70_000}, b"small", "limit of 65536 bytes"),  # a long key, whole in its header
], ids=["small", "at-the-limit", "one-over", "headers-over", "subject-too-long", "header-block-over-64k"])
def test_unpublishable_names_the_limit(subject: str, headers: dict[str, str] | None, payload: bytes,
                                       problem: str) -> None:
    why = unpublishable(BatchMsg(subject, payload, headers), MiB)
    assert (problem in why) if problem else why == ""


def test_too_large_is_a_refusal_for_good_and_a_max_payload_error() -> None:
    import nats.errors

    exc = TooLarge("a message of 9 bytes is over the server's max_payload of 8 bytes")
    assert isinstance(exc, BatchError) and isinstance(exc, nats.errors.MaxPayloadError)
    assert exc.deterministic and not exc.fenced and "max_payload of 8" in str(exc)
    assert not BatchError(503, 10008, "unavailable").deterministic
    assert not BatchError(400, 10071, "wrong last sequence").deterministic  # a fence: re-acquire, no dead letter


@given(st.lists(st.integers(0, 5000), max_size=60), st.integers(1, 8), st.integers(1, 12_000))
def test_plan_chunks_covers_in_order_within_the_limits(sizes: list[int], max_msgs: int, max_bytes: int) -> None:
    chunks = plan_chunks(sizes, max_msgs, max_bytes)
    assert [i for a, b in chunks for i in range(a, b)] == list(range(len(sizes)))
    for a, b in chunks:
        assert 1 <= b - a <= max_msgs
        assert sum(sizes[a:b]) <= max_bytes or b - a == 1  # only a message too large alone is over
    for (a, b), (c, _) in itertools.pairwise(chunks):  # greedy: the next message did not fit
        assert b - a == max_msgs or sum(sizes[a:b]) + sizes[c] > max_bytes


@pytest.mark.parametrize(("sizes", "chunks"), [
    ([], []),
    ([10], [(0, 1)]),
    ([10, 10, 10], [(0, 2), (2, 3)]),
    ([50], [(0, 1)]),
    ([5, 50, 5], [(0, 1), (1, 2), (2, 3)]),
], ids=["empty", "one", "by-bytes", "one-too-large", "large-in-the-middle"])
def test_plan_chunks_examples(sizes: list[int], chunks: list[tuple[int, int]]) -> None:
    assert plan_chunks(sizes, 10, 20) == chunks


@pytest.mark.parametrize("msg_id", ["count:acme/dev:3", "x" * MAX_MSG_ID, "x" * (MAX_MSG_ID + 1), "é" * 100_000],
                         ids=["short", "at-the-limit", "one-over", "huge"])
def test_bounded_id_is_deterministic_and_short(msg_id: str) -> None:
    got = bounded_id(msg_id)
    assert got == bounded_id(msg_id) and len(got) <= MAX_MSG_ID
    assert (got == msg_id) is (len(msg_id) <= MAX_MSG_ID)
    assert got.startswith(msg_id[:64])
    assert bounded_id(msg_id + "!") != got
