"""The partition machine's decisions, table by table: skips at progress, delivery gaps,
event-time timers, commit splits, dead letters, refused commits and message ids."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest
from partition_machine_kit import OUT, Ev, Stream, Toy, Val, deliveries, drive, ev, machine

from contracts import DeadLetter
from pipeline.foundation.runtime import machine as machine_module
from pipeline.foundation.runtime.deadletter import EXCERPT_BYTES
from pipeline.foundation.runtime.machine import (
    MAX_MSG_ID,
    Ack,
    Commit,
    CommitDraft,
    Delivered,
    Done,
    Progress,
    Recount,
    bounded_id,
    claim,
)
from pipeline.foundation.runtime.step import Step
from pipeline.foundation.runtime.wire import DELETED, MAX_BATCH, TIME_HEADER

WALL = 1e9  # the wall clock, later than every event time here


def _outputs(commits: list[Commit]) -> list[tuple[str, dict[str, str], bytes]]:
    return [(m.subject, m.headers or {}, m.payload) for c in commits for m in c.body if ".out." in m.subject]


def _dead(commits: list[Commit]) -> list[DeadLetter]:
    return [msgspec.json.decode(m.payload, type=DeadLetter) for c in commits for m in c.body if ".dlq." in m.subject]


def _progress(c: Commit) -> Progress:
    return msgspec.json.decode(c.progress.payload, type=Progress)


# ---------------------------------------------------------------------- skips and gaps

@pytest.mark.parametrize(("progress", "seqs", "stepped", "skipped"), [
    pytest.param(0, [1, 2, 3], [1, 2, 3], 0, id="fresh"),
    pytest.param(5, [4, 5, 6], [6], 2, id="redelivered-below-progress"),
    pytest.param(5, [5], [], 1, id="only-the-committed-one"),
    pytest.param(2, [3, 2, 4], [3, 4], 1, id="a-replay-between"),
])
def test_inputs_at_or_below_the_progress_are_skipped(progress: int, seqs: list[int], stepped: list[int],
                                                     skipped: int) -> None:
    m = machine(progress={"in": progress})
    run = drive(m, deliveries([(s, 10.0 + s, ev(f"k{s}")) for s in seqs]), WALL)
    ids = [h["Nats-Msg-Id"] for _, h, _ in _outputs(run.commits)]
    assert ids == [f"toy:0:in:{s}:0" for s in stepped]
    assert m.take_tally().skipped == skipped
    assert m.progress.inputs["in"] == max([progress, *stepped])
    assert isinstance(run.actions[-2], Ack) and run.acked[-1].reply.split(".")[5] == str(seqs[-1])  # AckAll: the last
    assert (len(run.commits) == 1) is bool(stepped)


@pytest.mark.parametrize(("dseqs", "expected"), [
    pytest.param([1, 2, 3], None, id="contiguous"),
    pytest.param([2], "delivery 2 where 1 was expected", id="first-is-not-one"),
    pytest.param([1, 3], "delivery 3 where 2 was expected", id="a-hole"),
    pytest.param([1, 1], "delivery 1 where 2 was expected", id="twice"),
])
def test_a_delivery_gap_resets_the_partition(dseqs: list[int], expected: str | None) -> None:
    m = machine()
    batch = [Delivered.at(i + 1, d, time=10.0, data=ev()) for i, d in enumerate(dseqs)]
    run = drive(m, batch, WALL)
    if expected is None:
        assert run.reset is None and isinstance(run.actions[-1], Done)
    else:
        assert run.reset is not None and expected in run.reset.reason
        assert run.commits == []  # nothing of the batch is committed
        with pytest.raises(RuntimeError):
            m.committed()


def test_a_new_consumer_starts_after_the_progress_and_counts_deliveries_from_one() -> None:
    m = machine(progress={"in": 41})
    assert m.start_of("in") == 42 and m.start_of("other") == 1
    drive(m, [Delivered.at(42, 1, time=1.0, data=ev())], WALL)
    m.bound("in", 0)  # bound again (a new consumer)
    assert drive(m, [Delivered.at(43, 1, time=1.0, data=ev())], WALL).reset is None


def test_the_claim_moves_the_epoch_and_keeps_the_progress() -> None:
    mine = claim(Progress(inputs={"in": 7}, owner="old", epoch=3), "me")
    assert (mine.inputs, mine.owner, mine.epoch) == ({"in": 7}, "me", 4)


# ---------------------------------------------------------------------- timers

@pytest.mark.parametrize(("input_at", "pending", "fired_before_input"), [
    pytest.param(14.0, 1, False, id="input-before-the-deadline"),
    pytest.param(15.0, 1, True, id="input-at-the-deadline"),
    pytest.param(20.0, 1, True, id="input-after-the-deadline"),
])
def test_a_timer_fires_before_an_input_at_or_after_its_deadline(input_at: float, pending: int,
                                                               fired_before_input: bool) -> None:
    m = machine(state={"t": Val(count=1, due=15.0)}, pending=1)
    run = drive(m, deliveries([(1, input_at, ev("k"))], total=1 + pending), WALL)
    kinds = [("fired" if h["Nats-Msg-Id"].startswith("fired") else "echo") for _, h, _ in _outputs(run.commits)]
    assert kinds == (["fired", "echo"] if fired_before_input else ["echo"])  # behind: no firing by the clock


@pytest.mark.parametrize(("pending", "wall", "fires"), [
    pytest.param(0, 14.0, False, id="not-yet-due"),
    pytest.param(0, 15.0, True, id="due-by-the-clock"),
    pytest.param(3, 99.0, False, id="behind-time-is-the-inputs"),
])
def test_by_the_clock_a_timer_fires_only_when_no_input_waits(pending: int, wall: float, fires: bool) -> None:
    m = machine(state={"t": Val(count=1, due=15.0)}, pending=pending)
    run = drive(m, [], wall, recount={"in": pending})
    assert isinstance(run.actions[0], Recount) is bool(pending)  # asked again: what waited may be gone
    assert bool(run.commits) is fires
    if fires:
        (out,) = _outputs(run.commits)
        assert out[1]["Nats-Msg-Id"] == "fired:t:15.0:0" and out[1][TIME_HEADER] == "15.0"  # now = the deadline
        assert m.state["t"].due is None and "t" not in m.deadlines


def test_a_recount_that_finds_nothing_waiting_lets_the_clock_fire() -> None:
    m = machine(state={"t": Val(count=1, due=15.0)}, pending=3)
    run = drive(m, [], 99.0, recount={"in": 0})
    assert isinstance(run.actions[0], Recount) and run.actions[0].inputs == ["in"]
    assert len(run.commits) == 1 and not m.behind()


@pytest.mark.parametrize(("deadlines", "order"), [
    pytest.param({"a": 3.0, "b": 1.0, "c": 2.0}, ["b", "c", "a"], id="by-deadline"),
    pytest.param({"b": 1.0, "a": 1.0}, ["a", "b"], id="ties-by-key"),
])
def test_timers_fire_in_deadline_order(deadlines: dict[str, float], order: list[str]) -> None:
    m = machine(state={k: Val(count=1, due=d) for k, d in deadlines.items()})
    run = drive(m, [], WALL)
    assert [h["Nats-Msg-Id"].split(":")[1] for _, h, _ in _outputs(run.commits)] == order


@pytest.mark.parametrize(("pending", "wall", "wait"), [
    pytest.param(2, 0.0, 1.0, id="behind"),
    pytest.param(0, 14.7, 0.3, id="due-soon"),
    pytest.param(0, 20.0, 0.0, id="overdue"),
    pytest.param(0, 0.0, 1.0, id="far-off"),
])
def test_wait_time(pending: int, wall: float, wait: float) -> None:
    m = machine(state={"t": Val(due=15.0)}, pending=pending)
    assert m.wait_time(wall) == pytest.approx(wait)


def test_a_new_core_times_the_state_again() -> None:
    class Later(Toy):
        def deadline(self, key: str, value: Val) -> float | None:
            return None if value.due is None else value.due + 100

    m = machine(state={"t": Val(due=15.0)})
    m.spec.core = Later()  # a reload
    assert drive(m, [], 20.0).commits == [] and m.deadlines == {"t": 115.0}


def test_a_failing_timer_is_a_dead_letter_and_its_state_stays() -> None:
    m = machine(Toy(fire_fails=True), state={"t": Val(count=2, due=15.0)})
    run = drive(m, [], WALL)
    (dl,) = _dead(run.commits)
    assert (dl.cause, dl.key, dl.at) == ("step_failed", "t", 15.0) and "timer failed" in dl.reason
    assert m.state["t"] == Val(count=2, due=15.0) and "t" not in m.deadlines  # dropped, not fired again
    assert m.take_tally().dead_letters == {("timer", "step_failed"): 1}


# ---------------------------------------------------------------------- dead letters

MiB = 1024 * 1024


@pytest.mark.parametrize(("data", "cause", "reason"), [
    pytest.param(b"{not json", "undecodable", "cannot decode", id="undecodable"),
    pytest.param(msgspec.json.encode({"n": 1}), "undecodable", "cannot decode", id="invalid"),
    pytest.param(ev(reject=True), "rejected", "rejected: no k", id="rejected"),
    pytest.param(ev(boom=True), "step_failed", "step failed: RuntimeError('a bug')", id="step-failed"),
    pytest.param(ev(pad=MiB), "too_large", "output 0 cannot be published", id="output-over-max-payload"),
    pytest.param(ev(fan=MAX_BATCH - 1), "too_large", "more than an atomic batch holds", id="too-many-outputs"),
    pytest.param(ev(fan=3, pad=200_000), "too_large", "over half the 1000000-byte limit", id="over-half-a-commit"),
])
def test_an_input_that_cannot_be_stepped_or_published_is_a_dead_letter(data: bytes, cause: str, reason: str) -> None:
    m = machine(max_commit_bytes=1_000_000)
    run = drive(m, deliveries([(1, 10.0, data), (2, 11.0, ev("next"))]), WALL)
    (commit,) = run.commits
    (dl,) = _dead(run.commits)
    assert (dl.cause, dl.stream_seq, dl.stage) == (cause, 1, "toy") and reason in dl.reason
    assert dl.payload == data  # small enough to be kept whole, for a replay
    (dlq,) = [m for m in commit.body if ".dlq." in m.subject]
    assert dlq.headers is not None and dlq.headers["Nats-Msg-Id"] == "dlq:toy:0:in:1"
    assert dlq.subject == OUT.dlq(0, "dlq:toy:0:in:1")
    assert "k" not in m.state and m.state["next"].count == 1  # the partition goes on
    assert _progress(commit).inputs == {"in": 2}
    assert m.take_tally().dead_letters == {("input", cause): 1}


def test_a_dead_letter_of_a_large_input_fits_the_server() -> None:
    data = b"{" * (5 * MiB)
    m = machine(max_payload=MiB)
    run = drive(m, deliveries([(1, 10.0, data)]), WALL)
    (commit,) = run.commits
    assert all(len(x.payload) < MiB for x in commit.body)
    (dl,) = _dead(run.commits)
    assert dl.size == len(data) and data.startswith(dl.payload) and len(dl.payload) < len(data)


# ---------------------------------------------------------------------- commits

def test_one_commit_holds_progress_state_and_outputs_with_their_ids_and_times() -> None:
    m = machine()
    run = drive(m, deliveries([(1, 10.0, ev("a")), (2, 11.5, ev("a", fan=2)), (3, 12.0, ev("b"))]), WALL)
    (commit,) = run.commits
    assert commit.chunks == [(0, len(commit.body))] and commit.progress.subject == OUT.progress(0)
    assert commit.units == [("in", 1.0, ""), ("in", 2.0, ""), ("in", 3.0, "")]
    state = [x for x in commit.body if ".state." in x.subject]
    assert [x.subject for x in state] == [OUT.state(0, "a"), OUT.state(0, "b")]  # a key once, at its last value
    assert msgspec.json.decode(state[0].payload, type=Val).count == 2
    outs = _outputs(run.commits)
    assert [(h["Nats-Msg-Id"], h[TIME_HEADER]) for _, h, _ in outs] == [
        ("toy:0:in:1:0", "10.0"), ("toy:0:in:2:0", "11.5"), ("toy:0:in:2:1", "11.5"), ("toy:0:in:3:0", "12.0")]
    assert all(h["Nats-TTL"] == str(7 * 24 * 3600) for _, h, _ in outs)
    assert outs[0][0] == OUT.out(0, "a", "toy:0:in:1:0")


@pytest.mark.parametrize(("rollup", "replace"), [
    pytest.param(False, {}, id="one-per-subject"),
    pytest.param(True, {"Nats-Rollup": "sub"}, id="older-layout-rolls-up"),
])
def test_a_deleted_key_is_a_tombstone(rollup: bool, replace: dict[str, str]) -> None:
    m = machine(state={"k": Val(count=1)}, rollup=rollup)
    (commit,) = drive(m, deliveries([(1, 10.0, ev("k", drop=True))]), WALL).commits
    (tomb,) = [x for x in commit.body if ".state." in x.subject]
    assert tomb.payload == b"" and tomb.headers == {**replace, DELETED: "1", "Nats-TTL": "300"}
    assert commit.progress.headers == replace and "k" not in m.state


@pytest.mark.parametrize(("fan", "inputs", "commits"), [
    pytest.param(400, 2, 1, id="under-the-message-limit"),
    pytest.param(400, 3, 2, id="over-the-message-limit"),
    pytest.param(990, 3, 3, id="one-input-per-commit"),
])
def test_a_batch_is_split_by_messages(fan: int, inputs: int, commits: int) -> None:
    m = machine()
    run = drive(m, deliveries([(s, 10.0, ev(f"k{s}", fan=fan)) for s in range(1, inputs + 1)]), WALL)
    assert len(run.commits) == commits
    assert all(len(c.body) + 1 < MAX_BATCH for c in run.commits)
    assert [_progress(c).inputs["in"] for c in run.commits][-1] == inputs  # each with its own progress


@pytest.mark.parametrize(("pad", "inputs", "commits"), [
    pytest.param(100_000, 4, 1, id="under-half"),
    pytest.param(300_000, 4, 4, id="each-over-a-quarter"),
    pytest.param(200_000, 4, 2, id="two-per-commit"),
])
def test_a_batch_is_split_by_bytes(pad: int, inputs: int, commits: int) -> None:
    m = machine(max_commit_bytes=1_000_000)
    run = drive(m, deliveries([(s, 10.0, ev(f"k{s}", pad=pad)) for s in range(1, inputs + 1)]), WALL)
    assert len(run.commits) == commits and _dead(run.commits) == []


def test_a_timer_larger_than_a_commit_is_committed_in_chunks() -> None:
    m = machine(Toy(fire_fan=2500), state={"t": Val(count=1, due=15.0)})
    (empty, commit) = drive(m, [], WALL).commits  # (what came before it is committed first: here nothing)
    assert empty.body == [] and empty.units == []
    assert len(commit.chunks) == 3 and all(end - start < MAX_BATCH for start, end in commit.chunks)
    assert [i for a, b in commit.chunks for i in range(a, b)] == list(range(len(commit.body)))


# ---------------------------------------------------------------------- refused commits

def test_a_refused_commit_of_several_inputs_is_redone_one_at_a_time_and_the_culprit_dead_lettered() -> None:
    stream = Stream()
    m = stream.restart()
    batch = deliveries([(1, 10.0, ev("a")), (2, 11.0, ev("bad")), (3, 12.0, ev("c"))])

    def refuse(c: Commit) -> str | None:  # input 2's effect, never its dead letter
        return "too big" if ("in", 2.0, "") in c.units and not _dead([c]) else None

    run = drive(m, batch, WALL, stream=stream, refuse=refuse)
    assert run.reset is not None and "one at a time" in run.reset.reason and run.commits == []
    assert m.isolate == {"in": 3.0}
    stream.reacquire(m)  # the state read back, as before the refused commit
    run = drive(m, batch, WALL, stream=stream, refuse=refuse)
    assert [c.units for c in run.commits] == [[("in", 1.0, "")]]
    assert run.reset is not None and "will be dead-lettered" in run.reset.reason
    stream.reacquire(m)
    run = drive(m, deliveries([(2, 11.0, ev("bad")), (3, 12.0, ev("c"))]), WALL, stream=stream, refuse=refuse)
    assert [c.units for c in run.commits] == [[("in", 2.0, "")], [("in", 3.0, "")]]
    (dl,) = _dead(run.commits)
    assert (dl.cause, dl.stream_seq) == ("refused", 2) and "its commit was refused: too big" in dl.reason
    assert not m.isolate and not m.poison  # back to whole batches
    assert sorted(stream.read_state()) == ["a", "c"]


@pytest.mark.parametrize(("too_large", "cause"), [
    pytest.param(True, "too_large", id="too-large"), pytest.param(False, "refused", id="refused")])
def test_a_lone_refused_input_is_dead_lettered_with_an_excerpt(too_large: bool, cause: str) -> None:
    stream = Stream()
    m = stream.restart()
    batch = deliveries([(1, 10.0, ev("k" * 200_000))])  # (whole, it would fit a dead letter)
    run = drive(m, batch, WALL, refuse=lambda c: "no", too_large=too_large)
    assert run.reset is not None and m.poison == {("in", 1.0, ""): (cause, "its commit was refused: no")}
    stream.reacquire(m)
    (commit,) = drive(m, batch, WALL).commits
    (dl,) = _dead([commit])
    assert dl.cause == cause and len(dl.payload) == EXCERPT_BYTES  # the excerpt only: what was refused was large


def test_an_input_whose_state_is_over_the_commit_limit_is_refused_before_it_is_sent() -> None:
    m = machine(max_commit_bytes=100_000)
    run = drive(m, deliveries([(1, 10.0, ev("k", state_pad=150_000))]), WALL)
    assert run.reset is not None and run.commits == [] and "over the limit" in run.reset.reason
    assert m.poison[("in", 1.0, "")][0] == "too_large"


def test_a_state_value_that_cannot_be_encoded_is_refused() -> None:
    class Unencodable(Toy):
        def step(self, state: Any, inp: Ev, now: float) -> Step[Any]:
            return Step(changes={"k": object()})

        def deadline(self, key: str, value: Any) -> float | None:
            return None

    m = machine(Unencodable())
    run = drive(m, deliveries([(1, 10.0, ev())]), WALL)
    assert run.reset is not None and "cannot be encoded" in run.reset.reason and ("in", 1.0, "") in m.poison


def test_the_protocol_is_kept() -> None:
    m = machine()
    with pytest.raises(RuntimeError, match="no Commit awaited"):
        m.committed()
    action = m.fetched([("in", deliveries([(1, 10.0, ev())]))], WALL)
    assert isinstance(action, Commit)
    with pytest.raises(RuntimeError, match="in progress"):
        m.fetched([], WALL)
    with pytest.raises(RuntimeError, match="no Ack awaited"):
        m.acked()
    assert isinstance(m.committed(), Ack) and isinstance(m.acked(), Done)
    with pytest.raises(RuntimeError):
        m.refused("late")


# ---------------------------------------------------------------------- ids

@pytest.mark.parametrize(("msg_id", "expected"), [
    pytest.param("", "toy:0:in:1:0", id="derived-from-the-input"),
    pytest.param("mine", "mine", id="the-core-s-own"),
    pytest.param("x" * (MAX_MSG_ID + 1), bounded_id("x" * (MAX_MSG_ID + 1)), id="bounded"),
])
def test_message_ids(msg_id: str, expected: str) -> None:
    class Ids(Toy):
        def step(self, state: Any, inp: Ev, now: float) -> Step[Any]:
            result = super().step(state, inp, now)
            result.outputs[0].msg_id = msg_id
            return result

    m = machine(Ids())
    (out,) = _outputs(drive(m, deliveries([(1, 10.0, ev())]), WALL).commits)
    assert out[1]["Nats-Msg-Id"] == expected and len(expected) <= MAX_MSG_ID


def test_event_time_comes_from_the_header_never_later_than_the_stream() -> None:
    m = machine()
    batch = deliveries([(1, 10.0, ev("a")), (2, 20.0, ev("b"))], headers={1: {TIME_HEADER: "7.5"},
                                                                         2: {TIME_HEADER: "25.0"}})
    outs = _outputs(drive(m, batch, WALL).commits)
    assert [h[TIME_HEADER] for _, h, _ in outs] == ["7.5", "20.0"]


def test_add_for_tests_applies_without_a_unit() -> None:
    m = machine()
    draft = m.add(CommitDraft(), Step(changes={"k": Val(count=3)}), "base", 5.0)
    assert draft.units == [] and m.state == {"k": Val(count=3)}
    assert isinstance(m.seal(draft), Commit)


def test_the_machine_does_no_io() -> None:
    tree = ast.parse(Path(machine_module.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"nats", "anyio", "asyncio", "time", "socket", "httpx"}
