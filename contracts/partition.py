"""The partition function: the same everywhere (source, API, every stage)."""

from __future__ import annotations

__all__ = ["DEFAULT_PARTITIONS", "partition_of"]

DEFAULT_PARTITIONS = 16


def partition_of(org: str, partitions: int) -> int:
    """FNV-1a 32 of the organisation's UTF-8 bytes, modulo the partition count."""
    h = 0x811C9DC5
    for b in org.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % partitions
