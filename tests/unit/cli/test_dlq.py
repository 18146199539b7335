"""Pure parts of `tocsin dlq`: references, what can be replayed, the replay's headers."""

from __future__ import annotations

import pytest

from contracts import DeadLetter
from pipeline.application.dlq import (
    DeadLetterRef,
    StoredDeadLetter,
    describe,
    parse_ref,
    replay_headers,
    why_not_replayable,
)


@pytest.mark.parametrize(("text", "ref"), [
    ("TOCSIN_GROUPS:12", DeadLetterRef("TOCSIN_GROUPS", 12)),
    ("A:B:3", DeadLetterRef("A:B", 3)),
], ids=["plain", "colon-in-stream"])
def test_parse_ref(text: str, ref: DeadLetterRef) -> None:
    assert parse_ref(text) == ref and str(ref) == text


@pytest.mark.parametrize("text", ["", "TOCSIN_GROUPS", "TOCSIN_GROUPS:", ":3", "S:0", "S:-1", "S:x"],
                         ids=["empty", "no-seq", "empty-seq", "no-stream", "zero", "negative", "word"])
def test_parse_ref_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="STREAM:SEQ"):
        parse_ref(text)


@pytest.mark.parametrize(("letter", "problem"), [
    (DeadLetter(stage="router", reason="r", subject="tocsin.alerts.out.1.x", payload=b"{}"), None),
    (None, "not a dead letter"),
    (DeadLetter(stage="source", reason="r", payload=b"row", table="events", key="1"), "no original subject"),
], ids=["whole-input", "not-a-dead-letter", "source-row"])
def test_why_not_replayable(letter: DeadLetter | None, problem: str | None) -> None:
    got = why_not_replayable(letter)
    assert got is None if problem is None else problem in (got or "")


def test_replay_headers_drop_the_hops_own_and_name_the_replay() -> None:
    letter = DeadLetter(stage="router", reason="r", subject="s", headers={
        "Nats-Msg-Id": "alerts:1", "Nats-Expected-Last-Subject-Sequence": "4", "traceparent": "00-ab-cd-01"})
    ref = DeadLetterRef("TOCSIN_GROUPS", 9)
    assert replay_headers(ref, letter) == {"traceparent": "00-ab-cd-01", "Nats-Msg-Id": "replay:TOCSIN_GROUPS:9",
                                           "Tocsin-Replay-Of": "TOCSIN_GROUPS:9"}


def test_describe_binary_payload_and_foreign_message() -> None:
    letter = DeadLetter(stage="router", reason="r", subject="s", payload=b"\xff\x00")
    stored = StoredDeadLetter(DeadLetterRef("S", 1), "tocsin.groups.dlq.1.ab", letter, b"")
    assert describe(stored, full=True)["payload_base64"] == "/wA="
    assert describe(stored)["replayable"] is True and "payload_base64" not in describe(stored)
    foreign = StoredDeadLetter(DeadLetterRef("S", 2), "tocsin.groups.dlq.1.cd", None, b"junk")
    assert describe(foreign) == {"ref": "S:2", "subject": "tocsin.groups.dlq.1.cd", "raw": "junk"}


def test_an_excerpt_cannot_be_replayed() -> None:
    letter = DeadLetter(stage="rules", reason="too large", subject="s", payload=b"x" * 10, size=9_000_000,
                        digest="sha256:ab")
    assert "10-byte excerpt of a 9000000-byte input" in (why_not_replayable(letter) or "")
    shown = describe(StoredDeadLetter(DeadLetterRef("S", 3), "t", letter, b""), full=True)
    assert shown["replayable"] is False and shown["size"] == 9_000_000 and shown["digest"] == "sha256:ab"
