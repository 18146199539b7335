"""Resolved notifications whatever the alert's endsAt and the route's repeat_interval (issue #20).

An alert notified at 1 (group_wait 1s) and repeated on the 1 s ticks resolves with a push at
3.5 whose endsAt is in the past (3), now (3.5) or in the future (4.7). Alertmanager sends the
resolution at the first tick at or after the end (4, 4, 5), to integrations with send_resolved.
With a repeat interval shorter than the group interval, the notification log entry used to
expire (``2 * repeat_interval``) before that tick, and the resolution was never sent.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from filter_fold import Fold, alert, core, flush, fp, group_of

from contracts.messages import AlertChange, GroupFlush, PushedAlert, PushedAlerts, SendRequest
from pipeline.foundation.amconfig import load_config_text
from pipeline.foundation.runtime.step import Out
from stages.filter.config import filter_config
from stages.filter.core import FilterCore
from stages.filter.nflog import entry_life
from stages.router.config import RouteTable
from stages.router.core import RouterCore
from stages.rules.core import RulesCore
from tests.core_fold import CoreFold

A = {"alertname": "A"}
TINY, LARGE = 0.001, 3600.0

# (id, repeat_interval, group_interval, retention, life)
LIVES = [
    ("tiny-repeat-lives-past-the-next-tick", TINY, 1.0, 432000.0, TINY + 2.0),
    ("repeat-below-two-ticks", 1.0, 1.0, 432000.0, 3.0),
    ("repeat-1m-group-interval-5m", 60.0, 300.0, 432000.0, 660.0),  # 2m used to end before the 5m tick
    ("large-repeat-twice-repeat", 3600.0, 300.0, 432000.0, 7200.0),
    ("repeat-equal-two-ticks", 600.0, 300.0, 432000.0, 1200.0),
    ("retention-bounds-it", 3600.0, 300.0, 1000.0, 1000.0),
    ("no-repeat-retention", 0.0, 300.0, 432000.0, 432000.0),
]


@pytest.mark.parametrize(("repeat", "interval", "retention", "life"), [c[1:] for c in LIVES],
                         ids=[c[0] for c in LIVES])
def test_entry_life(repeat: float, interval: float, retention: float, life: float) -> None:
    assert entry_life(repeat, interval, retention) == pytest.approx(life)


# --------------------------------------------------------------------------- the filter alone

# endsAt of the resolving push (at 3.5), and the router's flushes after it: (time, ends_at of A)
ENDS: dict[str, list[tuple[float, float | None]]] = {
    "ends-past": [(4.0, 3.0)],
    "ends-now": [(4.0, 3.5)],
    "ends-future": [(4.0, None), (5.0, 4.7)],  # the update flushes it firing, the end resolves it
}
CASES = [(f"{e}-{'send' if sr else 'nosend'}-{'tiny' if r == TINY else 'large'}", e, sr, r)
         for e in ENDS for sr in (True, False) for r in (TINY, LARGE)]


@pytest.mark.parametrize(("ends", "send_resolved", "repeat"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_router_flush_of_a_resolved_alert_notifies(ends: str, send_resolved: bool, repeat: float) -> None:
    receiver = "team" if send_resolved else "quiet"
    f = Fold(core())
    first = f.sends(flush([alert(A, starts=0.0)], 1.0, seq=1, receiver=receiver, repeat=repeat, interval=1.0))
    assert [r.status for r in first] == ["firing"]
    sends: list[tuple[float, SendRequest]] = []
    for seq, (t, ends_at) in enumerate(ENDS[ends], start=2):
        sends += [(t, r) for r in f.sends(flush([alert(A, starts=0.0, ends=ends_at)], t, seq=seq,
                                                receiver=receiver, repeat=repeat, interval=1.0))]
    repeats = [o.payload for o in f.outputs[1:] if isinstance(o.payload, SendRequest)
               and o.payload.created_at < 4.0]
    assert len(repeats) == (2 if repeat == TINY else 0)  # the filter's re-evaluations at the ticks 2 and 3
    resolved = [(t, r) for t, r in sends if r.status == "resolved"]
    end_tick = ENDS[ends][-1][0]
    if send_resolved:
        assert [(t, [a.fingerprint for a in r.alerts]) for t, r in resolved] == [(end_tick, [fp(A)])]
    else:
        assert resolved == []
    entry = group_of(f.state).log[f"{receiver}/webhook/0"]
    assert (entry.firing, entry.resolved, entry.at) == ([], [fp(A)], end_tick)  # logged either way
    # nothing more for the group: no tick re-evaluates it, no resolution is sent twice
    assert f.advance(60.0) == []


def test_acknowledged_group_with_tiny_repeat_still_sends_its_resolution() -> None:
    from filter_fold import ack

    f = Fold(core())
    f.sends(flush([alert(A, starts=0.0)], 1.0, seq=1, repeat=TINY, interval=1.0))
    f.step(ack(1.5, group_key="{}:{}"))
    assert f.advance(30.0) == []  # acknowledged: no repeats, but its log entry is held
    (req,) = f.sends(flush([alert(A, starts=0.0, ends=30.2)], 31.0, seq=2, repeat=TINY, interval=1.0))
    assert req.status == "resolved"


# --------------------------------------------------------------------------- rules -> router -> filter

CONFIG = """
global: {resolve_timeout: 5m}
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: %s
receivers:
  - name: team
    webhook_configs: [{url: 'http://hook.example/team', send_resolved: %s}]
