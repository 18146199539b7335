"""Property tests of the filter core: determinism, and no send for a flush already notified."""

from __future__ import annotations

from typing import Any

import msgspec
from filter_fold import Fold, ack, alert, change, core, flush, last_of, matcher, silence, upsert
from filter_fold import expire as expire_cmd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.messages import GroupFlush, SendRequest
from pipeline.foundation.runtime.step import Reject

UNIVERSE = [
    {"alertname": "DiskFull", "severity": "critical", "cluster": "a"},
    {"alertname": "DiskLow", "severity": "warning", "cluster": "a"},
    {"alertname": "DiskLow", "severity": "warning", "cluster": "b"},
    {"alertname": "NodeDown", "node": "n1"},
    {"alertname": "AppDown", "node": "n1"},
]
RECEIVERS = ["team", "quiet", "multi", "pager"]
REPEATS = [600.0, 3600.0]

_enc = msgspec.json.Encoder()

flush_ev = st.tuples(st.just("flush"), st.integers(0, 3), st.lists(st.tuples(st.integers(0, 4), st.booleans()),
                                                                    max_size=5, unique_by=lambda x: x[0]),
                     st.sampled_from(REPEATS))
change_ev = st.tuples(st.just("change"), st.integers(0, 4), st.sampled_from(["fired", "resolved"]))
silence_ev = st.tuples(st.just("silence"), st.sampled_from(["s1", "s2"]),
                       st.sampled_from([("alertname", "DiskLow"), ("cluster", "a"), ("node", "n1")]),
                       st.integers(-100, 500), st.integers(1, 2000))
expire_ev = st.tuples(st.just("expire"), st.sampled_from(["s1", "s2"]))
ack_ev = st.tuples(st.just("ack"), st.one_of(st.integers(0, 3).map(lambda r: ("group", r)),
                                             st.integers(0, 4).map(lambda i: ("alert", i))),
                   st.one_of(st.none(), st.integers(1, 3000)))
event = st.one_of(flush_ev, change_ev, silence_ev, expire_ev, ack_ev)
history = st.lists(st.tuples(st.integers(0, 900), event), max_size=30)


def _inputs(hist: list[tuple[int, Any]], *, silences: bool = True) -> list[Any]:
    """Turn a generated history into core inputs with non-decreasing times from 1000."""
    t = 1000.0
    seqs = dict.fromkeys(RECEIVERS, 0)
    out: list[Any] = []
    for dt, ev in hist:
        t += dt
        kind = ev[0]
        if kind == "flush":
            _, r, members, repeat = ev
            rcv = RECEIVERS[r]
            seqs[rcv] += 1
            alerts = [alert(UNIVERSE[i], starts=500.0, ends=(t - 1.0 if resolved else None)) for i, resolved in members]
            out.append(flush(alerts, t, seq=seqs[rcv], receiver=rcv, group_key=f"{{}}:{rcv}", group_id=f"g-{rcv}",
                             repeat=repeat))
        elif kind == "change":
            _, i, what = ev
            out.append(change(what, alert(UNIVERSE[i], starts=500.0, ends=t if what == "resolved" else None), t))
        elif kind == "silence" and silences:
            _, sid, (name, value), start, length = ev
            out.append(upsert(silence(sid, [matcher(name, value)], t + start, t + start + length), t, cmd_id=sid))
        elif kind == "expire" and silences:
            out.append(expire_cmd(ev[1], t))
        elif kind == "ack":
            _, (what, idx), expires = ev
            target = ({"group_key": f"{{}}:{RECEIVERS[idx]}"} if what == "group"
                      else {"fingerprint": alert(UNIVERSE[idx]).fingerprint})
            out.append(ack(t, expires=None if expires is None else t + expires, **target))
    return out


def _run(inputs: list[Any]) -> tuple[Fold, list[bytes]]:
    f = Fold(core())
    log: list[bytes] = []
    for inp in inputs:
        try:
            outs = f.step(inp)
        except Reject as exc:
            log.append(f"reject: {exc}".encode())
            continue
        log.extend(_enc.encode(o.payload) + o.msg_id.encode() + o.subject.encode() for o in outs)
    return f, log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history)
def test_same_inputs_folded_twice_give_identical_outputs_and_state(hist: list[tuple[int, Any]]) -> None:
    inputs = _inputs(hist)
    f1, log1 = _run(inputs)
    f2, log2 = _run(inputs)
    assert log1 == log2
    assert _enc.encode(dict(sorted(f1.state.items()))) == _enc.encode(dict(sorted(f2.state.items())))


def _replay_last_sent_flush(inputs: list[Any], delay_of: Any) -> None:
    f = Fold(core())
    for inp in inputs:
        try:
            if isinstance(inp, GroupFlush):
                f.advance(inp.flushed_at)  # re-evaluations of quiet groups before: not this flush's sends
            outs = f.step(inp)
        except Reject:
            continue
        if not isinstance(inp, GroupFlush):
            continue
        sent = {(o.payload.integration.kind, o.payload.integration.index) for o in outs
                if isinstance(o.payload, SendRequest)}
        if not sent:
            continue
        delay = delay_of(inp)
        again = msgspec.structs.replace(inp, flush_seq=inp.flush_seq + 1, flushed_at=inp.flushed_at + delay)
        probe = Fold(f.core)
        probe.state = dict(f.state)
        before = last_of(probe.state, inp.group_key, inp.org)
        if probe.advance(again.flushed_at):
            continue  # a re-evaluation on a tick before notified (an unmute): the log moved on
        if last_of(probe.state, inp.group_key, inp.org) != before:
            # re-evaluated on a tick: the router had dropped the resolved alerts
            firing = [a for a in again.alerts if not a.resolved_at(inp.flushed_at)]
            again = msgspec.structs.replace(again, alerts=firing)
        repeat_sends = {(o.payload.integration.kind, o.payload.integration.index)
                        for o in probe.step(again) if isinstance(o.payload, SendRequest)}
        assert not (repeat_sends & sent), f"re-sent {repeat_sends & sent} after {delay}s"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history)
def test_identical_flush_at_once_never_sends_again(hist: list[tuple[int, Any]]) -> None:
    _replay_last_sent_flush(_inputs(hist), lambda f: 0.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history, st.one_of(st.sampled_from([0.0, 0.999]), st.floats(0.0, 0.999)))
def test_identical_flush_within_repeat_interval_never_sends_again(hist: list[tuple[int, Any]],
                                                                  fraction: float) -> None:
    # Without silences nothing but time can change what a flush keeps; the flush's alerts keep
    # their status (resolved ones ended before it), so only the repeat interval could re-send.
    _replay_last_sent_flush(_inputs(hist, silences=False), lambda f: fraction * f.repeat_interval)
