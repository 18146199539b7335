"""Limits a row must meet before the source publishes it (pure helpers).

JSON values (``json``/``jsonb`` columns) are parsed only when their nesting is at most
:data:`MAX_JSON_DEPTH`: msgspec, like every recursive parser, raises ``RecursionError`` on deep
input (5,000 levels), and a value that deep would break every later stage that decodes the
event even if the source could read it. The depth is measured here without recursion.

An event is published only when it fits in the NATS server's ``max_payload`` with room for
its headers (:func:`event_budget`); anything else becomes a dead letter.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Final

__all__ = [
    "DEAD_REASON_HEADER",
    "HEADER_ROOM",
    "MAX_JSON_DEPTH",
    "event_budget",
    "json_depth",
    "json_too_deep",
]

MAX_JSON_DEPTH: Final = 64  # arrays/objects inside a json/jsonb value; real event fields use a handful
# Headers of a batch message (Nats-Batch-Id/-Sequence, Nats-Msg-Id, Tocsin-Time) are ~150 bytes;
# nats-server counts them in max_payload.
HEADER_ROOM: Final = 1024
# On a dead letter's batch message: why, as a short code (org, id, size, depth, value, row), for the
# metric's label. Stored with the message too, so `nats stream view` shows it.
DEAD_REASON_HEADER: Final = "Tocsin-Dead-Letter"

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (0 for a scalar), without recursion.

    Strings are skipped, so brackets inside them do not count. On malformed text the answer is
    never below the depth a parser reaches before it finds the error, which is all a guard needs.
    """
    if "[" not in text and "{" not in text:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``text`` nests deeper than ``limit`` (cheap when it has few brackets at all)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    return json_depth(text) > limit


def event_budget(max_payload: int) -> int:
    """The largest event payload a server with this ``max_payload`` takes, headers included."""
    return max(0, max_payload - HEADER_ROOM)
