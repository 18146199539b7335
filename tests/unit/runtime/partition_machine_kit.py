"""A toy core and a stand-in stream for the partition machine's tests.

:class:`Toy` counts inputs per key, can set a timer, and emits what it is told to (many
outputs, large ones, a Reject, a bug). :class:`Stream` keeps what the machine commits as
JetStream would: the last value per state subject, the progress record, outputs and dead
letters deduplicated by ``Nats-Msg-Id``; a partition restarted from it reads back its state
as the worker does. :func:`drive` runs one batch through the machine, doing its actions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline.foundation.runtime.machine import (
    Ack,
    Commit,
    Delivered,
    Done,
    Input,
    PartitionMachine,
    Progress,
    Recount,
    Reset,
    StageSpec,
    claim,
)
from pipeline.foundation.runtime.step import Out, Reject, Step
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import DELETED

__all__ = ["IN", "OUT", "Ev", "Fired", "Run", "Stream", "Toy", "Val", "deliveries", "drive", "ev", "machine"]

IN = StreamNames("toyin")
OUT = StreamNames("toy")


class Ev(msgspec.Struct, omit_defaults=True):
    """An input: add ``n`` to ``key``; ``fan`` outputs of ``pad`` bytes each; a timer ``wait``
    seconds on; ``state_pad`` bytes in the state value; or fail (``reject``, ``boom``)."""

    key: str
    n: int = 1
    fan: int = 1
    pad: int = 0
    wait: float | None = None
    state_pad: int = 0
    reject: bool = False
    boom: bool = False
    drop: bool = False  # delete the key


class Val(msgspec.Struct, omit_defaults=True):
    count: int = 0
    total: int = 0
    due: float | None = None
    pad: str = ""


class Echo(msgspec.Struct):
    key: str
    count: int
    i: int
    pad: str = ""


class Fired(msgspec.Struct):
    key: str
    at: float
    count: int


class Toy:
    value_type = Val

    def __init__(self, *, fire_fails: bool = False, fire_fan: int = 1, fire_pad: int = 0) -> None:
        self.fire_fails, self.fire_fan, self.fire_pad = fire_fails, fire_fan, fire_pad

    def step(self, state: Mapping[str, Val], inp: Ev, now: float) -> Step[Val]:
        if inp.reject:
            raise Reject(f"no {inp.key}")
        if inp.boom:
            raise RuntimeError("a bug")
        if inp.drop:
            return Step(changes={inp.key: None}, outputs=[])
        old = state.get(inp.key) or Val()
        due = now + inp.wait if inp.wait is not None else old.due
        new = Val(count=old.count + 1, total=old.total + inp.n, due=due, pad="s" * inp.state_pad)
        outs = [Out(payload=Echo(inp.key, new.count, i, "x" * inp.pad), subject=inp.key) for i in range(inp.fan)]
        return Step(changes={inp.key: new}, outputs=outs)

    def fire(self, state: Mapping[str, Val], key: str, now: float) -> Step[Val]:
        if self.fire_fails:
            raise RuntimeError("a timer bug")
        old = state[key]
        outs = [Out(payload=Fired(key, now, old.count), subject=key, msg_id=f"fired:{key}:{now!r}:{i}",
                    headers=None) for i in range(self.fire_fan)]
        if self.fire_pad:
            for out in outs:
                out.payload = Echo(key, old.count, 0, "f" * self.fire_pad)
        return Step(changes={key: msgspec.structs.replace(old, due=None)}, outputs=outs)

    def deadline(self, key: str, value: Val) -> float | None:
        return value.due


def machine(core: Any = None, *, max_commit_bytes: int = 32 * 1024 * 1024, max_payload: int = 1024 * 1024,
            progress: Mapping[str, int] | None = None, state: dict[str, Any] | None = None,
            pending: int = 0, rollup: bool = False) -> PartitionMachine:
    """A machine of partition 0 of stage ``toy``, acquired and bound."""
    spec = StageSpec(name="toy", core=core or Toy(), inputs=[Input("in", IN, msgspec.json.Decoder(Ev).decode)],
                     output=OUT, partitions=1, max_commit_bytes=max_commit_bytes)
    m = PartitionMachine(spec, 0, max_payload=max_payload)
    m.claimed(claim(Progress(inputs=dict(progress or {})), "me"), rollup=rollup)
    m.restored(dict(state or {}))
    m.bound("in", pending)
    return m


def ev(key: str = "k", **kw: Any) -> bytes:
    return msgspec.json.encode(Ev(key, **kw))


def deliveries(items: Sequence[tuple[int, float, bytes]], *, first_dseq: int = 1, total: int | None = None,
               headers: Mapping[int, dict[str, str]] | None = None) -> list[Delivered]:
    """(stream seq, stream time, data) as delivered one after the other; pending: ``total``
    less the highest sequence delivered so far (0 when ``total`` is None)."""
    out, top = [], 0
    for i, (seq, t, data) in enumerate(items):
        top = max(top, seq)
        out.append(Delivered.at(seq, first_dseq + i, time=t, pending=(total - top) if total else 0, data=data,
                                subject=IN.out(0, "x"), headers=(headers or {}).get(seq)))
    return out


@dataclass
class Stream:
    """The output stream as JetStream keeps it (see the module)."""

    state: dict[str, bytes] = field(default_factory=dict)  # state subject -> last value
    progress: Progress = field(default_factory=Progress)
    outputs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # msg id -> (subject, payload)
    dead: dict[str, bytes] = field(default_factory=dict)  # msg id -> dead letter

    def store(self, commit: Commit) -> None:
        for start, end in commit.chunks:
            self.progress = msgspec.json.decode(commit.progress.payload, type=Progress)
            for m in commit.body[start:end]:
                hdrs = m.headers or {}
                if ".state." in m.subject:
                    if hdrs.get(DELETED):
                        self.state.pop(m.subject, None)
                    else:
                        self.state[m.subject] = m.payload
                elif ".dlq." in m.subject:
                    self.dead.setdefault(hdrs["Nats-Msg-Id"], m.payload)
                else:
                    self.outputs.setdefault(hdrs["Nats-Msg-Id"], (m.subject, m.payload))

    def read_state(self) -> dict[str, Val]:
        return {OUT.key_of_state_subject(s): msgspec.json.decode(v, type=Val) for s, v in self.state.items()}

    def restart(self, core: Any = None, *, total: int = 0, **kw: Any) -> PartitionMachine:
        """A new process owns the partition: it claims it and reads its state back (``total``:
        inputs in the input stream)."""
        return machine(core, progress=self.progress.inputs, state=self.read_state(),
                       pending=max(0, total - self.progress.inputs.get("in", 0)), **kw)

    def reacquire(self, m: PartitionMachine, *, total: int = 0) -> None:
        """The same worker acquires the partition again (after a reset): what the machine must
        dead-letter or commit one at a time stays."""
        m.claimed(claim(self.progress, "me"), rollup=m.rollup)
        m.restored(self.read_state())
        m.bound("in", max(0, total - self.progress.inputs.get("in", 0)))


@dataclass
class Run:
    """What one batch did."""

    actions: list[Any]
    commits: list[Commit]
    reset: Reset | None = None

    @property
    def acked(self) -> list[Any]:
        return [m for a in self.actions if isinstance(a, Ack) for m in a.msgs]


def drive(m: PartitionMachine, batch: Sequence[Any], wall: float, *, stream: Stream | None = None,
          refuse: Callable[[Commit], str | None] = lambda c: None, recount: Mapping[str, int] | None = None,
          crash_after: int | None = None, too_large: bool = False) -> Run:
    """Run one fetched batch (``batch``: deliveries of input ``in``; empty: a tick) to its end.
    ``refuse``: the description of a commit the server refuses for good (or None);
    ``crash_after``: stop (the process dies) after that many commits (at the ack at the latest)."""
    run = Run([], [])
    action = m.fetched([("in", list(batch))] if batch else [], wall)
    while True:
        run.actions.append(action)
        if isinstance(action, Done):
            return run
        if isinstance(action, Reset):
            run.reset = action
            return run
        if isinstance(action, Commit):
            if crash_after is not None and len(run.commits) == crash_after:
                m.abandoned()
                return run
            why = refuse(action)
            if why is not None:
                run.reset = m.refused(why, too_large=too_large)
                run.actions.append(run.reset)
                return run
            run.commits.append(action)
            if stream is not None:
                stream.store(action)
            action = m.committed()
        elif isinstance(action, Recount):
            action = m.recounted(dict(recount or {}))
        elif isinstance(action, Ack):
            if crash_after is not None:  # every commit stored, the inputs not acked
                m.abandoned()
                return run
            action = m.acked()
        else:
            raise AssertionError(action)
