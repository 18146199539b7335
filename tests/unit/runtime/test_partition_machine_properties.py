"""Properties of the partition machine: however a stream of inputs is split into batches,
replayed, crashed and redone, the partition commits what one calm pass does; a delivery gap
is always caught; and no commit chunk or message is over the limits it is split by."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from partition_machine_kit import Stream, Toy, drive, ev, machine

from pipeline.foundation.runtime.machine import Commit, Delivered
from pipeline.foundation.runtime.wire import MAX_BATCH, unpublishable

WALL = 1e9
MAX_COMMIT = 400_000  # bytes of one atomic commit, small so that commits split
MAX_PAYLOAD = 256 * 1024


@st.composite
def _inputs(draw: st.DrawFn, huge_state: bool = False) -> tuple[list[bytes], list[float]]:
    """Inputs (now and then one too large, a rejected one, a deletion, a timer) at rising times.

    ``huge_state``: also inputs whose state value is over the commit limit. Which of those is
    dead-lettered depends on the batching: a key is written once per commit, at its last value,
    so a later input of the same commit that shrinks the value again saves it (the commit is
    still atomic and each input applied once: only the choice between two valid outcomes moves)."""
    n = draw(st.integers(1, 16))
    data, times, t = [], [], 100.0
    kinds = ["plain"] * 6 + ["timer", "timer", "fan", "big", "reject", "drop", "nested"]
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))
        kind = draw(st.sampled_from(kinds + ["huge_state"] * huge_state))
        key = draw(st.sampled_from("abc"))
        data.append({
            "plain": ev(key, n=draw(st.integers(0, 3))),
            "timer": ev(key, wait=draw(st.sampled_from([0.0, 0.7, 2.0, 5.0]))),
            "fan": ev(key, fan=draw(st.sampled_from([0, 3, 400, 700]))),
            "big": ev(key, pad=draw(st.sampled_from([60_000, 150_000, 250_000]))),
            "huge_state": ev(key, state_pad=MAX_COMMIT),
            "reject": ev(key, reject=True),
            "drop": ev(key, drop=True),
            "nested": b"[" * 5000,  # undecodable
        }[kind])
        times.append(t)
    return data, times


@dataclass
class Plan:
    """How the inputs are delivered: batch sizes, redeliveries of committed inputs before each
    batch, and after which batches the process dies (after how many of the batch's commits)."""

    sizes: list[int]
    replays: list[list[int]]
    crashes: dict[int, int]


_plans = st.builds(Plan, st.lists(st.integers(0, 6), max_size=12),
                   st.lists(st.lists(st.integers(0, 100), max_size=3), max_size=12),
                   st.dictionaries(st.integers(0, 11), st.integers(0, 3), max_size=3))


def _core() -> Toy:
    return Toy(fire_fan=2)


def play(data: list[bytes], times: list[float], plan: Plan, check: list[Commit] | None = None) -> Stream:
    """Deliver ``data`` as ``plan`` says, redoing what a reset or a crash left, then let the
    clock fire the timers left; the stream as committed."""
    n = len(data)
    stream = Stream()
    m = stream.restart(_core(), total=n, max_commit_bytes=MAX_COMMIT, max_payload=MAX_PAYLOAD)
    nxt, dseq, top = 1, 1, 0  # the next new input, the consumer's next delivery, the highest delivered
    turn = 0
    for _ in range(300):
        size = plan.sizes[turn] if turn < len(plan.sizes) else n
        replays = plan.replays[turn] if turn < len(plan.replays) else []
        seqs = [1 + r % top for r in replays] if top else []
        seqs += list(range(nxt, min(n, nxt + size - 1) + 1))
        items = [(s, times[s - 1], data[s - 1]) for s in seqs]
        batch = [Delivered.at(s, dseq + i, time=t, pending=n - max(top, *seqs[:i + 1]), data=d)
                 for i, (s, t, d) in enumerate(items)]
        crash = plan.crashes.get(turn)
        run = drive(m, batch, WALL, stream=stream, crash_after=crash)
        if check is not None:
            check.extend(run.commits)
        turn += 1
        if crash is not None:  # the process died: a new one acquires, from the progress
            m = stream.restart(_core(), total=n, max_commit_bytes=MAX_COMMIT, max_payload=MAX_PAYLOAD)
        elif run.reset is not None:  # the same worker acquires again (its machine remembers why)
            stream.reacquire(m, total=n)
        else:
            dseq += len(batch)
            top = max([top, *seqs])
            nxt = top + 1
            if nxt > n and turn >= len(plan.sizes) and not m.behind():
                run = drive(m, [], WALL, stream=stream)  # the clock: what is due fires
                if check is not None:
                    check.extend(run.commits)
                if run.reset is None:
                    return stream
                stream.reacquire(m, total=n)
            continue
        nxt = stream.progress.inputs.get("in", 0) + 1  # a new consumer, from just after the progress
        dseq, top = 1, nxt - 1
    raise AssertionError("the partition never got through its inputs")


def _committed(stream: Stream) -> tuple[object, ...]:
    return stream.outputs, stream.dead, stream.state, stream.progress.inputs


CALM = Plan(sizes=[], replays=[], crashes={})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs(), _plans)
def test_any_batching_replay_or_crash_commits_what_one_calm_pass_does(inputs: tuple[list[bytes], list[float]],
                                                                      plan: Plan) -> None:
    data, times = inputs
    calm = play(data, times, CALM)
    assert calm.progress.inputs == {"in": len(data)}
    assert _committed(play(data, times, plan)) == _committed(calm)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs(huge_state=True), _plans)
