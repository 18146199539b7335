"""The stage graph as data, and the chain's composed core against its stages' cores run apart."""

from __future__ import annotations

import heapq
import random
import typing
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from contracts.messages import AlertChange, DeadLetter, GroupFlush, SendRequest, Silence, SilenceCommand, SilenceMatcher
from pipeline.application.app import Settings
from pipeline.application.graph import (
    CHAIN,
    CHAINED,
    GRAPH,
    SEPARATE,
    chain_core,
    chains,
    process_stages,
    stage_specs,
    stream_names,
)
from pipeline.application.settings import load_text
from pipeline.foundation.runtime.chain import ChainCore, ChainLayout, ChainMember
from pipeline.foundation.runtime.step import Out, Reject, Step
from pipeline.foundation.runtime.subjects import StreamNames
from tests.core_fold import CoreFold
from tests.unit.rules.rules_fold import pa, push

YML = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 7s
  routes:
    - matchers: [team="db"]
      receiver: db
      group_by: [alertname, instance]
      continue: true
receivers:
  - name: hook
    webhook_configs: [{url: "http://x/hook", send_resolved: true}]
  - name: db
    webhook_configs: [{url: "http://x/db"}]
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname]
"""


def settings() -> Settings:
    return Settings(loaded=load_text(YML), partitions=4, deployment=CHAINED)


# ---------------------------------------------------------------------- the graph

def test_each_input_type_is_its_upstream_output_type() -> None:
    outputs = {d.output: d for d in GRAPH}
    for d in GRAPH:
        for i in d.inputs:
            if i.stream in outputs:
                assert set(i.types) == set(outputs[i.stream].output_types), (d.name, i.stream)
            else:
                assert i.stream in ("events", "commands"), f"{d.name}: {i.stream} is written by no stage"


def test_each_core_takes_its_declared_input_types() -> None:
    s = settings()
    for d in GRAPH:
        core = d.core(s)
        hint = typing.get_type_hints(type(core).step).get("inp", object)
        accepted = typing.get_args(hint) or (hint,)
        for i in d.inputs:
            for t in i.types:
                assert any(issubclass(t, a) for a in accepted), (d.name, t, hint)


def test_rules_router_filter_are_one_chain() -> None:
    assert [[d.name for d in run] for run in chains()] == [["rules", "router", "filter"]]
    core = chain_core(settings())
    assert [(m.name, m.keep) for m in core.members] == [("rules", True), ("router", False), ("filter", True)]
    assert next(m.takes for m in core.members) == GRAPH[0].inputs[0].types
    assert core.members[2].feeds_on == ((1, (GroupFlush,)), (0, (AlertChange,)))


def test_process_stages_and_specs_derive_from_the_graph() -> None:
    assert process_stages(CHAINED, ["source", "rules", "router", "filter", "notifier", "api"]) == [
        "source", CHAIN, "notifier", "api"]
    assert process_stages(CHAINED, ["router"]) == [CHAIN]
    assert process_stages(SEPARATE, [CHAIN, "api"]) == ["api", "rules", "router", "filter"]
    with pytest.raises(ValueError, match="unknown deployment"):
        process_stages("fused", ["rules"])
    spec = stage_specs(settings(), CHAIN)
    assert [i.name for i in spec.inputs] == ["events", "commands"]
    assert spec.output.stream == "TOCSIN_SENDS" and spec.output.progress(3) == "tocsin.sends.progress.3"
    assert set(spec.output_subjects) == {"tocsin.alerts.>", "tocsin.groups.>", "tocsin.sends.>"}
    # the API reads a stage's state on its own subjects, in the chain's stream, fenced by the chain's progress
    alerts = stream_names(CHAINED)["alerts"]
    assert (alerts.stream, alerts.state(1, "alert/o/f"), alerts.progress(1)) == (
        "TOCSIN_SENDS", StreamNames("alerts").state(1, "alert/o/f"), "tocsin.sends.progress.1")
    assert stream_names(SEPARATE)["groups"].stream == "TOCSIN_GROUPS"


def test_layout_keeps_each_stage_on_its_own_subjects() -> None:
    core = chain_core(settings())
    layout = ChainLayout(core)
    for m, names in zip(core.members, ("alerts", "groups", "sends"), strict=True):
        key = m.tag + "group/o1/abc"
        subject = layout.state(2, key)
        assert subject == StreamNames(names).state(2, "group/o1/abc")
        assert layout.key_of_state_subject(subject) == key
    long_key = core.members[2].tag + "silence/o1/" + "x" * 5000  # digested: the whole key in a header
    assert ChainLayout.stored_key(long_key) == long_key[2:]


# ---------------------------------------------------------------------- the composed core, with toy cores

class _Toy:
    """Outputs what it takes (as a _Msg); a key per input holding its time; a timer 10 s later."""

    value_type = int

    def __init__(self, name: str, takes: type = int) -> None:
        self.name, self.takes, self.seen = name, takes, []

    def step(self, state: Mapping[str, int], inp: Any, now: float) -> Step[int]:
        if not isinstance(inp, self.takes):
            raise Reject("wrong type")
        if inp == "boom":
            raise Reject("boom")
        self.seen.append((inp, now, dict(state)))
        n = len(state)
        return Step(changes={f"k{n}": int(now)}, outputs=[Out(payload=_Msg(v=getattr(inp, "v", str(inp))),
                                                                msg_id=f"{self.name}{n}")])

    def fire(self, state: Mapping[str, int], key: str, now: float) -> Step[int]:
        return Step(changes={key: None}, outputs=[Out(payload=_Msg(v=f"t{key}"), msg_id=f"{self.name}t{key}")])

    def deadline(self, key: str, value: int) -> float | None:
        return value + 10.0


class _Msg(msgspec.Struct):
    v: str


def _toy_chain(keep_first: bool = True) -> tuple[ChainCore, _Toy, _Toy]:
    a, b = _Toy("a", int), _Toy("b", _Msg)
    core = ChainCore([ChainMember("a", a, StreamNames("alerts"), (int,), keep=keep_first),
                      ChainMember("b", b, StreamNames("sends"), (), ((0, (_Msg,)),))])
    return core, a, b


def test_an_output_goes_down_the_chain_in_the_same_step_at_its_time() -> None:
    core, _, b = _toy_chain()
    result = core.step({}, 7, 100.0)
    assert [(o.payload, o.names.name) for o in result.outputs] == [(_Msg(v="7"), "alerts"), (_Msg(v="7"), "sends")]
    assert b.seen == [(_Msg(v="7"), 100.0, {})]
    assert result.changes == {"0:k0": 100, "1:k0": 100}
    assert core.deadline("0:k0", 100) == 110.0 and core.decode_value("1:k0", b"100") == 100


def test_a_member_sees_what_this_step_changed_before_it() -> None:
    class Twice(_Toy):
        def step(self, state: Mapping[str, int], inp: Any, now: float) -> Step[int]:
            r = super().step(state, inp, now)
            r.outputs.append(Out(payload=_Msg(v="again")))
            return r

    a, b = Twice("a"), _Toy("b", _Msg)
    core = ChainCore([ChainMember("a", a, StreamNames("alerts"), (int,), keep=False),
                      ChainMember("b", b, StreamNames("sends"), (), ((0, (_Msg,)),))])
    result = core.step({"1:old": 1}, 1, 5.0)
    assert [s[2] for s in b.seen] == [{"old": 1}, {"old": 1, "k1": 5}]  # the second sees the first's key
    assert [o.payload for o in result.outputs] == [_Msg(v="1"), _Msg(v="again")]  # a's outputs not kept


def test_a_timer_fires_through_the_chain() -> None:
    core, _, b = _toy_chain(keep_first=False)
    result = core.fire({"0:k3": 5}, "0:k3", 15.0)
    assert result.changes == {"0:k3": None, "1:k0": 15}
    assert [o.payload.v for o in result.outputs] == ["tk3"] and b.seen[0][1] == 15.0


def test_a_later_members_failure_is_its_dead_letter_only() -> None:
    core, _, _ = _toy_chain()

    class Boom(_Toy):
        def step(self, state: Mapping[str, int], inp: Any, now: float) -> Step[int]:
            raise RuntimeError("bug")

    core = core.with_cores([core.members[0].core, Boom("b")])
    result = core.step({}, 4, 9.0)
    assert result.changes == {"0:k0": 9}  # the first member's effect stands
    (kept, dead) = result.outputs
    assert kept.payload == _Msg(v="4") and isinstance(dead.payload, DeadLetter)
    assert dead.payload.stage == "b" and dead.payload.cause == "step_failed" and "bug" in dead.payload.reason
    assert dead.names.out(3, "_", "x") == StreamNames("sends").dlq(3, "x")
    with pytest.raises(Reject):  # the entry member's failure is the runtime's (the input is dead-lettered)
        core.step({}, "boom", 1.0)
    with pytest.raises(Reject, match="takes bytes"):
        core.step({}, b"?", 1.0)


# ---------------------------------------------------------------------- the real cores: chained = run apart

class _ChainFold(CoreFold[Any]):
    def step(self, inp: Any, now: float) -> list[Out]:
        self.advance(now)
        return self._apply(self._call(self.core.step, inp, now))


class _Apart:
    """The three stages' cores, each on its own state, wired with no lag: a due timer fires before
    an input at or after its deadline (an earlier stage's first at equal deadlines), and each
    output is the next stage's input at its own time. ``chained``: the cores as in a chain (the
    filter without its tick grace); else as they run apart."""

    def __init__(self, s: Settings, *, chained: bool = True) -> None:
        self.decls = [d for d in GRAPH]
        self.cores = [d.in_chain(d.core(s)) if d.in_chain and chained else d.core(s) for d in self.decls]
        self.states: list[dict[str, Any]] = [{} for _ in self.cores]
        self.outputs: list[Out] = []

    def _apply(self, i: int, result: Step[Any], now: float) -> None:
        for k, v in result.changes.items():
            if v is None:
                self.states[i].pop(k, None)
            else:
                self.states[i][k] = v
        for out in result.outputs:
            if self.decls[i].kept:
                self.outputs.append(out)
            for j, d in enumerate(self.decls):
                if j > i and any(inp.stream == self.decls[i].output and isinstance(out.payload, inp.types)
                                 for inp in d.inputs):
                    try:
                        self._apply(j, self.cores[j].step(self.states[j], out.payload, now), now)
                    except Reject:
                        pass

    def advance(self, to: float) -> None:
        while True:
            due = [(dl, i, k) for i, c in enumerate(self.cores) for k, v in self.states[i].items()
                   if (dl := c.deadline(k, v)) is not None and dl <= to]
            if not due:
                return
            dl, i, key = heapq.nsmallest(1, due)[0]
            self._apply(i, self.cores[i].fire(self.states[i], key, dl), dl)

    def step(self, inp: Any, now: float) -> None:
        self.advance(now)
        i = next(i for i, d in enumerate(self.decls) if any(
            isinstance(inp, x.types) for x in d.inputs if x.stream in ("events", "commands")))
        self._apply(i, self.cores[i].step(self.states[i], inp, now), now)


def _scenario(seed: int) -> list[tuple[float, Any]]:
    rnd = random.Random(seed)
    t, out = 1_000_000.0, []
    names = ["A", "B", "C"]
    for n in range(60):
        t += rnd.choice([0.1, 0.5, 1.0, 2.0, 2.0, 3.5])
        if rnd.random() < 0.1:
            sil = Silence(id=f"s{n}", org="o1", matchers=[SilenceMatcher(name="alertname", value=rnd.choice(names))],
                          starts_at=t, ends_at=t + rnd.choice([1.5, 5.0]), created_by="me", comment="c")
            out.append((t, SilenceCommand(action="upsert", org="o1", id=f"s{n}", at=t, silence=sil)))
            continue
        alerts = []  # (several alerts of one push: a later member sees what the earlier steps of it changed)
        for _ in range(rnd.choice([1, 1, 2, 3])):
            labels = {"alertname": rnd.choice(names), "instance": rnd.choice("xyz"),
                      "severity": rnd.choice(["critical", "warning"]), "team": rnd.choice(["db", "web"])}
            alerts.append(pa(labels, ends=t if rnd.random() < 0.3 else None))
        out.append((t, push(*alerts, at=t, request_id=f"r{n}")))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_chain_decides_what_the_stages_decide_apart(seed: int) -> None:
    s = settings()
    chained, apart = _ChainFold(chain_core(s)), _Apart(s)
    apart.cores[1] = chained.core.members[1].core  # (one router: its table's "since" is the same)
    for t, inp in _scenario(seed):
        chained.step(inp, t)
        apart.step(inp, t)
    end = t + 30
    chained.advance(end)
    apart.advance(end)

    def sends(outs: list[Out]) -> list[tuple[str, str, int]]:
        return [(o.payload.id, o.payload.status, len(o.payload.alerts)) for o in outs
                if isinstance(o.payload, SendRequest)]

    def changes(outs: list[Out]) -> list[tuple[str, str]]:
        return [(o.msg_id, o.payload.change) for o in outs if isinstance(o.payload, AlertChange)]

    assert sends(chained.outputs) and sends(chained.outputs) == sends(apart.outputs)
    assert changes(chained.outputs) == changes(apart.outputs)
    core: ChainCore = chained.core
    for m, state in zip(core.members, apart.states, strict=True):
        assert dict(core.member_state(chained.state, m.name)) == state, m.name


def test_the_filter_re_evaluates_at_the_tick_in_a_chain_not_after_a_grace() -> None:
    """Run apart, the filter re-evaluates a quiet group ``tick_grace`` (here 0.5 s) after the tick,
    waiting for a router flush at that tick; chained, the router's timers at the tick fire first
    and its flush reaches the filter in the same step, so the repeat goes out at the tick."""
    s = settings()
    chained, apart = _ChainFold(chain_core(s)), _Apart(s, chained=False)
    apart.cores[1] = chained.core.members[1].core
    t0 = 1_000_000.0
    inp = push(pa({"alertname": "A", "team": "web"}), at=t0, request_id="r1")
    chained.step(inp, t0)
    apart.step(inp, t0)

    def sends(outs: list[Out]) -> list[str]:
        return [o.payload.id for o in outs if isinstance(o.payload, SendRequest)]

    chained.advance(t0 + 1)
    apart.advance(t0 + 1)
    assert sends(chained.outputs) == sends(apart.outputs) == ["o1/" + sends(apart.outputs)[0].split("/", 1)[1]]
    # notified at t0 + 1; repeat_interval 7 s: the first tick (every 2 s) after t0 + 8 is t0 + 9
    chained.advance(t0 + 9)
    apart.advance(t0 + 9)
    assert len(sends(chained.outputs)) == 2 and len(sends(apart.outputs)) == 1
    apart.advance(t0 + 9.5)
    assert sends(apart.outputs) == sends(chained.outputs)  # the same repeat, half a second later
    assert sends(chained.outputs)[1].endswith(".4")  # (the 4th tick after the flush)
