"""How deeply a JSON body nests, found without parsing it, so parsing is bounded in depth.

msgspec (like any recursive parser) raises ``RecursionError`` on a body such as 100,000 ``[``;
the API refuses such a body with a 400 before any handler parses it. API bodies (alerts,
silences, acks) nest four levels at most, so the limit leaves a wide margin. Linear time:
everything runs in C but the walk over the brackets, which stops at the first chunk that
goes too deep.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Final

__all__ = ["MAX_JSON_DEPTH", "json_depth", "too_deep"]

MAX_JSON_DEPTH: Final = 64
_OPENERS: Final = (b"[", b"{")
_NOT_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_SIGN: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # read as signed bytes: +1 / -1
_CHUNK: Final = 1 << 16


def _structural_brackets(body: bytes) -> bytes:
    """The brackets outside strings. Backslashes occur only inside strings: dropping escaped
    backslashes, then escaped quotes, leaves quotes that all delimit strings."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(plain.split(b'"')[0::2]).translate(None, _NOT_BRACKET)


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``body`` (0 for a scalar). With
    ``stop_above``, the first depth found above it is returned as soon as it is seen."""
    depth = deepest = 0
    signs = memoryview(_structural_brackets(body).translate(_SIGN)).cast("b")
    for start in range(0, len(signs), _CHUNK):
        chunk = list(accumulate(signs[start:start + _CHUNK], initial=depth))
        deepest = max(deepest, max(chunk))
        depth = chunk[-1]
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """``body`` nests arrays and objects more than ``limit`` deep (strings do not count)."""
    if sum(body.count(o) for o in _OPENERS) <= limit:  # cannot nest deeper than it opens
        return False
    return json_depth(body, stop_above=limit) > limit
