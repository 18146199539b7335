"""Internal alerts to Alertmanager's API v2 JSON shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts import Alert

__all__ = ["ZERO_TIME", "gettable_alert", "rfc3339"]

ZERO_TIME = "0001-01-01T00:00:00.000Z"


def rfc3339(t: float | None) -> str:
    if t is None:
        return ZERO_TIME
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def gettable_alert(a: Alert, receivers: list[str], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Alertmanager's ``gettableAlert``; ``status`` defaults to active and unsuppressed."""
    return {
        "annotations": a.annotations,
        "endsAt": rfc3339(a.ends_at),
        "fingerprint": a.fingerprint,
        "receivers": [{"name": r} for r in receivers],
        "startsAt": rfc3339(a.starts_at),
        "status": status or {"inhibitedBy": [], "silencedBy": [], "mutedBy": [], "state": "active"},
        "updatedAt": rfc3339(a.updated_at or a.starts_at),
        "generatorURL": a.generator_url,
        "labels": a.labels,
    }
