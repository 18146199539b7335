"""What a message of an atomic batch is, and what the server refuses: pure, no nats.

The stage runtime's decisions (``machine``), the source's core and the publisher
(``jetstream.publish_atomic``) share these: a message, its size as the server counts it, the
limits of one atomic batch, and the headers the runtime writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "BATCH_HEADER_ROOM",
    "DELETED",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_SUBJECT",
    "TIME_HEADER",
    "UNSAFE_CHARS",
    "BatchMsg",
    "header_lines",
    "malformed",
    "message_size",
    "oversized",
    "plan_chunks",
    "unpublishable",
]

DELETED: Final = "Tocsin-Deleted"  # header of a state tombstone
UNSAFE_CHARS: Final = frozenset(" \t\r\n")  # characters that would end a subject or a header line early
TIME_HEADER: Final = "Tocsin-Time"  # the event time of an output: the time its input or timer was stepped at
MAX_BATCH = 1000  # the server's atomic batch limit (messages per batch)
# Bytes of one atomic commit of the stages. The server takes larger batches (100 MiB was seen to
# pass), but a batch is staged in its memory until the commit: commits are split to stay under this.
MAX_BATCH_BYTES = 32 * 1024 * 1024
BATCH_HEADER_ROOM = 128  # the Nats-Batch-* headers publish_atomic adds to a message
# A subject longer than this would overflow the server's 4 KiB control line (HPUB, the reply
# inbox and sizes take the rest): the server would close the connection every stage shares.
MAX_SUBJECT = 3840
# nats-server refuses a message whose header block is larger than this (its fixed 64 KiB limit):
# in an atomic batch that refuses the whole commit, so such a message is unpublishable.
MAX_HEADER_BYTES = 64 * 1024

@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ cost a stage 1% of its CPU; never changed)
class BatchMsg:
    """A message of an atomic batch. ``lines``: ``headers`` as the frame's header lines, when its
    maker had them at hand (:func:`header_lines`); the publisher frames with them, else makes them."""

    subject: str
    payload: bytes
    headers: dict[str, str] | None = None
    lines: bytes | None = field(default=None, repr=False, compare=False)


_BATCH_HEADERS: Final = ("Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit")


def header_lines(headers: Mapping[str, str] | None) -> bytes | None:
    """``headers`` as the ``Name: value\r\n`` lines of a frame's header block (UTF-8); None when
    a name or value holds a line break (it would split the frame) or one is a batch header the
    publisher sets: such a message is framed, or refused, the long way."""
    if not headers:
        return b""
    text = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    n = len(headers)
    if text.count("\r") != n or text.count("\n") != n or any(h in headers for h in _BATCH_HEADERS):
        return None
    return text.encode()



def message_size(headers: dict[str, str] | None, payload: bytes) -> int:
    """What the server counts against ``max_payload``: the header block and the payload."""
    if not headers:
        return len(payload)
    return 12 + len(payload) + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def unpublishable(m: BatchMsg, max_payload: int) -> str:
    """Why ``m`` cannot be part of an atomic batch (its size, its subject, a header), or ""."""
    return malformed(m) or oversized(m, max_payload)


def malformed(m: BatchMsg) -> str:
    if not m.subject or not UNSAFE_CHARS.isdisjoint(m.subject):
        return f"invalid subject {m.subject[:200]!r}"
    if m.headers and any("\r" in t or "\n" in t for kv in m.headers.items() for t in kv):
        return f"a header of the message to {m.subject[:200]} holds a line break"
    return ""


def oversized(m: BatchMsg, max_payload: int) -> str:
    if len(m.subject) > MAX_SUBJECT:
        return (f"the subject {m.subject[:80]}... is {len(m.subject)} characters, over the limit of "
                f"{MAX_SUBJECT} (the server's 4 KiB control line)")
    size = message_size(m.headers, m.payload) + BATCH_HEADER_ROOM
    if size > max_payload:
        return (f"a message of {size} bytes to {m.subject[:200]} is over the server's max_payload of "
                f"{max_payload} bytes")
    header = message_size(m.headers, b"") + BATCH_HEADER_ROOM if m.headers else 0
    if header > MAX_HEADER_BYTES:
        return (f"the headers of a message to {m.subject[:200]} are {header} bytes, over the server's limit "
                f"of {MAX_HEADER_BYTES} bytes")
    return ""


def plan_chunks(sizes: Sequence[int], max_msgs: int, max_bytes: int) -> list[tuple[int, int]]:
    """Split messages of ``sizes`` (in order) into consecutive [start, end) chunks of at most
    ``max_msgs`` messages and ``max_bytes`` bytes (a message larger than that alone)."""
    if max_msgs < 1:
        raise ValueError("max_msgs must be at least 1")
    if len(sizes) <= max_msgs and sum(sizes) <= max_bytes:
        return [(0, len(sizes))] if sizes else []
    chunks: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_msgs or total + size > max_bytes):
            chunks.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks



