"""Label sets and their fingerprints, as Prometheus computes them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

__all__ = ["fingerprint", "fingerprint_int"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 0xFFFFFFFFFFFFFFFF
_SEP = 0xFF


def _fnv_py(pairs: tuple[tuple[str, str], ...]) -> int:
    """The reference: byte by byte, in Python (about 9 µs for a typical alert's labels)."""
    h = _FNV_OFFSET
    for name, value in pairs:
        for part in (name, value):
            for b in part.encode():
                h = ((h ^ b) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEP) * _FNV_PRIME) & _MASK
    return h


def _fnv_c(pairs: tuple[tuple[str, str], ...]) -> int:
    """The same hash over the same bytes, hashed in C by ``fnv-c`` (about 1 µs)."""
    data = b"\xff".join([part.encode() for pair in pairs for part in pair]) + b"\xff" if pairs else b""
    return int(_fnv1a_64(data, len(data)))


try:  # fnv-c ships wheels for the usual platforms; anywhere else the reference does the work
    from fnv_c.ext._fnv import lib as _fnv_lib

    _fnv1a_64 = _fnv_lib.fnv1a_64
    _fnv = _fnv_c
except ImportError:  # pragma: no cover - depends on the platform
    _fnv = _fnv_py


_CACHE: dict[tuple[tuple[str, str], ...], int] = {}
_CACHE_SIZE = 1 << 16  # label sets remembered; the oldest goes first


def fingerprint_int(labels: Mapping[str, str]) -> int:
    """FNV-1a 64 over sorted names and values with 0xff separators (Prometheus' model).

    Remembered per label set: the same alerts come back event after event. Hashing byte by
    byte in Python was a tenth of the rules stage's CPU; in C a miss costs little more than
    a hit.
    """
    pairs = tuple(sorted(labels.items()))
    h = _CACHE.get(pairs)
    if h is None:
        h = _CACHE[pairs] = _fnv(pairs)
        if len(_CACHE) > _CACHE_SIZE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread evicted it
                del _CACHE[next(iter(_CACHE))]
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint as Alertmanager prints it: 16 lower-case hex digits."""
    return f"{fingerprint_int(labels):016x}"
