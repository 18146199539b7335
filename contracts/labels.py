"""Label sets and their fingerprints, as Prometheus computes them."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fingerprint", "fingerprint_int"]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = 0xFFFFFFFFFFFFFFFF
_SEP = 0xFF


def fingerprint_int(labels: Mapping[str, str]) -> int:
    """FNV-1a 64 over sorted names and values with 0xff separators (Prometheus' model)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for b in part.encode():
                h = ((h ^ b) * _FNV_PRIME) & _MASK
            h = ((h ^ _SEP) * _FNV_PRIME) & _MASK
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint as Alertmanager prints it: 16 lower-case hex digits."""
    return f"{fingerprint_int(labels):016x}"
