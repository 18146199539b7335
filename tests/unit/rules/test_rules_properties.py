"""Properties of the rules core over random mixes of events, pushes and time, and its memory use."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_fold import Fold, ev, pa, push

from contracts.messages import AlertChange, Event, PushedAlerts
from pipeline.foundation.runtime.step import Out, Reject
from stages.rules.core import RulesCore, alert_subject
from stages.rules.rules import FireRule, RuleGroup, RuleSet
from stages.rules.state import AlertState, ResourceIndex, StateValue

RULES = RuleSet(
    groups=[
        RuleGroup(name="conn", fire=[FireRule(reason="Disconnected")], resolve=["Connected"]),
        RuleGroup(
            name="cpu",
            fire=[
                FireRule(reason="Critical", severity="critical", for_=30),
                FireRule(reason="Warning", severity="warning", keep_firing_for=20),
            ],
            resolve=["Normal", "Reboot"],
        ),
        RuleGroup(
            name="usage",
            fire=[FireRule(reason="Usage", value_field="v", threshold=50, for_=10, keep_firing_for=15)],
            resolve=["Reboot"],
        ),
    ],
    resolve_all=["Deleted"],
)
REASONS = ["Disconnected", "Connected", "Critical", "Warning", "Normal", "Reboot", "Usage", "Deleted"]

_enc = msgspec.json.Encoder()


def core() -> RulesCore:
    return RulesCore(RULES, resolve_timeout=50.0, retention=100.0)


events = st.builds(
    lambda reason, org, res, lag, msg, v: ("event", reason, org, res, lag, msg, v),
    st.sampled_from(REASONS),
    st.sampled_from(["o1", "o.2"]),
    st.sampled_from([("Device", "d1"), ("Fleet", "d1"), ("Device", "d2")]),
    st.sampled_from([0.0, 0.0, 0.0, 5.0, 45.0]),
    st.sampled_from(["", "m"]),
    st.sampled_from([10, 60, 90]),
)
pushes = st.builds(
    lambda org, name, label_org, start, end, ann: ("push", org, name, label_org, start, end, ann),
    st.sampled_from(["o1", "o.2"]),
    st.sampled_from(["A", "B", "Disconnected"]),
    st.booleans(),
    st.sampled_from([None, -10.0, 0.0]),
    st.sampled_from([None, None, -1.0, 0.0, 20.0, 200.0]),
    st.sampled_from(["x", "y"]),
)
scripts = st.lists(st.tuples(st.sampled_from([0.0, 1.0, 7.0, 25.0, 70.0, 400.0]), st.one_of(events, events, pushes)),
                   max_size=40)


def build(script: list[tuple[float, tuple[Any, ...]]]) -> list[tuple[float, Event | PushedAlerts]]:
    """Turn a script of (gap, spec) into inputs with increasing stream times and unique ids."""
    now, inputs = 1000.0, []
    for i, (gap, spec) in enumerate(script):
        now += gap
        if spec[0] == "event":
            _, reason, org, (kind, name), lag, msg, v = spec
            inp: Event | PushedAlerts = ev(reason, now - lag, org=org, kind=kind, name=name, message=msg,
                                           fields={"v": v}, id=f"e{i}")
        else:
            _, org, name, label_org, start, end, ann = spec
            labels = {"alertname": name, "resource": "d1"}
            if label_org:
                labels["org_id"] = org
            starts = None if start is None else now + start
            ends = None if end is None else now + end
            if starts is not None and ends is not None and ends < starts:
                ends = starts
            inp = push(pa(labels, starts=starts, ends=ends, ann={"a": ann}), at=now, org=org,
                       request_id=f"r{i}")
        inputs.append((now, inp))
    return inputs


def run(inputs: list[tuple[float, Event | PushedAlerts]], *, eager: bool) -> Fold:
    f = Fold(core(), eager=eager)
    for now, inp in inputs:
        try:
            f.step(inp, now)
        except Reject:
            pass
    f.advance(inputs[-1][0] + 10_000.0 if inputs else 0.0)
    return f


def encoded(outs: list[Out]) -> list[tuple[str, str, bytes]]:
    return [(o.msg_id, o.subject, _enc.encode(o.payload)) for o in outs]


def state_bytes(state: dict[str, StateValue]) -> bytes:
    return _enc.encode(dict(sorted(state.items())))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts)
def test_folding_is_deterministic(script: list[tuple[float, tuple[Any, ...]]]) -> None:
    inputs = build(script)
    a, b = run(inputs, eager=True), run(inputs, eager=True)
    assert encoded(a.outputs) == encoded(b.outputs)
    assert state_bytes(a.state) == state_bytes(b.state)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts)
def test_lagging_timers_change_nothing(script: list[tuple[float, tuple[Any, ...]]]) -> None:
    """A runtime that fires timers late gets the same outputs (same ids) and the same final state."""
    inputs = build(script)
    eager, lazy = run(inputs, eager=True), run(inputs, eager=False)
    assert sorted(encoded(eager.outputs)) == sorted(encoded(lazy.outputs))
    assert state_bytes(eager.state) == state_bytes(lazy.state)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts, st.booleans())
def test_changes_alternate_and_ids_are_unique(script: list[tuple[float, tuple[Any, ...]]], eager: bool) -> None:
    f = run(build(script), eager=eager)
    last: dict[tuple[str, str], str] = {}
    ids: set[str] = set()
    for o in f.outputs:
        assert o.msg_id not in ids, f"duplicate msg_id {o.msg_id}"
        ids.add(o.msg_id)
        change = o.payload
        assert isinstance(change, AlertChange)
        alert = change.alert
        ident = (alert.org, alert.fingerprint)
        assert o.subject == alert_subject(*ident)
        if change.change == "fired":
            assert last.get(ident) != "fired", f"fired twice without a resolve: {ident}"
            assert alert.ends_at is None or alert.ends_at > change.cause.at or change.cause.kind == "event"
        if change.change == "resolved":
            assert alert.ends_at is not None
        if change.change == "updated":
            assert ident in last, "updated before anything was announced"
        assert alert.ends_at is None or alert.ends_at >= alert.starts_at
        if change.change != "updated":
            last[ident] = change.change
    # after every timer ran, only firing alerts without an end (event alerts) remain, plus their index
    for key, value in f.state.items():
        if isinstance(value, AlertState):
            assert value.status == "firing" and value.ends_at is None and value.deadline is None, key
            assert last.get((value.org, value.fingerprint)) == "fired"
        else:
            assert isinstance(value, ResourceIndex)
            for fp in value.active.values():
                slot = next(v for v in f.state.values() if isinstance(v, AlertState) and v.fingerprint == fp)
                assert slot.status == "firing"
            assert not value.pending


def test_memory_of_100k_alerts() -> None:
    """Active alerts, decoded from their state subjects as the runtime does, take ~1.5 KB each.

    Measured on 20,000 alerts (each on its own resource, so each with its own resource
    index) and extrapolated: 100,000 must stay well under 1 GiB.
    """
    n = 20_000
    c = core()
    blobs: dict[str, bytes] = {}
    for i in range(n):
        e = ev("Warning", 1.0, org=f"org-{i % 500}", name=f"device-{i:06d}", message=f"CPU at {i % 100}%",
               id=str(i))
        for key, value in c.step({}, e, 1.0).changes.items():
            assert value is not None
            blobs[key] = _enc.encode(value)
    decoder = msgspec.json.Decoder(c.value_type)
    gc.collect()
    tracemalloc.start()
    try:
        state = {key: decoder.decode(blob) for key, blob in blobs.items()}
        gc.collect()
        size, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(isinstance(v, AlertState) for v in state.values()) == n
    per_alert = size / n
    assert per_alert < 3000, f"{per_alert:.0f} bytes per alert (with its resource index)"
    assert per_alert * 100_000 < 300 * 2**20
