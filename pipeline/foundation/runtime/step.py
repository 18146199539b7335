"""What a stage's pure core returns, and the protocol the runtime drives it through.

A core is pure: ``step`` and ``fire`` read the partition's state (a mapping of key to
value), an input or a due timer, and ``now``, and return a :class:`Step`: the keys to
change (``None`` deletes a key) and the outputs to publish. The runtime commits both
atomically with the partition's progress (hop B of the brief). Timers are state: a value's
``deadline`` is when the runtime calls ``fire`` for its key, with ``now`` equal to that
deadline, so a timer's effect is as deterministic as an input's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgspec

__all__ = ["Out", "Reject", "StageCore", "Step"]

V = TypeVar("V")
I_contra = TypeVar("I_contra", contravariant=True)


@dataclass(slots=True)
class Out:
    """One output message.

    ``msg_id`` should be deterministic in the input (the runtime derives one from the
    input's sequence or the timer when left empty); ``partition`` defaults to the
    partition of the input; ``subject`` defaults to the stage's output subject; ``names``
    (a :class:`~pipeline.foundation.runtime.subjects.StreamNames`) to the stage's output stream (a chain
    sets it: each of its stages keeps its own output subjects).
    """

    payload: msgspec.Struct
    msg_id: str = ""
    partition: int | None = None
    subject: str = ""
    headers: dict[str, str] | None = None
    names: Any = None


@dataclass(slots=True)
class Step(Generic[V]):
    """The effect of one input or timer: state changes and outputs."""

    changes: dict[str, V | None] = field(default_factory=dict)
    outputs: list[Out] = field(default_factory=list)

    def merge(self, other: Step[V]) -> Step[V]:
        self.changes.update(other.changes)
        self.outputs.extend(other.outputs)
        return self


class Reject(Exception):
    """Raised by a core for an input it can never process: it goes to the dead letters."""


class StageCore(Protocol[V, I_contra]):
    """The pure part of a stateful stage."""

    #: msgspec type of state values (decoded from the state subjects)
    value_type: Any

    def step(self, state: Mapping[str, V], inp: I_contra, now: float) -> Step[V]:
        """Apply one input. ``now`` is the input's event time (see ``machine.event_time``)."""
        ...

    def fire(self, state: Mapping[str, V], key: str, now: float) -> Step[V]:
        """Apply the due timer of ``key``. ``now`` is the deadline that fell due."""
        ...

    def deadline(self, key: str, value: V) -> float | None:
        """When ``fire`` is due for ``key`` holding ``value``, or None for no timer."""
        ...
