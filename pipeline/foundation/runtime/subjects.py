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
the stream which it is (:func:`pipeline.foundation.runtime.jetstream.one_per_subject`).

Tokens derived from text are bounded by construction, so no input (an organisation name, a
resource name from an events row, a silence id) can make an invalid subject, or one longer
than nats-server's ``max_control_line`` (4 KiB, the whole ``HPUB`` line), which closes the
connection every stage shares:

- :func:`token`: the text itself when it is 1 to 64 of ``[A-Za-z0-9_-]``; else ``~`` and its
  base64url when that is at most :data:`MAX_TOKEN` characters (every valid organisation name,
  150 characters, fits: existing subjects do not change); else ``~~`` and a 144-bit digest.
  base64url has no ``~``, so the three forms never collide.
- :func:`encode_key`: a state key's ``/``-separated parts, each base64url-encoded, while the
  tokens fit in :data:`MAX_KEY_CHARS`; the rest of a longer key becomes one token, ``~`` and
  the digest of that rest. The prefixes the readers filter by (family and organisation) are
  always kept, so :func:`key_filter` still selects them; keys of valid organisations, ids and
  hashes never reach the bound, so their subjects are those of older builds.

A digested key cannot be read back from its subject. Its writer adds the whole key in a
header (:func:`state_headers`, :data:`KEY_HEADER`), and a state read takes it from there
(:meth:`StreamNames.key_of_state_subject` with the message's headers): a partition rebuilding
its state recovers every key. Only keys beyond the bound carry the header; a subject without
one decodes as before.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "AUDIT",
    "COMMANDS",
    "DIGEST",
    "EVENTS",
    "KEY_HEADER",
    "MAX_KEY_CHARS",
    "MAX_TOKEN",
    "ONE_PER_SUBJECT",
    "StreamNames",
    "decode_key",
    "encode_key",
    "key_filter",
    "message_token",
    "state_headers",
    "token",
]

#: The streams of the stateful stages (state and outputs side by side, hop B of the brief):
#: made with ``max_msgs_per_subject: 1``. Everything written to them has a subject of its own
#: but the state keys and progress records, whose last value is all that counts.
ONE_PER_SUBJECT = frozenset({"alerts", "groups", "sends", "counts"})

#: Longest :func:`token`. The longest valid organisation (150 characters of 4 UTF-8 bytes)
#: takes 801 as ``~`` + base64url; with a stream prefix and the other tokens a subject stays
#: far below nats-server's 4 KiB control line.
MAX_TOKEN: Final = 1024
#: Longest :func:`encode_key` (all tokens and dots): a state subject is at most this plus its
#: prefix (``tocsin.<stage>.state.<p>.``), half the control line, which also holds the reply
#: subject and sizes (``HPUB``) or a stream name (``$JS.API.DIRECT.GET``).
MAX_KEY_CHARS: Final = 2048
#: Marks a digest token: not in base64url, nor in a safe token.
DIGEST: Final = "~"
#: The header holding a state key (base64url) whose subject ends in a digest.
KEY_HEADER: Final = "Tocsin-Key"

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGEST_BYTES: Final = 18  # 144 bits: 24 base64url characters, no padding
_DIGEST_TOKEN_CHARS: Final = len(DIGEST) + 24


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # base64.urlsafe_b64encode's steps, without its two Python calls (every new key part pays them)
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode().rstrip("=")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _digest(text: str) -> str:
    return _b64(hashlib.blake2b(_utf8(text), digest_size=_DIGEST_BYTES).digest())


def token(text: str) -> str:
    """A NATS subject token for arbitrary text (never longer than :data:`MAX_TOKEN`): itself
    when safe, else ``~`` + base64url, else (too long) ``~~`` + a digest."""
    if _SAFE.fullmatch(text):  # fullmatch: "$" would let a trailing newline through
        return text
    if len(text) <= MAX_TOKEN:  # base64url is at least as long as the text
        encoded = DIGEST + _b64(_utf8(text))
        if len(encoded) <= MAX_TOKEN:
            return encoded
    return DIGEST * 2 + _digest(text)


def message_token(msg_id: str) -> str:
    """The last subject token of an output or dead letter: 16 hex digits of a hash of its
    ``Nats-Msg-Id`` (deterministic, so a redone step writes the same subject)."""
    return hashlib.blake2b(_utf8(msg_id), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=1 << 16)  # key parts repeat (families, organisations, ids): every commit encodes them
def _enc(part: str) -> str:
    return _b64(_utf8(part)) or "_"


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8", "surrogatepass")


@functools.lru_cache(maxsize=1 << 16)
def _dec(tok: str) -> str:
    return "" if tok == "_" else _unb64(tok)


