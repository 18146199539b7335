"""Drive a pure stage core in a unit test as the runtime does, through the partition's own
machine (:class:`~pipeline.foundation.runtime.machine.PartitionMachine`): it applies each
Step's changes to the state and keeps the timers, and fires those due as virtual time
advances (earliest first, by deadline then key, each with ``now`` equal to its deadline;
a timer a firing sets fires in the same pass when due). The fold also checks that the core
never mutates the state it was given."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import msgspec

from pipeline.foundation.runtime.machine import PartitionMachine, StageSpec
from pipeline.foundation.runtime.step import Out, Step
from pipeline.foundation.runtime.subjects import StreamNames

__all__ = ["CoreFold", "snapshot"]

V = TypeVar("V")
_enc = msgspec.json.Encoder()


def snapshot(state: Mapping[str, Any]) -> bytes:
    return _enc.encode(dict(sorted(state.items())))


class _Watched(dict[str, Any]):
    """The fold's state: it notes a change made by hand (not through the machine)."""

    touched = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.touched = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.touched = True
        super().__delitem__(key)

    def __ior__(self, other: Any) -> _Watched:  # type: ignore[override,misc]
        self.touched = True
        return super().__ior__(other)

    def pop(self, *args: Any) -> Any:
        self.touched = True
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self.touched = True
        return super().popitem()

    def clear(self) -> None:
        self.touched = True
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.touched = True
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.touched = True
        return super().setdefault(key, default)


class CoreFold(Generic[V]):
    """The shared fold; stage test modules subclass it and add their own ``step``.

    ``state`` and ``core`` may be replaced (a restart that rebuilds the state, a configuration
    reload), and keys may be set by hand: the machine's timers then follow the state as a
    rebuilt partition's do."""

    strict_deletes = False  # True: deleting a key that does not exist is a test failure

    def __init__(self, core: Any) -> None:
        self.machine = PartitionMachine(StageSpec(name="fold", core=core, inputs=[], output=StreamNames("fold"),
                                                  partitions=1), 0)
        self.outputs: list[Out] = []
        self.now = 0.0
        self.machine.restored(_Watched())

    @property
    def core(self) -> Any:
        return self.machine.spec.core

    @core.setter
    def core(self, core: Any) -> None:  # as a reload does: the next step uses it; state and timers stay
        self.machine.spec.core = core

    @property
    def state(self) -> dict[str, V]:
        return self.machine.state

    @state.setter
    def state(self, state: Mapping[str, V]) -> None:
        self.machine.restored(_Watched(state))

    def _apply(self, step: Step[V]) -> list[Out]:
        if self.strict_deletes:
            for key, value in step.changes.items():
                assert value is not None or key in self.state, f"deletes {key!r} which does not exist"
        self._sync()
        self.machine.apply(step.changes)
        self.machine.state.touched = False  # type: ignore[attr-defined]
        self.outputs.extend(step.outputs)
        return step.outputs

    def _call(self, fn: Any, *args: Any) -> Step[V]:
        before = snapshot(self.state)
        result: Step[V] = fn(MappingProxyType(self.state), *args)
        assert snapshot(self.state) == before, "the core mutated the state it was given"
        return result

    def _sync(self) -> None:
        """Keys set by hand since the machine last changed the state: rebuild its timers (and
        after a new core, as the runtime does)."""
        self.machine.sync_core()
        state = self.machine.state
        if not isinstance(state, _Watched):
            state = _Watched(state)
        elif not state.touched:
            return
        state.touched = False
        self.machine.restored(state)  # (the same dict: a test may hold it)

    def due(self) -> list[tuple[float, str]]:
        """The timers, earliest first."""
        self._sync()
        return sorted((d, key) for key, d in self.machine.deadlines.items())

    def advance(self, to: float) -> list[Out]:
        """Fire every timer due at or before ``to``, earliest first."""
        self._sync()
        fired: list[Out] = []
        while (due := self.machine.next_due(to)) is not None:
            deadline, key = due
            fired += self._apply(self._call(self.core.fire, key, deadline))
        self.now = max(self.now, to)
        return fired