"""


class Chain:
    """The rules, router and filter cores wired as the pipeline wires them, in event time: a due
    timer of any stage fires before an input whose time is at or after its deadline; every
    output goes on at the time of the step or timer that made it."""

    def __init__(self, repeat: str, send_resolved: bool) -> None:
        config = load_config_text(CONFIG % (repeat, str(send_resolved).lower()))
        self.folds: dict[str, CoreFold[Any]] = {
            "rules": CoreFold(RulesCore(resolve_timeout=300.0)),
            "router": CoreFold(RouterCore(RouteTable.from_config(config))),
            "filter": CoreFold(FilterCore(filter_config(config))),
        }
        self.queue: list[tuple[float, int, str, Any]] = []
        self.order = itertools.count()
        self.sends: list[tuple[float, SendRequest]] = []

    def put(self, t: float, stage: str, inp: Any) -> None:
        heapq.heappush(self.queue, (t, next(self.order), stage, inp))

    def push(self, t: float, starts: float | None = None, ends: float | None = None) -> None:
        self.put(t, "rules", PushedAlerts(request_id=f"p{t}", org="o1", received_at=t,
                                          alerts=[PushedAlert(labels=A, starts_at=starts, ends_at=ends)]))

    def _route(self, t: float, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o.payload, AlertChange):
                self.put(t, "router", o.payload)
                self.put(t, "filter", o.payload)
            elif isinstance(o.payload, GroupFlush):
                self.put(t, "filter", o.payload)
            else:
                assert isinstance(o.payload, SendRequest)
                self.sends.append((t, o.payload))

    def _next_timer(self) -> tuple[float, str, str] | None:
        due = [(d, name, key) for name, fold in self.folds.items() for d, key in fold.due()[:1]]
        return min(due, default=None)

    def run(self, until: float) -> None:
        while True:
            timer = self._next_timer()
            t_in = self.queue[0][0] if self.queue else None
            if timer is not None and timer[0] <= until and (t_in is None or timer[0] <= t_in):
                d, name, key = timer
                fold = self.folds[name]
                self._route(d, fold._apply(fold._call(fold.core.fire, key, d)))
            elif t_in is not None and t_in <= until:
                t, _, name, inp = heapq.heappop(self.queue)
                fold = self.folds[name]
                self._route(t, fold._apply(fold._call(fold.core.step, inp, t)))
            else:
                return


# endsAt pushed at 3.5 -> (the resolution's tick, endsAt sent)
CHAIN_ENDS: Mapping[str, tuple[float | None, float, float]] = {
    "ends-past": (3.0, 4.0, 3.0),
    "ends-now": (3.5, 4.0, 3.5),
    "ends-future": (4.7, 5.0, 4.7),
}
CHAIN = [(f"{e}-{'send' if sr else 'nosend'}-{r}", e, sr, r) for e in CHAIN_ENDS for sr in (True, False)
         for r in ("1ms", "1h")]


@pytest.mark.parametrize(("ends", "send_resolved", "repeat"), [c[1:] for c in CHAIN], ids=[c[0] for c in CHAIN])
def test_issue_timeline_through_rules_router_and_filter(ends: str, send_resolved: bool, repeat: str) -> None:
    ends_at, tick, sent_end = CHAIN_ENDS[ends]
    chain = Chain(repeat, send_resolved)
    chain.push(0.0)
    chain.push(3.5, ends=ends_at)  # endsAt only, as the issue has it: startsAt is taken from it
    chain.run(30.0)
    got = [(t, r.status, r.alerts[0].starts_at, r.alerts[0].ends_at) for t, r in chain.sends]
    # at group_wait, then (repeat_interval 1ms) on every tick's re-evaluation (its grace after it)
    firing = [(1.0, "firing", 0.0, None)]
    if repeat == "1ms":
        firing += [(2.25, "firing", 0.0, None), (3.25, "firing", 0.0, None)]
        if ends == "ends-future":
            firing.append((4.0, "firing", 0.0, None))  # the update's flush, still firing
    resolution = [(tick, "resolved", 0.0, sent_end)] if send_resolved else []
    assert got == firing + resolution
