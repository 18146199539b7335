"""Stream and subject names.

Every stage's output stream ``TOCSIN_<NAME>`` holds, under ``tocsin.<name>.``:

- ``out.<p>.<suffix>``: outputs of partition p (the next stage consumes ``out.<p>.>``);
- ``state.<p>.<key>``: one subject per state key, last value wins (rollup);
- ``progress.<p>``: the partition's progress record, also the fence of its owner;
- ``dlq.<p>``: dead letters, committed atomically with the step that rejected them.
"""

from __future__ import annotations

import base64
import functools
import re

__all__ = [
    "StreamNames",
    "decode_key",
    "encode_key",
    "key_filter",
    "token",
]

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token(text: str) -> str:
    """A NATS subject token for arbitrary text: itself when safe, else ``~`` + base64url."""
    if _SAFE.match(text):
        return text
    return "~" + base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


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

    __slots__ = ("name", "prefix", "stream")

    def __init__(self, name: str, prefix: str = "tocsin") -> None:
        self.name = name
        self.prefix = f"{prefix}.{name}"
        self.stream = f"{prefix.upper()}_{name.upper()}"

    @property
    def all(self) -> str:
        return f"{self.prefix}.>"

    def out(self, p: int, suffix: str = "_") -> str:
        return f"{self.prefix}.out.{p}.{suffix}"

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

    def dlq(self, p: int | str) -> str:
        return f"{self.prefix}.dlq.{p}"

    def partition_of_subject(self, subject: str) -> int:
        return int(subject.split(".")[3])
