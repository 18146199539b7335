"""Stream and subject names.

Every stage's output stream ``TOCSIN_<NAME>`` holds, under ``tocsin.<name>.``:

- ``out.<p>.<suffix>.<unique>``: outputs of partition p (the next stage consumes ``out.<p>.>``);
- ``state.<p>.<key>``: one subject per state key, last value wins;
- ``progress.<p>``: the partition's progress record, also the fence of its owner;
- ``dlq.<p>.<unique>``: dead letters, committed atomically with the step that rejected them.

``<unique>`` is :func:`message_token` of the message's ``Nats-Msg-Id``: every output and dead
letter has a subject of its own, so a stage's stream can keep one message per subject
(``max_msgs_per_subject: 1``, see :data:`ONE_PER_SUBJECT`): a state key's new value replaces
the old one without a rollup. nats-server finds a rolled-up subject's older messages from a
lazily kept first block, so a rollup cost more as the stream grew, where the per-subject
limit costs the same at any size (``python -m loadtest.rollup_cost``; figures in
``docs/loadtest.md``). A stream made before this layout keeps rolling up: the runtime asks
the stream which it is (:func:`pipeline.runtime.jetstream.one_per_subject`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

__all__ = [
    "ONE_PER_SUBJECT",
    "StreamNames",
    "decode_key",
    "encode_key",
    "key_filter",
    "message_token",
    "token",
]

#: The streams of the stateful stages (state and outputs side by side, hop B of the brief):
#: made with ``max_msgs_per_subject: 1``. Everything written to them has a subject of its own
#: but the state keys and progress records, whose last value is all that counts.
ONE_PER_SUBJECT = frozenset({"alerts", "groups", "sends", "counts"})

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token(text: str) -> str:
    """A NATS subject token for arbitrary text: itself when safe, else ``~`` + base64url."""
    if _SAFE.match(text):
        return text
    return "~" + base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def message_token(msg_id: str) -> str:
    """The last subject token of an output or dead letter: 16 hex digits of a hash of its
    ``Nats-Msg-Id`` (deterministic, so a redone step writes the same subject)."""
    return hashlib.blake2b(msg_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=1 << 16)  # key parts repeat (families, organisations, ids): every commit encodes them
def _enc(part: str) -> str:
    return base64.urlsafe_b64encode(part.encode("utf-8", "surrogatepass")).decode().rstrip("=") or "_"


@functools.lru_cache(maxsize=1 << 16)
def _dec(tok: str) -> str:
    return "" if tok == "_" else base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)).decode("utf-8", "surrogatepass")


def encode_key(key: str) -> str:
    """A state key as subject tokens: each ``/``-separated part base64url-encoded.

    Any key round-trips, and a key prefix is a subject prefix, so ``key_filter`` can select
    e.g. every ``silence/<org>/...`` key of a partition.
    """
    return ".".join(_enc(part) for part in key.split("/"))


def decode_key(tokens: str) -> str:
    return "/".join(_dec(t) for t in tokens.split("."))


def key_filter(*parts: str) -> str:
    """Subject tokens matching every key that starts with ``parts`` (then ``/`` and more)."""
    return ".".join(_enc(p) for p in parts) + ".>"


class StreamNames:
    """Names of one stage's output stream (``name`` like ``events``, ``alerts``)."""

    __slots__ = ("name", "one_per_subject", "prefix", "stream")

    def __init__(self, name: str, prefix: str = "tocsin") -> None:
        self.name = name
        self.one_per_subject = name in ONE_PER_SUBJECT  # made with max_msgs_per_subject: 1
        self.prefix = f"{prefix}.{name}"
        self.stream = f"{prefix.upper()}_{name.upper()}"

    @property
    def all(self) -> str:
        return f"{self.prefix}.>"

    def out(self, p: int, suffix: str = "_", msg_id: str | None = None) -> str:
        """An output subject of ``p``; with ``msg_id``, the subject of that one message."""
        if msg_id is None:
            return f"{self.prefix}.out.{p}.{suffix}"
        return f"{self.prefix}.out.{p}.{suffix}.{message_token(msg_id)}"

    def out_filter(self, p: int) -> str:
        return f"{self.prefix}.out.{p}.>"

    def state(self, p: int, key: str) -> str:
        return f"{self.prefix}.state.{p}.{encode_key(key)}"

    def state_filter(self, p: int, *key_prefix: str) -> str:
        if key_prefix:
            return f"{self.prefix}.state.{p}.{key_filter(*key_prefix)}"
        return f"{self.prefix}.state.{p}.>"

    def key_of_state_subject(self, subject: str) -> str:
        """The state key of a ``state.<p>.<tokens>`` subject."""
        return decode_key(subject.split(".", 4)[4])

    def progress(self, p: int) -> str:
        return f"{self.prefix}.progress.{p}"

    def dlq(self, p: int | str, msg_id: str | None = None) -> str:
        """Dead letters of ``p``; with ``msg_id``, the subject of that one (its own, see above)."""
        return f"{self.prefix}.dlq.{p}" if msg_id is None else f"{self.prefix}.dlq.{p}.{message_token(msg_id)}"

    def dlq_filter(self, p: int | str | None = None) -> str:
        return f"{self.prefix}.dlq.>" if p is None else f"{self.prefix}.dlq.{p}.>"

    def partition_of_subject(self, subject: str) -> int:
        return int(subject.split(".")[3])