def test_no_commit_chunk_or_message_is_over_its_limit(inputs: tuple[list[bytes], list[float]], plan: Plan) -> None:
    data, times = inputs
    commits: list[Commit] = []
    play(data, times, plan, commits)
    for c in commits:
        assert [i for a, b in c.chunks for i in range(a, b)] == list(range(len(c.body)))
        for a, b in c.chunks:
            assert b - a + 1 <= MAX_BATCH  # (with the progress record)
            size = sum(len(m.payload) for m in c.body[a:b]) + len(c.progress.payload)
            assert size <= MAX_COMMIT or b - a == 1
        assert len(c.chunks) == 1 or all(not name for name, _, _ in c.units)  # only a timer is split
        for m in c.body:
            assert unpublishable(m, MAX_PAYLOAD) == "", m.subject


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=12), st.integers(0, 3))
def test_a_delivery_gap_is_always_caught(dseqs: list[int], progress: int) -> None:
    m = machine(progress={"in": progress})
    batch = [Delivered.at(i + 1, d, time=float(i), data=ev()) for i, d in enumerate(dseqs)]
    run = drive(m, batch, WALL)
    contiguous = dseqs == list(range(1, len(dseqs) + 1))
    assert (run.reset is None) is contiguous
    if not contiguous:
        gap = next(i for i, d in enumerate(dseqs) if d != i + 1)
        stepped = {int(u[1]) for c in run.commits for u in c.units}
        assert all(s <= gap for s in stepped)  # nothing at or after the gap was stepped
        assert "delivery" in run.reset.reason  # type: ignore[union-attr]


@pytest.mark.parametrize("sizes", [[1] * 6, [2, 4], [6], [0, 3, 0, 3]], ids=["one-by-one", "two-four", "whole",
                                                                            "with-empty-fetches"])
def test_batching_examples(sizes: list[int]) -> None:
    data = [ev("a", wait=1.0), ev("a"), ev("b", fan=700), ev("b", fan=700), ev("a", reject=True), ev("c")]
    times = [100.0, 100.5, 101.0, 101.5, 102.0, 102.0]
    calm = play(data, times, CALM)
    assert set(calm.read_state()) == {"a", "b", "c"} and len(calm.dead) == 1
    assert _committed(play(data, times, Plan(sizes, [], {}))) == _committed(calm)
