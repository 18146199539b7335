"""A chain: the pure cores of consecutive same-partitioned stages composed into one core.

The brief's §4b. A :class:`ChainCore` is an ordinary :class:`~pipeline.foundation.runtime.step.StageCore`
for the runtime (:class:`~pipeline.foundation.runtime.machine.PartitionMachine`), so the hop-B protocol is
the chain's: one fenced atomic batch commits the progress, the changed state keys of every
member, the outputs anything outside the chain reads, and dead letters.

- **Inputs.** An input goes to the first member that takes its type from outside the chain
  (rules takes events, the filter takes commands). Every output of a member is handed, in the
  same step and at the same event time, to each later member that consumes that member's
  output stream and takes its type (an alert change to the router and the filter, a group
  flush to the filter), in the order they were made.
- **Timers.** Every member's timers are state, so they are the chain's: a due key fires its
  member, and the outputs go down the chain as an input's do (a router flush due at T reaches
  the filter in the same step, at T). At equal deadlines an earlier member's timer fires first
  (the heap orders them by key): what a timer at T makes is part of what later members decide at
  T, so the router's flush at a tick reaches the filter before the filter's own timers of that
  tick (see :func:`pipeline.application.graph.filter_in_chain`).
- **State.** A member's key ``k`` is the chain's key ``"<tag>:k"`` (:data:`ChainMember.tag`, one
  digit, its place in the chain). On the wire it stays on
  the member's own subjects (:class:`ChainLayout`): ``tocsin.<stage output>.state.<p>.<k>``, so
  the API reads the router's groups and the filter's silences as in the ``separate`` deployment.
  Within one step a member sees what earlier members' steps of it changed (an overlay).
- **Outputs** of a member whose outputs something outside reads (``keep``: alert changes for the
  history, send requests for the notifier) are published on its own output subjects
  (``Out.names``); the others (group flushes) are only handed on.
- **Failures** of a later member (a Reject, a bug) dead-letter that intermediate message alone,
  as the later stage would have in the ``separate`` deployment: what the earlier members
  decided stands. A failure of the entry member (or of a firing one) is the runtime's, as for
  any core: the whole input or timer is dead-lettered.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.messages import DeadLetter
from pipeline.foundation.runtime.deadletter import bounded
from pipeline.foundation.runtime.step import Out, Reject, StageCore, Step
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.telemetry import child_span, payload_attributes
from pipeline.foundation.telemetry import enabled as tracing_enabled

__all__ = ["ChainCore", "ChainLayout", "ChainMember"]

log = logging.getLogger("tocsin.chain")

#: Bytes of an intermediate message kept in the dead letter of a later member's failure.
DEAD_LETTER_EXCERPT = 64 * 1024


@dataclass
class ChainMember:
    """One stage of a chain."""

    name: str
    core: StageCore[Any, Any]
    names: StreamNames  # its output stream's names (the chain's stream, its own subjects)
    takes: tuple[type, ...]  # the input types it takes from outside the chain
    feeds_on: tuple[tuple[int, tuple[type, ...]], ...] = ()  # (earlier member, the types taken from it)
    keep: bool = True  # its outputs are published (something outside the chain reads them)
    tag: str = ""  # set by ChainCore
    decoder: Any = field(default=None, repr=False)


class _DeadLetters:
    """``Out.names`` of a chain's dead letter: its subject is the chain's dead-letter subject."""

    def __init__(self, names: StreamNames) -> None:
        self.names = names

    def out(self, p: int, suffix: str = "_", msg_id: str | None = None) -> str:
        return self.names.dlq(p, msg_id)


_ABSENT = object()  # a key this step did not change


class _View(Mapping[str, Any]):
    """A member's state: the chain's keys of its tag, with this step's changes over them."""

    __slots__ = ("base", "overlay", "tag")

    def __init__(self, base: Mapping[str, Any], tag: str, overlay: dict[str, Any]) -> None:
        self.base, self.tag, self.overlay = base, tag, overlay

    def __getitem__(self, key: str) -> Any:
        ck = self.tag + key
        value = self.overlay.get(ck, _ABSENT)
        if value is _ABSENT:
            return self.base[ck]
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        ck = self.tag + key
        value = self.overlay.get(ck, _ABSENT)
        if value is _ABSENT:
            return self.base.get(ck, default)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:  # (views and reindexing only: not on the hot path)
        n, tag, overlay = len(self.tag), self.tag, self.overlay
        for ck in self.base:
            if ck.startswith(tag) and (ck not in overlay or overlay[ck] is not None):
                yield ck[n:]
        for ck, value in overlay.items():
            if ck.startswith(tag) and value is not None and ck not in self.base:
                yield ck[n:]

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ChainCore:
    """The composed core of a chain's members (in chain order)."""

    value_type: Any = object  # (values are decoded by key: decode_value)

    def __init__(self, members: Sequence[ChainMember], name: str = "chain") -> None:
        if not members or len(members) > 10:
            raise ValueError("a chain has 1 to 10 members")
        self.name = name
        self.members = list(members)
        for i, m in enumerate(self.members):
            m.tag = f"{i}:"  # in chain order: at equal deadlines an earlier member's timer fires first
            m.decoder = msgspec.json.Decoder(m.core.value_type)
            for j, _ in m.feeds_on:
                if not 0 <= j < i:
                    raise ValueError(f"{m.name} feeds on member {j}, which is not before it")
        self._by_tag = {m.tag: i for i, m in enumerate(self.members)}
        self._deadline_of = {m.tag: m.core.deadline for m in self.members}
        # member i's outputs go to: [(j, types)]
        self._downstream: list[list[tuple[int, tuple[type, ...]]]] = [[] for _ in self.members]
        for j, m in enumerate(self.members):
            for i, types in m.feeds_on:
                self._downstream[i].append((j, types))
        self._dead = _DeadLetters(self.members[-1].names)

    def with_cores(self, cores: Sequence[StageCore[Any, Any]]) -> ChainCore:
        """The same chain with new cores (a configuration reload): state and timers stay."""
        return ChainCore([ChainMember(m.name, core, m.names, m.takes, m.feeds_on, m.keep)
                          for m, core in zip(self.members, cores, strict=True)], self.name)

    # ------------------------------------------------------------------ StageCore
    def step(self, state: Mapping[str, Any], inp: Any, now: float) -> Step[Any]:
        for i, m in enumerate(self.members):
            if isinstance(inp, m.takes):
                return self._run(state, i, inp, None, now)
        raise Reject(f"no stage of the {self.name} takes {type(inp).__name__}")

    def fire(self, state: Mapping[str, Any], key: str, now: float) -> Step[Any]:
        i = self._by_tag.get(key[:2])
        if i is None:
            return Step()
        return self._run(state, i, None, key[2:], now)

    def deadline(self, key: str, value: Any) -> float | None:
        deadline = self._deadline_of.get(key[:2])  # (the runtime asks for every key a step changes)
        return None if deadline is None else deadline(key[2:], value)

    def decode_value(self, key: str, data: bytes) -> Any:
        return self.members[self._by_tag[key[:2]]].decoder.decode(data)

    def member_state(self, state: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """One member's state as its core sees it (tests, views)."""
        m = next(m for m in self.members if m.name == name)
        return _View(state, m.tag, {})

    # ------------------------------------------------------------------ the chained step
    def _run(self, state: Mapping[str, Any], first: int, inp: Any, key: str | None, now: float) -> Step[Any]:
        """Member ``first`` steps ``inp`` (or fires ``key``, when not None), then the chain hands
        the outputs on (see the module)."""
        changes: dict[str, Any] = {}
        outputs: list[Out] = []
        queue: deque[tuple[int, Any, Out]] = deque()
        entry = self.members[first]
        members = self.members
        views: list[_View | None] = [None] * len(members)  # (one per member of this step: they share the overlay)
        views[first] = view = _View(state, entry.tag, changes)
        traced = tracing_enabled()  # then a span per member's step inside the chain's (the runtime's) step span
        if traced:
            with child_span(entry.name, {"tocsin.stage": entry.name}):
                result = entry.core.step(view, inp, now) if key is None else entry.core.fire(view, key, now)
        else:
            result = entry.core.step(view, inp, now) if key is None else entry.core.fire(view, key, now)
        self._absorb(first, result, changes, outputs, queue)
        while queue:
            j, payload, origin = queue.popleft()
            m = members[j]
            known = views[j]
            if known is None:  # ("is None": a view's truth would count its keys)
                known = views[j] = _View(state, m.tag, changes)
            view = known
            if traced:
                with child_span(m.name, {"tocsin.stage": m.name, **payload_attributes(payload)}) as span:
                    try:
                        result = m.core.step(view, payload, now)
                    except Exception as exc:  # (a Reject, or a bug): as the stage alone would, dead-letter it
                        if span is not None:
                            span.set_attribute("tocsin.dead_letter", type(exc).__name__)
                        outputs.append(self._dead_letter(m, payload, origin, exc, now))
                        continue
            else:
                try:
                    result = m.core.step(view, payload, now)
                except Exception as exc:  # (as above)
                    outputs.append(self._dead_letter(m, payload, origin, exc, now))
                    continue
            self._absorb(j, result, changes, outputs, queue)
        return Step(changes=changes, outputs=outputs)

    def _absorb(self, i: int, result: Step[Any], changes: dict[str, Any], outputs: list[Out],
                queue: deque[tuple[int, Any, Out]]) -> None:
        m = self.members[i]
        tag = m.tag
        for key, value in result.changes.items():
            changes[tag + key] = value
        downstream = self._downstream[i]
        for out in result.outputs:
            if m.keep:
                out.names = m.names
                outputs.append(out)
            for j, types in downstream:
                if isinstance(out.payload, types):
                    queue.append((j, out.payload, out))

    def _dead_letter(self, m: ChainMember, payload: Any, origin: Out, exc: Exception, now: float) -> Out:
        cause = "rejected" if isinstance(exc, Reject) else "step_failed"
        if isinstance(exc, RecursionError):
            reason = "step failed: nested too deep (RecursionError)"
        elif isinstance(exc, Reject):
            reason = f"rejected: {exc}"
        else:
            log.exception("%s: %s failed on %s", self.name, m.name, type(payload).__name__)
            reason = f"step failed: {exc!r}"
        data = msgspec.json.encode(payload)
        letter = DeadLetter(stage=m.name, reason=bounded(reason, 1000), payload=data[:DEAD_LETTER_EXCERPT],
                            at=now, size=len(data), cause=cause)
        return Out(payload=letter, msg_id=f"dlq:{m.name}:{origin.msg_id}" if origin.msg_id else "",
                   names=self._dead)


class ChainLayout:
    """Where a chain's state keys live: each member's on its own state subjects (see the module)."""

    def __init__(self, core: ChainCore) -> None:
        self.members = [(m.tag, m.names) for m in core.members]
        self._by_prefix = {f"{names.prefix}.": tag for tag, names in self.members}
        self._names = dict(self.members)

    def state(self, p: int, key: str) -> str:
        return self._names[key[:2]].state(p, key[2:])

    def state_filter(self, p: int) -> list[str]:
        return [names.state_filter(p) for _, names in self.members]

    def key_of_state_subject(self, subject: str, headers: Mapping[str, str] | None = None) -> str:
        prefix = subject[:subject.index(".", subject.index(".") + 1) + 1]  # "tocsin.<name>."
        tag = self._by_prefix[prefix]
        return tag + self._names[tag].key_of_state_subject(subject, headers)

    @staticmethod
    def stored_key(key: str) -> str:
        """The key as a reader of the member's state sees it (in a digested subject's header)."""
        return key[2:]
