"""Drive a pure stage core in a unit test as the runtime would: apply each Step's changes to a
dict, fire due deadlines in order as virtual time advances, and check the core never mutates
the state it was given."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import msgspec

from pipeline.foundation.runtime.step import Out, Step

V = TypeVar("V")
_enc = msgspec.json.Encoder()


def snapshot(state: Mapping[str, Any]) -> bytes:
    return _enc.encode(dict(sorted(state.items())))


class CoreFold(Generic[V]):
    """The shared fold; stage test modules subclass it and add their own ``step``."""

    strict_deletes = False  # True: deleting a key that does not exist is a test failure

    def __init__(self, core: Any) -> None:
        self.core = core
        self.state: dict[str, V] = {}
        self.outputs: list[Out] = []
        self.now = 0.0

    def _apply(self, step: Step[V]) -> list[Out]:
        for key, value in step.changes.items():
            if value is None:
                assert not self.strict_deletes or key in self.state, f"deletes {key!r} which does not exist"
                self.state.pop(key, None)
            else:
                self.state[key] = value
        self.outputs.extend(step.outputs)
        return step.outputs

    def _call(self, fn: Any, *args: Any) -> Step[V]:
        before = snapshot(self.state)
        result: Step[V] = fn(MappingProxyType(self.state), *args)
        assert snapshot(self.state) == before, "the core mutated the state it was given"
        return result

    def due(self) -> list[tuple[float, str]]:
        out = []
        for key, value in self.state.items():
            d = self.core.deadline(key, value)
            if d is not None:
                out.append((d, key))
        return sorted(out)

    def advance(self, to: float) -> list[Out]:
        """Fire every timer due at or before ``to``, earliest first."""
        fired: list[Out] = []
        while True:
            due = self.due()
            if not due or due[0][0] > to:
                break
            deadline, key = due[0]
            fired += self._apply(self._call(self.core.fire, key, deadline))
        self.now = max(self.now, to)
        return fired
