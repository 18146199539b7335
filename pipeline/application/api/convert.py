"""Internal alerts and silences to Alertmanager's API v2 JSON shapes (pure functions).

The shapes are go-swagger's models as Alertmanager fills them: times are ``strfmt.DateTime``
(RFC 3339 in UTC, milliseconds, Go's zero time for an unknown time), every required list is
a list (``[]``, never null), ``generatorURL`` is left out when empty (``omitempty``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from contracts import Alert, Silence

__all__ = ["ZERO_TIME", "alert_status", "gettable_alert", "gettable_silence", "rfc3339"]

ZERO_TIME = "0001-01-01T00:00:00.000Z"
_MIN = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX = 253402300799.9995  # 9999-12-31T23:59:59.999Z as a float that converts back to year 9999

AlertState = Literal["unprocessed", "active", "suppressed"]


def rfc3339(t: float | None) -> str:
    """Unix seconds as Go's ``strfmt.DateTime`` prints them in UTC; None is Go's zero time.

    Times outside years 1..9999 (which RFC 3339 cannot write) are clamped to that range.
    """
    if t is None or not math.isfinite(t):
        return ZERO_TIME
    t = min(max(t, _MIN), _MAX)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_status(state: AlertState = "active", silenced_by: Sequence[str] = (), inhibited_by: Sequence[str] = (),
                 muted_by: Sequence[str] = ()) -> dict[str, Any]:
    """Alertmanager's ``alertStatus``: the three lists are always present."""
    return {"state": state, "silencedBy": list(silenced_by), "inhibitedBy": list(inhibited_by),
            "mutedBy": list(muted_by)}


def gettable_alert(a: Alert, receivers: Sequence[str], status: dict[str, Any] | None = None, *,
                   open_end: float | None = None) -> dict[str, Any]:
    """Alertmanager's ``gettableAlert``; ``status`` defaults to active and unsuppressed.

    ``updatedAt`` is when the alert last changed (its start if that is unknown); ``endsAt``
    of a firing alert is its end or expected end. An alert with none (an event alert: it
    fires until an event resolves it) shows ``open_end``, as Alertmanager shows an alert its
    sender keeps re-sending: an end ``resolve_timeout`` ahead; Go's zero time without it.
    """
    out: dict[str, Any] = {
        "annotations": dict(a.annotations),
        "endsAt": rfc3339(a.ends_at if a.ends_at is not None else open_end),
        "fingerprint": a.fingerprint,
        "receivers": [{"name": r} for r in receivers],
        "startsAt": rfc3339(a.starts_at),
        "status": status if status is not None else alert_status(),
        "updatedAt": rfc3339(a.updated_at or a.starts_at),
        "labels": dict(a.labels),
    }
    if a.generator_url:
        out["generatorURL"] = a.generator_url
    return out


def gettable_silence(s: Silence, state: Literal["active", "pending", "expired"]) -> dict[str, Any]:
    """Alertmanager's ``gettableSilence``; ``state`` is the silence's state at the time of the read."""
    return {
        "id": s.id,
        "status": {"state": state},
        "updatedAt": rfc3339(s.updated_at or s.starts_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": rfc3339(s.ends_at),
        "startsAt": rfc3339(s.starts_at),
        "matchers": [{"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
                     for m in s.matchers],
    }
