"""Dead letters: list, show and replay them (``tocsin dlq list|show|replay``).

Every stage keeps its dead letters in its own output stream, each on a subject of its own
under ``tocsin.<stream>.dlq.>`` (a stateful stage: ``dlq.<partition>.<unique>``; the source:
``tocsin.events.dlq.source``; the notifier: ``tocsin.sends.dlq.notifier.<unique>``).
A dead letter (:class:`contracts.DeadLetter`) holds the reason, where the input came from,
and the input itself, or for an input too large to keep, a bounded excerpt with the
original's size and digest.

Replay publishes the kept input again on its original subject, under a new
``Nats-Msg-Id`` derived from the dead letter (``replay:<stream>:<seq>``: a replay repeated
within the stream's duplicate window is stored once), then deletes the dead letter unless
asked to keep it. A stage skips only inputs at or below its progress, so the replayed copy
is a new input and is processed once. Replay only after fixing what refused the input (a
limit, the configuration): an input refused again is dead-lettered again. A dead letter that
kept only an excerpt, or with no original subject (a source row), cannot be replayed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.js import JetStreamContext

from contracts import DeadLetter
from pipeline.foundation.runtime.reads import read_messages

__all__ = [
    "DeadLetterRef",
    "StoredDeadLetter",
    "delete",
    "describe",
    "dumps",
    "get",
    "list_dead_letters",
    "parse_ref",
    "replay",
    "replay_headers",
    "why_not_replayable",
]

_DLQ_TOKEN = "dlq"
_HOP_HEADERS = frozenset({"Nats-Msg-Id", "Nats-Expected-Last-Subject-Sequence", "Nats-Batch-Id",
                          "Nats-Batch-Sequence", "Nats-Batch-Commit", "Nats-TTL", "Nats-Rollup"})


@dataclass(frozen=True, slots=True)
class DeadLetterRef:
    """Where a dead letter is stored: ``STREAM:SEQ`` on the command line."""

    stream: str
    seq: int

    def __str__(self) -> str:
        return f"{self.stream}:{self.seq}"


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    ref: DeadLetterRef
    subject: str  # the dead letter's own subject
    letter: DeadLetter | None  # None: not a DeadLetter (shown raw)
    raw: bytes


def parse_ref(text: str) -> DeadLetterRef:
    """``STREAM:SEQ`` (e.g. ``TOCSIN_GROUPS:1234``); ValueError says what is wrong."""
    stream, sep, seq = text.rpartition(":")
    if not sep or not stream or not seq.isdigit() or int(seq) < 1:
        raise ValueError(f"{text!r} is not STREAM:SEQ (e.g. TOCSIN_GROUPS:1234; `tocsin dlq list` shows them)")
    return DeadLetterRef(stream, int(seq))


def _decode(raw: bytes) -> DeadLetter | None:
    try:
        return msgspec.json.decode(raw, type=DeadLetter)
    except (msgspec.DecodeError, RecursionError):
        return None


def why_not_replayable(letter: DeadLetter | None) -> str | None:
    """Why a dead letter cannot be replayed, or ``None`` when it can."""
    if letter is None:
        return "it is not a dead letter Tocsin wrote"
    if not letter.subject:
        return "it names no original subject (a source row: fix the row or the limit, then insert it again)"
    if letter.size and letter.size != len(letter.payload):
        return f"it keeps only a {len(letter.payload)}-byte excerpt of a {letter.size}-byte input"
    return None


def replay_headers(ref: DeadLetterRef, letter: DeadLetter) -> dict[str, str]:
    """The original headers but for the hop's own (id, fence, batch), and the replay's id."""
    headers = {k: v for k, v in letter.headers.items() if k not in _HOP_HEADERS}
    headers["Nats-Msg-Id"] = f"replay:{ref.stream}:{ref.seq}"
    headers["Tocsin-Replay-Of"] = str(ref)
    return headers


def describe(stored: StoredDeadLetter, *, full: bool = False) -> dict[str, Any]:
    """A dead letter as JSON-ready data: the listing's row, or with ``full`` everything
    (the payload as text when it is UTF-8, else base64)."""
    out: dict[str, Any] = {"ref": str(stored.ref), "subject": stored.subject}
    dl = stored.letter
    if dl is None:
        out["raw"] = stored.raw[:4096].decode("utf-8", "replace")
        return out
    out.update(stage=dl.stage, cause=dl.cause, reason=dl.reason, at=dl.at, input_subject=dl.subject,
               input_seq=dl.stream_seq)
    if dl.table or dl.key:
        out.update(table=dl.table, key=dl.key)
    problem = why_not_replayable(dl)
    out["replayable"] = problem is None
    if full:
        if problem:
            out["not_replayable_because"] = problem
        if dl.digest:
            out.update(size=dl.size, digest=dl.digest)
        out["headers"] = dl.headers
        try:
            out["payload"] = dl.payload.decode("utf-8")
        except UnicodeDecodeError:
            out["payload_base64"] = base64.b64encode(dl.payload).decode()
    return out


async def _streams(js: JetStreamContext, only: str | None) -> list[tuple[str, str]]:
    """(stream, dead-letter filter) of every Tocsin stream that can hold dead letters."""
    found = []
    for info in await js.streams_info():
        name = info.config.name or ""
        if only and name != only:
            continue
        for subject in info.config.subjects or []:
            if subject.endswith(".>") and subject.count(".") == 2:  # tocsin.<name>.>
                found.append((name, subject[:-1] + _DLQ_TOKEN + ".>"))
    return sorted(found)


async def list_dead_letters(js: JetStreamContext, *, stream: str | None = None) -> AsyncIterator[StoredDeadLetter]:
    """Every dead letter of every Tocsin stream (or of one), in stream order."""
    for name, subject in await _streams(js, stream):
        async for m in read_messages(js, name, subject):
            seq = m.metadata.sequence.stream if m.reply else 0
            yield StoredDeadLetter(DeadLetterRef(name, seq), m.subject, _decode(m.data), m.data)


async def get(js: JetStreamContext, ref: DeadLetterRef) -> StoredDeadLetter:
    msg = await js.get_msg(ref.stream, ref.seq)
    if f".{_DLQ_TOKEN}." not in (msg.subject or ""):
        raise ValueError(f"{ref} is not a dead letter (its subject is {msg.subject})")
    return StoredDeadLetter(ref, msg.subject or "", _decode(msg.data or b""), msg.data or b"")


async def replay(js: JetStreamContext, ref: DeadLetterRef, *, keep: bool = False) -> str:
    """Publish the dead letter's input again on its subject, then delete the dead letter
    (unless ``keep``). Returns what was done; ValueError when it cannot be replayed."""
    stored = await get(js, ref)
    problem = why_not_replayable(stored.letter)
    if problem or stored.letter is None:
        raise ValueError(f"{ref} cannot be replayed: {problem}")
    letter = stored.letter
    ack = await js.publish(letter.subject, letter.payload, headers=replay_headers(ref, letter))
    if not keep:
        await delete(js, ref)
    again = " (already replayed: stored once)" if ack.duplicate else ""
    return f"replayed {ref} to {letter.subject} as {ack.stream}:{ack.seq}{again}"


async def delete(js: JetStreamContext, ref: DeadLetterRef) -> None:
    await get(js, ref)  # refuses anything that is not a dead letter
    await js.delete_msg(ref.stream, ref.seq)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str)
