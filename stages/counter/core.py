"""Counts events per (org, resource) and fires a timer ``delay`` seconds after a key's first event.

It exists to prove the runtime: its outputs are deterministic in its inputs, so a run that
was SIGKILLed and restarted must produce exactly the same outputs as one that was not.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from contracts import Event
from pipeline.foundation.runtime.step import Out, Reject, Step

__all__ = ["Count", "CounterCore", "CounterValue"]


class CounterValue(msgspec.Struct, array_like=True):
    count: int
    deadline: float | None = None  # the key's timer, None once it fired
    fired_at: float | None = None


class Count(msgspec.Struct, tag_field="type", tag="count.v1", kw_only=True):
    key: str
    count: int = 0
    timer: float | None = None  # set on the output of the timer (its deadline)


class CounterCore:
    """StageCore of the counter stage."""

    value_type = CounterValue

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay

    def step(self, state: Mapping[str, CounterValue], inp: Event, now: float) -> Step[CounterValue]:
        if not isinstance(inp, Event):
            raise Reject(f"the counter counts events, not {type(inp).__name__}")
        if inp.reason == "Poison":
            raise Reject("poison event")
        key = f"{inp.org}/{inp.resource_name}"
        old = state.get(key)
        if old is None:
            new = CounterValue(count=1, deadline=inp.occurred_at + self.delay)
        else:
            new = CounterValue(count=old.count + 1, deadline=old.deadline, fired_at=old.fired_at)
        out = Out(Count(key=key, count=new.count), msg_id=f"count:{key}:{new.count}")
        return Step(changes={key: new}, outputs=[out])

    def fire(self, state: Mapping[str, CounterValue], key: str, now: float) -> Step[CounterValue]:
        old = state[key]
        new = CounterValue(count=old.count, deadline=None, fired_at=now)
        return Step(changes={key: new}, outputs=[Out(Count(key=key, timer=now), msg_id=f"timer:{key}")])

    def deadline(self, key: str, value: CounterValue) -> float | None:
        return value.deadline
