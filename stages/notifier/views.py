"""Read-only views of the notifier's attempt log for the API.

The API asks for the delivery attempts of a group or an alert and gets :class:`AttemptView`
objects; where the log lives and how its records are written stay the notifier's own
(``ledger.py``).
"""

from __future__ import annotations

from typing import Literal

import msgspec
from nats.js import JetStreamContext

from stages.notifier.ledger import attempts

__all__ = ["AttemptView", "attempts_view"]


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt (``sent`` / ``failed``) or the end of retrying (``gave_up``)."""

    send_id: str
    status: Literal["sent", "failed", "gave_up"]
    at: float
    receiver: str
    integration: str
    group_key: str
    attempt: int
    error: str
    reason: str
    status_code: int
    duration: float
    template_errors: list[str]  # fields sent with their default because their template failed


async def attempts_view(js: JetStreamContext, org: str, *, group_key: str | None = None,
                        fingerprint: str | None = None, since: float | None = None,
                        limit: int = 100) -> list[AttemptView]:
    """The last ``limit`` attempts of the organisation's group (``group_key``) or carrying an
    alert (``fingerprint``), oldest first; ``since`` (Unix seconds) bounds the scan."""
    records = await attempts(js, org, group_key=group_key, fingerprint=fingerprint, since=since, limit=limit)
    return [AttemptView(send_id=r.send_id, status=r.status, at=r.at, receiver=r.receiver, integration=r.integration,
                        group_key=r.group_key, attempt=r.attempt, error=r.error, reason=r.reason,
                        status_code=r.status_code, duration=r.duration, template_errors=list(r.template_errors))
            for r in records]
