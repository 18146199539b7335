"""The synthetic fleet: reproducible, Zipf-sized, and its dwell makes the oracle's model exact."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.generator import (
    GROUPS,
    LEVEL_REASONS,
    Fleet,
    FleetSpec,
    Mix,
    burst_events,
    org_sizes,
    schedule,
)
from loadtest.oracle import FIRE, RESOLVE, RESOLVE_ALL, AlertModel, expectations


def events(spec: FleetSpec, n: int, rate: float = 100.0) -> list:
    fleet = Fleet(spec)
    return [fleet.next_event(t) for t in list(schedule(rate, n / rate))]


def test_same_seed_same_events_other_seed_others() -> None:
    spec = FleetSpec(seed=7, orgs=10, devices=100)
    assert events(spec, 500) == events(spec, 500)
    assert events(spec, 500) != events(FleetSpec(seed=8, orgs=10, devices=100), 500)


@pytest.mark.parametrize(("orgs", "devices", "exponent", "want"), [
    (3, 10, 1.0, [5, 3, 2]),  # spare 7 shared 3.82/1.91/1.27: 4,2,2 then the two largest remainders
    (4, 4, 1.0, [1, 1, 1, 1]),
    (2, 10, 0.0, [5, 5]),
], ids=["zipf-1", "one-each", "uniform"])
def test_org_sizes(orgs: int, devices: int, exponent: float, want: list[int]) -> None:
    assert org_sizes(orgs, devices, exponent) == want


@given(st.integers(1, 50), st.integers(0, 500), st.floats(0, 3))
def test_org_sizes_properties(orgs: int, extra: int, exponent: float) -> None:
    sizes = org_sizes(orgs, orgs + extra, exponent)
    assert sum(sizes) == orgs + extra and min(sizes) >= 1
    assert all(a >= b - 1 for a, b in itertools.pairwise(sizes))  # larger ranks never much bigger


def test_every_reason_the_fleet_emits_is_known_to_the_rules() -> None:
    known = set(FIRE) | set(RESOLVE) | RESOLVE_ALL
    evs = events(FleetSpec(seed=3, orgs=5, devices=50, flap=0.9, mix=Mix(delete=1.0)), 3000)
    assert {e.reason for e in evs} <= known
    assert {e.reason for e in evs} >= {r for g in GROUPS for r in LEVEL_REASONS[g]}  # all of them, flapping hard


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(1.0, 20.0), st.floats(0.05, 1.0), st.floats(0.0, 2.0))
def test_dwell_holds_for_every_alert(seed: int, dwell: float, flap: float, delete: float) -> None:
    """Two changes of one alert (fire/resolve) are at least ``dwell`` apart in event time, and every
    firing-level event names its lifecycle: the oracle's preconditions."""
    spec = FleetSpec(seed=seed, orgs=4, devices=12, dwell=dwell, flap=flap, mix=Mix(delete=delete))
    fleet = Fleet(spec)
    model = AlertModel()
    last_change: dict[tuple[tuple[str, str], ...], float] = {}
    for i in range(1500):
        ev = fleet.next_event(i * 0.05)
        for c in model.apply(ev.id, ev.org, ev.kind, ev.name, ev.reason, ev.message, ev.at, ev.at):
            if c.kind == "refresh":
                continue
            alert = tuple(sorted(c.lifecycle.labels.items()))
            if alert in last_change:
                assert ev.at - last_change[alert] >= dwell - 1e-9
            last_change[alert] = ev.at
    assert model.message_mismatch == 0 and model.out_of_order == 0


def test_fields_carry_the_id_and_values_in_their_band() -> None:
    for ev in events(FleetSpec(seed=1, orgs=3, devices=30, flap=0.5), 2000):
        assert ev.fields["lt_id"] == ev.id
        if "cpu_percent" in ev.fields:
            v = ev.fields["cpu_percent"]
            band = {"DeviceCPUNormal": (5, 75), "DeviceCPUWarning": (75, 90), "DeviceCPUCritical": (90, 100)}
            lo, hi = band[ev.reason]
            assert lo <= v < hi


def test_mix_parse() -> None:
    assert Mix.parse("cpu=5, delete=0").weights() == (3.0, 5.0, 1.5, 1.0, 1.5, 0.0)
    for bad in ("cpu", "cpu=x", "nope=1", "cpu=-1"):
        with pytest.raises(ValueError):
            Mix.parse(bad)


def test_burst_fires_then_resolves_the_same_devices() -> None:
    spec = FleetSpec(orgs=3, devices=30)
    fire = burst_events(spec, 10, 101, 5.0, resolve=False)
    resolve = burst_events(spec, 10, 111, 6.0, resolve=True)
    assert [e.id for e in fire] == [str(i) for i in range(101, 111)]
    assert [(e.org, e.name) for e in fire] == [(e.org, e.name) for e in resolve]
    model = AlertModel()
    for e in fire + resolve:
        model.apply(e.id, e.org, e.kind, e.name, e.reason, e.message, e.at, e.at)
    assert len(expectations(model.lifecycles)) == 20 and model.message_mismatch == 0


def test_schedule() -> None:
    assert list(schedule(4, 1.0)) == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(ValueError):
        list(schedule(0, 1.0))
