"""A tiny fold that drives the rules core as the runtime does, shared by the rules tests.

``Fold.step`` first fires every timer due by the input's time (in deadline order, each with
``now`` equal to its deadline), then steps the input; both apply ``Step.changes`` to a plain
dict. ``eager=False`` leaves timers to the core's own catch-up until ``advance`` is called,
like a runtime whose timer loop lags behind its inputs. Every call checks that the core did
not mutate the state it was given.
"""

from __future__ import annotations

import itertools
from typing import Any

from contracts.messages import AlertChange, Event, PushedAlert, PushedAlerts
from pipeline.foundation.runtime.step import Out, Reject
from stages.rules.core import RulesCore
from stages.rules.state import StateValue
from tests.core_fold import CoreFold

__all__ = ["Fold", "changes", "ev", "pa", "payloads", "push"]

_ids = itertools.count(1)



class Fold(CoreFold[StateValue]):
    def __init__(self, core: RulesCore, *, eager: bool = True) -> None:
        super().__init__(core)
        self.eager = eager
        self.rejects: list[str] = []

    def step(self, inp: Any, now: float | None = None) -> list[Out]:
        """Fire due timers (eager mode), then step ``inp`` at ``now`` (default: the current time)."""
        now = self.now if now is None else now
        timers = self.advance(now) if self.eager else []
        self.now = max(self.now, now)
        try:
            result = self._call(self.core.step, inp, now)
        except Reject as exc:
            self.rejects.append(str(exc))
            raise
        return timers + self._apply(result)


def changes(outs: list[Out]) -> list[tuple[str, str]]:
    """(change, alertname) of each output, in order."""
    result: list[tuple[str, str]] = []
    for o in outs:
        assert isinstance(o.payload, AlertChange)
        result.append((o.payload.change, o.payload.alert.labels.get("alertname", "")))
    return result


def payloads(outs: list[Out]) -> list[AlertChange]:
    result = []
    for o in outs:
        assert isinstance(o.payload, AlertChange)
        result.append(o.payload)
    return result


def ev(
    reason: str,
    at: float,
    *,
    org: str = "o1",
    kind: str = "Device",
    name: str = "d1",
    message: str = "",
    fields: dict[str, Any] | None = None,
    severity: str = "",
    id: str | None = None,
    op: str = "insert",
) -> Event:
    return Event(
        id=id or f"e{next(_ids)}",
        org=org,
        reason=reason,
        resource_kind=kind,
        resource_name=name,
        occurred_at=at,
        message=message,
        severity=severity,
        fields=fields or {},
        op=op,  # type: ignore[arg-type]
        trace={"traceparent": "00-abc-def-01"},
    )


def pa(
    labels: dict[str, str],
    *,
    starts: float | None = None,
    ends: float | None = None,
    ann: dict[str, str] | None = None,
    url: str = "",
) -> PushedAlert:
    return PushedAlert(labels=labels, annotations=ann or {}, starts_at=starts, ends_at=ends, generator_url=url)


def push(*alerts: PushedAlert, at: float, org: str = "o1", request_id: str | None = None) -> PushedAlerts:
    return PushedAlerts(
        request_id=request_id or f"r{next(_ids)}",
        org=org,
        received_at=at,
        alerts=list(alerts),
        trace={"traceparent": "00-push-01"},
    )
