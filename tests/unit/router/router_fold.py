"""A small fold that drives the router core as the runtime does, shared by the router tests.

``Fold.step`` fires every timer due at or before the input's time (earliest first, each
with ``now`` equal to its deadline), then steps the input; both apply ``Step.changes`` to a
plain dict. ``advance`` moves virtual time on, firing what falls due. Every call checks
that the core did not mutate the state it was given. ``reload`` swaps the core (a config
reload or a restart) and keeps the state; ``roundtrip=True`` also re-decodes the state
from its wire form, as a restarted runtime rebuilds it from the state subjects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from contracts.labels import fingerprint
from contracts.messages import Alert, AlertChange, Cause, GroupFlush
from pipeline.foundation.amconfig import load_config_text
from pipeline.foundation.runtime.step import Out
from stages.router.config import RouteTable
from stages.router.core import RouterCore
from stages.router.state import GroupHead, StateValue
from tests.core_fold import CoreFold

__all__ = ["Fold", "change", "flushes", "heads", "table"]

_enc = msgspec.json.Encoder()



def table(yml: str, orgs: Mapping[str, str] | None = None) -> RouteTable:
    """A route table from alertmanager.yml text (and per-organisation texts)."""
    return RouteTable.from_config(load_config_text(yml),
                                  {org: load_config_text(text) for org, text in (orgs or {}).items()})


def change(labels: Mapping[str, str], at: float, *, starts_at: float | None = None,
           ends_at: float | None = None, org: str = "o1", annotations: Mapping[str, str] | None = None,
           updated_at: float | None = None, trace: Mapping[str, str] | None = None) -> AlertChange:
    """An ``AlertChange`` as the rules stage emits it at stream time ``at``."""
    alert = Alert(fingerprint=fingerprint(labels), org=org, labels=dict(labels),
                  annotations=dict(annotations or {}), starts_at=at if starts_at is None else starts_at,
                  ends_at=ends_at, updated_at=at if updated_at is None else updated_at)
    kind: Literal["resolved", "fired"] = "resolved" if ends_at is not None and ends_at <= at else "fired"
    return AlertChange(change=kind, alert=alert, cause=Cause(kind="push", id=f"r{at}", at=at),
                       trace=dict(trace or {}))


def flushes(outs: list[Out]) -> list[GroupFlush]:
    result = []
    for out in outs:
        assert isinstance(out.payload, GroupFlush)
        result.append(out.payload)
    return result


def heads(state: Mapping[str, StateValue]) -> dict[str, GroupHead]:
    """Group heads by group id."""
    return {key.rsplit("/", 1)[1]: v for key, v in state.items() if isinstance(v, GroupHead)}


class Fold(CoreFold[StateValue]):
    strict_deletes = True

    def step(self, inp: Any, now: float | None = None) -> list[Out]:
        """Fire due timers, then step ``inp`` at ``now`` (default: the input alert's updated_at)."""
        if now is None:
            now = inp.alert.updated_at
        timers = self.advance(now)
        return timers + self._apply(self._call(self.core.step, inp, now))

    def reload(self, core: RouterCore, *, roundtrip: bool = False) -> None:
        self.core = core
        if roundtrip:
            data = {key: _enc.encode(value) for key, value in self.state.items()}
            decoder = msgspec.json.Decoder(core.value_type)
            self.state = {key: decoder.decode(raw) for key, raw in data.items()}
