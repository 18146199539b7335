"""Dead letters that always fit in one NATS message.

A dead letter keeps the input whole when it fits in ``budget`` bytes (so it can be replayed);
otherwise a bounded excerpt (the first :data:`EXCERPT_BYTES`), with the original's size and
sha256 digest, and bounded reason, subject, key and headers. The bounded form is at most
about 80 KiB whatever the input, so with a budget of at least :data:`MIN_BUDGET` the dead
letter can always be written: a stage never loops on a dead letter too large to store.
"""

from __future__ import annotations

import hashlib

import msgspec

from contracts import DeadLetter

__all__ = ["CAUSES", "EXCERPT_BYTES", "MIN_BUDGET", "bounded", "build_dead_letter", "digest"]

EXCERPT_BYTES = 4096  # of an input too large to keep whole
MIN_BUDGET = 128 * 1024  # the bounded form's worst case (every character escaped as \u00XX) is well under this
_MAX_REASON = 1024  # characters
_MAX_SUBJECT = 4096  # a NATS subject is shorter than the server's control line (4 KiB) anyway
_MAX_KEY = 1024
_MAX_HEADERS = 16
_MAX_HEADER_NAME = 64
_MAX_HEADER_VALUE = 256

#: The causes a stage's dead letter names (the ``cause`` label of ``tocsin_stage_dead_letters``).
CAUSES = ("undecodable", "rejected", "step_failed", "too_large", "refused")

_encoder = msgspec.json.Encoder()


def digest(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (marked with an ellipsis), and valid UTF-8."""
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate would not encode


def _bounded_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in list(headers.items())[:_MAX_HEADERS]:
        out[bounded(name, _MAX_HEADER_NAME)] = bounded(value, _MAX_HEADER_VALUE)
    return out


def build_dead_letter(*, stage: str, reason: str, budget: int, payload: bytes = b"", subject: str = "",
                      stream_seq: int = 0, headers: dict[str, str] | None = None, at: float = 0.0,
                      key: str = "", cause: str = "") -> tuple[DeadLetter, bytes]:
    """The dead letter and its JSON encoding, at most ``budget`` bytes."""
    if budget < MIN_BUDGET:
        raise ValueError(f"a dead letter budget of {budget} bytes is under the minimum of {MIN_BUDGET}")
    size, sha = len(payload), digest(payload)
    reason = bounded(reason, _MAX_REASON)
    if len(payload) < budget:  # (base64 makes it 4/3 as large: most too large ones skip the encoding)
        letter = DeadLetter(stage=stage, reason=reason, subject=subject, stream_seq=stream_seq, payload=payload,
                            headers=dict(headers or {}), at=at, key=key, size=size, digest=sha, cause=cause)
        try:
            data = _encoder.encode(letter)
        except (msgspec.EncodeError, UnicodeEncodeError):
            pass  # text that is not valid UTF-8: the bounded form cleans it
        else:
            if len(data) <= budget:
                return letter, data
    letter = DeadLetter(stage=bounded(stage, 64), reason=reason, subject=bounded(subject, _MAX_SUBJECT),
                        stream_seq=stream_seq, payload=payload[:EXCERPT_BYTES],
                        headers=_bounded_headers(headers or {}), at=at, key=bounded(key, _MAX_KEY), size=size,
                        digest=sha, cause=bounded(cause, 32))
    return letter, _encoder.encode(letter)
