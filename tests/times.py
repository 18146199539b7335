"""Time helpers shared by the API and pipeline tests."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso"]


def iso(t: float) -> str:
    """RFC 3339 in UTC with a ``Z``, as Alertmanager clients send times."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