def _encode_parts(parts: list[str]) -> tuple[list[str], bool]:
    """The tokens of ``parts`` within :data:`MAX_KEY_CHARS`, and whether the last is a digest."""
    toks: list[str] = []
    size = -1  # length of ".".join(toks)
    for part in parts:
        # a part longer than the budget cannot fit (base64url is never shorter): not encoded,
        # nor cached
        tok = _enc(part) if len(part) <= MAX_KEY_CHARS else None
        if tok is None or size + 1 + len(tok) > MAX_KEY_CHARS:
            break
        toks.append(tok)
        size += 1 + len(tok)
    else:
        return toks, False
    while toks and size + 1 + _DIGEST_TOKEN_CHARS > MAX_KEY_CHARS:
        size -= 1 + len(toks.pop())
    toks.append(DIGEST + _digest("/".join(parts[len(toks):])))
    return toks, True


def encode_key(key: str) -> str:
    """A state key as subject tokens: each ``/``-separated part base64url-encoded, and a tail
    beyond :data:`MAX_KEY_CHARS` as one digest token (see the module's docstring).

    A key within the bound round-trips (:func:`decode_key`), and a key prefix is a subject
    prefix, so ``key_filter`` can select e.g. every ``silence/<org>/...`` key of a partition.
    """
    parts = key.split("/")
    if len(key) <= MAX_KEY_CHARS // 4:  # (every part short enough to be cached by _enc)
        # the common case, a key within the bound, without _encode_parts' budget: the same tokens
        encoded = ".".join(map(_enc, parts))
        if len(encoded) <= MAX_KEY_CHARS:
            return encoded
    return ".".join(_encode_parts(parts)[0])


def decode_key(tokens: str) -> str:
    """The key of :func:`encode_key`'s tokens. A digest token (the tail of a key beyond the
    bound) cannot be decoded: it is kept as it is, ``res/acme/~<digest>``; the whole key is
    in the message's :data:`KEY_HEADER`."""
    return "/".join(t if t.startswith(DIGEST) else _dec(t) for t in tokens.split("."))


def key_filter(*parts: str) -> str:
    """Subject tokens matching every key that starts with ``parts`` (then ``/`` and more).

    ``ValueError`` if the prefix itself is too long to be kept in a subject (never for a
    family and a valid organisation)."""
    toks, digested = _encode_parts(list(parts))
    if digested or len(".".join(toks)) + 1 + _DIGEST_TOKEN_CHARS > MAX_KEY_CHARS:
        raise ValueError(f"key prefix of {sum(map(len, parts))} characters is too long to filter state by")
    return ".".join(toks) + ".>"


def state_headers(subject: str, key: str, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` for writing ``key`` on its state ``subject``: with the key added
    (:data:`KEY_HEADER`) when the subject ends in a digest, so a reader can recover it."""
    if DIGEST not in subject:
        return headers
    return {**headers, KEY_HEADER: _b64(_utf8(key))}


class StreamNames:
    """Names of one stage's output stream (``name`` like ``events``, ``alerts``).

    In a chain (see :mod:`pipeline.application.graph`) the subjects of every stage stay as they are, but
    they live in the chain's one stream (``stream``), and the partition's progress record is
    the chain's (``progress_prefix``): readers of a stage's state and outputs take both from
    here, whichever the deployment."""

    __slots__ = ("name", "one_per_subject", "prefix", "progress_prefix", "stream")

    def __init__(self, name: str, prefix: str = "tocsin", *, stream: str | None = None,
                 progress_prefix: str | None = None) -> None:
        self.name = name
        self.one_per_subject = name in ONE_PER_SUBJECT  # made with max_msgs_per_subject: 1
        self.prefix = f"{prefix}.{name}"
        self.stream = stream or f"{prefix.upper()}_{name.upper()}"
        self.progress_prefix = progress_prefix or self.prefix

    def __repr__(self) -> str:
        return f"StreamNames({self.name!r}, stream={self.stream!r})"

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

    def key_of_state_subject(self, subject: str, headers: Mapping[str, str] | None = None) -> str:
        """The state key of a ``state.<p>.<tokens>`` subject; pass the message's ``headers``
        to recover a key whose subject ends in a digest (:func:`state_headers`)."""
        tokens = subject.split(".", 4)[4]
        if DIGEST in tokens and headers and (whole := headers.get(KEY_HEADER)):
            return _unb64(whole)
        return decode_key(tokens)

    def progress(self, p: int) -> str:
        return f"{self.progress_prefix}.progress.{p}"

    def dlq(self, p: int | str, msg_id: str | None = None) -> str:
        """Dead letters of ``p``; with ``msg_id``, the subject of that one (its own, see above)."""
        return f"{self.prefix}.dlq.{p}" if msg_id is None else f"{self.prefix}.dlq.{p}.{message_token(msg_id)}"

    def dlq_filter(self, p: int | str | None = None) -> str:
        return f"{self.prefix}.dlq.>" if p is None else f"{self.prefix}.dlq.{p}.>"

    def partition_of_subject(self, subject: str) -> int:
        return int(subject.split(".")[3])


#: The streams no stage of the graph owns, declared once: the source's and the API's events
#: (every stateful stage's first input), commands (silences, acks), and the audit trail. The
#: graph's own streams (alerts, groups, sends) take their names from pipeline.application.graph.
EVENTS: Final = StreamNames("events")
COMMANDS: Final = StreamNames("commands")
AUDIT: Final = StreamNames("audit")
