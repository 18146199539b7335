"""Alertmanager's acceptance timelines on Tocsin's real pipeline, and issue #20's resolved-alert cases.

The scenarios are ports of Alertmanager's ``test/with_api_v2/acceptance/`` (``send_test.go``,
``inhibit_test.go``, ``silence_test.go``) written the same way: pushes and silences at times
relative to the scenario's start, and the notifications wanted ``between(a, b)``. A scenario
passes as Alertmanager's ``Collector.Check`` decides: every wanted batch arrived within its
window (alerts equal by labels, annotations, and startsAt/endsAt within :data:`TOLERANCE`; an
empty batch wants nothing in the window), and the receiver got as many alerts in all, up to the
latest window's end, as were wanted.

All scenarios run at once in one pipeline (:func:`timelines`). Each has a child route of its
own, matched by a ``scenario`` label that every alert of it carries, with the scenario's timers
and webhook paths; silences and inhibit rules also match on it, so that scenarios never see
each other's alerts. Differences of design, each stated where it applies:

- **filter ticks** (:data:`GRACE`): Alertmanager runs a group's pipeline on every
  ``group_interval`` tick. Tocsin's router flushes only groups that changed; the filter
  re-evaluates the others (a repeat, an alert no longer muted) ``tick_grace`` after the tick,
  so that a router flush at the same tick arrives first (docs/architecture.md, "Group ticks").
  Windows of such notifications end that much later.
- **no start delay, timers survive a reload** (``cold_start``, ``reload``).
- **retry waits** have full jitter (``webhook_timeout``).

The scenarios start 50 ms apart (see :func:`timelines`); the file runs in about 16 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.application.app import Settings
from pipeline.application.http import HttpServer
from pipeline.application.settings import load, load_text
from pipeline.foundation.embedded import start_nats
from stages.filter.ticks import tick_grace
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

TOLERANCE = 0.15  # Alertmanager's AcceptanceOpts.Tolerance for startsAt/endsAt
GRACE = tick_grace(1.0)  # the filter's wait after a 1 s tick (see the module's docstring)
ZERO = "0001-01-01T00:00:00Z"  # a firing alert's endsAt in a webhook body


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class TA:
    """Alertmanager's ``TestAlert``: labels, annotations and times relative to the scenario's start
    (None: not given, as Alertmanager's zero)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts: float | None = None
    ends: float | None = None

    def active(self, starts: float, ends: float | None = None) -> TA:
        return replace(self, starts=starts, ends=ends)

    def annotate(self, name: str, value: str) -> TA:
        return replace(self, annotations={**self.annotations, name: value})


def alert(*kv: str) -> TA:
    return TA(labels=dict(zip(kv[::2], kv[1::2], strict=True)))


@dataclass
class Silence:
    starts: float
    ends: float
    match: list[tuple[str, str]] = field(default_factory=list)
    match_re: list[tuple[str, str]] = field(default_factory=list)
    id: str = ""


@dataclass
class Want:
    start: float
    end: float
    alerts: list[TA]


Action = Callable[["Run"], Awaitable[None]]


@dataclass
class Scenario:
    """One acceptance test: its route, webhooks, actions and wanted notifications."""

    name: str
    route: str  # the child route's timers and grouping (YAML flow mapping items)
    hooks: dict[str, str] = field(default_factory=lambda: {"webhook": ""})  # collector -> webhook options
    actions: list[tuple[float, Action]] = field(default_factory=list)
    wants: dict[str, list[Want]] = field(default_factory=dict)
    drop: Callable[[str, float], Awaitable[bool]] | None = None  # MockWebhook.Func: (collector, time)

    def push(self, at: float, *alerts: TA) -> None:
        async def act(run: Run) -> None:
            await run.push(alerts)
        self.actions.append((at, act))

    def set_silence(self, at: float, s: Silence) -> None:
        async def act(run: Run) -> None:
            await run.set_silence(s)
        self.actions.append((at, act))

    def del_silence(self, at: float, s: Silence) -> None:
        async def act(run: Run) -> None:
            assert (await run.api.delete(f"/api/v2/silence/{s.id}")).status_code == 200
        self.actions.append((at, act))

    def want(self, start: float, end: float, *alerts: TA, collector: str = "webhook") -> None:
        self.wants.setdefault(collector, []).append(Want(start, end, list(alerts)))

    @property
    def latest(self) -> float:
        return max(w.end for ws in self.wants.values() for w in ws)


@dataclass
class Got:
    at: float  # relative to the scenario's start
    alerts: list[dict[str, Any]]


@dataclass
class Run:
    """A scenario being run: its start time and what its webhooks received."""

    scenario: Scenario
    api: httpx.AsyncClient
    t0: float = 0.0
    got: dict[str, list[Got]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def abs(self, rel: float) -> float:
        return self.t0 + rel

    async def push(self, alerts: tuple[TA, ...]) -> None:
        body = []
        for a in alerts:
            doc: dict[str, Any] = {"labels": {**a.labels, "scenario": self.scenario.name},
                                   "annotations": a.annotations}
            if a.starts is not None:
                doc["startsAt"] = iso(self.abs(a.starts))
            if a.ends is not None:
                doc["endsAt"] = iso(self.abs(a.ends))
            body.append(doc)
        r = await self.api.post("/api/v2/alerts", json=body)
        assert r.status_code == 200, r.text

    async def set_silence(self, s: Silence) -> None:
        matchers = [{"name": n, "value": v, "isRegex": False} for n, v in s.match]
        matchers += [{"name": n, "value": v, "isRegex": True} for n, v in s.match_re]
        matchers.append({"name": "scenario", "value": self.scenario.name, "isRegex": False})  # isolation
        r = await self.api.post("/api/v2/silences", json={
            "matchers": matchers, "startsAt": iso(self.abs(s.starts)), "endsAt": iso(self.abs(s.ends)),
            "createdBy": "admin@example.com", "comment": "some comment"})
        assert r.status_code == 200, r.text
        s.id = r.json()["silenceID"]


def _t(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _matches(run: Run, want: TA, got: dict[str, Any]) -> bool:
    """Alertmanager's EqualAlerts (the ``scenario`` label aside)."""
    labels = {k: v for k, v in got["labels"].items() if k != "scenario"}
    if labels != want.labels or got.get("annotations", {}) != want.annotations:
        return False
    if want.starts is None or abs(_t(got["startsAt"]) - run.abs(want.starts)) > TOLERANCE:
        return False
    if want.ends is None:
        return bool(got["endsAt"] == ZERO)
    return got["endsAt"] != ZERO and abs(_t(got["endsAt"]) - run.abs(want.ends)) <= TOLERANCE


def check(run: Run) -> None:
    """Alertmanager's Collector.Check, for every collector of the scenario."""
    problems = []
    for name, wants in run.scenario.wants.items():
        got = [g for g in run.got.get(name, []) if g.at <= run.scenario.latest]  # collected until the end
        for w in wants:
            batches = [g.alerts for g in got if w.start <= g.at <= w.end]
            found = (not w.alerts and not batches) or any(
                len(b) == len(w.alerts) and all(any(_matches(run, e, a) for a in b) for e in w.alerts)
                for b in batches)
            if not found:
                problems.append(f"{name}: nothing like {w} in [{w.start}, {w.end}]")
        wanted, received = sum(len(w.alerts) for w in wants), sum(len(g.alerts) for g in got)
        if wanted != received:
            problems.append(f"{name}: wanted {wanted} alerts in all, received {received}")
    if problems:
        seen = {n: [(round(g.at, 2), [(a["labels"].get("alertname"), a["status"], a["startsAt"], a["endsAt"],
                                       a.get("annotations")) for a in g.alerts]) for g in gs]
                for n, gs in run.got.items()}
        pytest.fail("\n".join([*problems, f"received: {seen}", *run.notes]))


# --------------------------------------------------------------------------- scenarios

SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, route: str, **kw: Any) -> Scenario:
    s = SCENARIOS[name] = Scenario(name=name, route=route, **kw)
    return s


# Issue #20: an alert notified at 2 and repeated at 3 resolves with a push at 3.5 whose endsAt is
# in the past (3, as Prometheus sends it), now (3.5), or in the future (4.7). Alertmanager sends
# the resolution at the next tick after endsAt: 4, 4, 5. Tocsin sent none.
FAST = "group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1ms"

s = scenario("resolved_past", FAST)
s.push(1, alert("alertname", "Repro"))
s.push(3.5, TA(labels={"alertname": "Repro"}, ends=3))  # endsAt only, as in the issue
s.want(2, 2.5, alert("alertname", "Repro").active(1))
s.want(3, 3.5 + GRACE, alert("alertname", "Repro").active(1))  # a repeat: a filter tick
s.want(4, 4.5, alert("alertname", "Repro").active(1, 3))

s = scenario("resolved_now", FAST)
s.push(1, alert("alertname", "Repro"))
s.push(3.5, TA(labels={"alertname": "Repro"}, ends=3.5))
s.want(2, 2.5, alert("alertname", "Repro").active(1))
s.want(3, 3.5 + GRACE, alert("alertname", "Repro").active(1))
s.want(4, 4.5, alert("alertname", "Repro").active(1, 3.5))

s = scenario("resolved_future", FAST)
s.push(1, alert("alertname", "Repro"))
s.push(3.5, TA(labels={"alertname": "Repro"}, ends=4.7))
s.want(2, 2.5, alert("alertname", "Repro").active(1))
s.want(3, 3.5 + GRACE, alert("alertname", "Repro").active(1))
s.want(4, 4.5, alert("alertname", "Repro").active(1))  # still firing (its update flushes it)
s.want(5, 5.5, alert("alertname", "Repro").active(1, 4.7))

# send_resolved: false: the resolution is logged but not sent (nothing at 4), as in Alertmanager.
s = scenario("resolved_unsent", FAST, hooks={"webhook": "send_resolved: false"})
s.push(1, alert("alertname", "Repro"))
s.push(3.5, TA(labels={"alertname": "Repro"}, ends=3))
s.want(2, 2.5, alert("alertname", "Repro").active(1))
s.want(3, 3.5 + GRACE, alert("alertname", "Repro").active(1))
s.want(4, 5)


# send_test.go TestMergeAlerts and TestMergeAlertsWithEndsAt
def merge_alerts(name: str, ends_at: bool) -> None:
    def timerange(ts: float) -> tuple[float, float | None]:
        return (ts, ts + 3.0) if ends_at else (ts, None)

    s = scenario(name, FAST)
    test = alert("alertname", "test")
    # Refresh an alert several times. The starting time must remain at the earliest point in time.
    s.push(1, test.active(*timerange(1.1)))
    # Another Prometheus server might be sending later but with an earlier start time.
    s.push(1.2, test.active(1))
    s.want(2, 2.5, test.active(1))
    s.push(2.1, test.annotate("ann", "v1").active(*timerange(2)))
    s.want(3, 3.5, test.annotate("ann", "v1").active(1))
    # Annotations are always overwritten by the alert that arrived most recently.
    s.push(3.6, test.annotate("ann", "v2").active(*timerange(1.5)))
    s.want(4, 4.5, test.annotate("ann", "v2").active(1))
    # If an alert is marked resolved twice, the latest point in time must be set as the eventual
    # resolve time.
    s.push(4.6, test.annotate("ann", "v2").active(3, 4.5))
    s.push(4.8, test.annotate("ann", "v3").active(2.9, 4.8))
    s.push(4.8, test.annotate("ann", "v3").active(2.9, 4.1))
    s.want(5, 5.5, test.annotate("ann", "v3").active(1, 4.8))
    # Reactivate an alert after a previous occurrence has been resolved. No overlap, no merge.
    s.push(5.3, test.active(*timerange(5)))
    s.want(6, 6.5, test.active(5))


merge_alerts("merge", False)
merge_alerts("merge_ends_at", True)

# send_test.go TestRepeat
s = scenario("repeat", FAST)
s.push(1, alert("alertname", "test").active(1))
s.push(3.5, alert("alertname", "test").active(1, 3))
s.want(2, 2.5, alert("alertname", "test").active(1))
s.want(3, 3.5 + GRACE, alert("alertname", "test").active(1))
s.want(4, 4.5, alert("alertname", "test").active(1, 3))


# send_test.go TestRetry: the second webhook drops (answers 200 without reading) until 4.5, so it
# sees only the repeat at 6 (repeat_interval 3s). Tocsin's repeat comes from a filter tick, whose
# grace at group_interval 2s is 0.5 s.
async def drop_until_4_5(collector: str, at: float) -> bool:
    return collector == "webhook_failing" and at < 4.5


s = scenario("retry", "group_by: [alertname], group_wait: 1s, group_interval: 2s, repeat_interval: 3s",
             hooks={"webhook": "", "webhook_failing": ""}, drop=drop_until_4_5)
s.push(1, alert("alertname", "test1"))
s.want(2, 2.5, alert("alertname", "test1").active(1))
s.want(6, 6.5 + tick_grace(2.0), alert("alertname", "test1").active(1))
s.want(6, 6.5 + tick_grace(2.0), alert("alertname", "test1").active(1), collector="webhook_failing")

# send_test.go TestBatching
s = scenario("batching", "group_by: [], group_wait: 1s, group_interval: 1s, repeat_interval: 4900ms")
s.push(1.1, alert("alertname", "test1").active(1))
s.push(1.7, alert("alertname", "test5").active(1))
s.want(2.0, 2.5, alert("alertname", "test1").active(1), alert("alertname", "test5").active(1))
s.push(3.3, alert("alertname", "test2").active(1.5), alert("alertname", "test3").active(1.5),
       alert("alertname", "test4").active(1.6))
s.want(4.1, 4.5, *(alert("alertname", n).active(a) for n, a in
                   (("test1", 1), ("test5", 1), ("test2", 1.5), ("test3", 1.5), ("test4", 1.6))))
# While no changes happen expect no additional notifications until the 5s repeat interval has ended.
s.want(9.1, 9.5 + GRACE, *(alert("alertname", n).active(a) for n, a in
                           (("test1", 1), ("test5", 1), ("test2", 1.5), ("test3", 1.5), ("test4", 1.6))))

# send_test.go TestResolved (global resolve_timeout: 10s in this file's configuration)
s = scenario("resolved", "group_by: [alertname], group_wait: 1s, group_interval: 5s")
s.push(1, *(alert("alertname", "test", "lbl", v) for v in ("v1", "v2", "v3")))
s.want(2, 2.5, *(alert("alertname", "test", "lbl", v).active(1) for v in ("v1", "v2", "v3")))
s.want(12, 13, *(alert("alertname", "test", "lbl", v).active(1, 11) for v in ("v1", "v2", "v3")))

# send_test.go TestResolvedFilter: resolved alerts must be logged even when not sent.
s = scenario("resolved_filter", "group_by: [alertname], group_wait: 1s, group_interval: 5s",
             hooks={"webhook1": "send_resolved: true", "webhook2": "send_resolved: false"})
s.push(1, alert("alertname", "test", "lbl", "v1"), alert("alertname", "test", "lbl", "v2"))
s.push(3, alert("alertname", "test", "lbl", "v1").active(1, 4), alert("alertname", "test", "lbl", "v3"))
s.push(8, alert("alertname", "test", "lbl", "v3").active(3))
v1, v2, v3 = (alert("alertname", "test", "lbl", v) for v in ("v1", "v2", "v3"))
s.want(2, 2.5, v1.active(1), v2.active(1), collector="webhook1")
s.want(7, 7.5, v1.active(1, 4), v2.active(1), v3.active(3), collector="webhook1")
# Notification should be sent because the v2 alert is resolved due to the time-out.
s.want(12, 12.5, v2.active(1, 11), v3.active(3), collector="webhook1")
s.want(2, 2.5, v1.active(1), v2.active(1), collector="webhook2")
s.want(7, 7.5, v2.active(1), v3.active(3), collector="webhook2")
# No notification should be sent after group_interval because no new alert has been fired.
s.want(12, 12.5, collector="webhook2")

# send_test.go TestColdStart. Tocsin differs: it has no --dispatch.start-delay (a restarted
# Alertmanager waits for its peers and Prometheus to repopulate its in-memory alerts; Tocsin's
# alerts and timers are durable, so there is nothing to wait for). Without the delay, Alertmanager
# too flushes an alert older than group_wait at once, and the group ticks every group_interval
# from that first flush: test1 (started long ago) at 1, test2 at the next tick, 7. (The reload
# half of the test is the ``reload`` scenario.)
s = scenario("cold_start", "group_by: [], group_wait: 1s, group_interval: 6s, repeat_interval: 10m")
s.push(1, alert("alertname", "test1").active(-100))
s.push(2, alert("alertname", "test2"))
s.want(1, 1.5, alert("alertname", "test1").active(-100))
s.want(7, 7.5, alert("alertname", "test1").active(-100), alert("alertname", "test2").active(2))


# send_test.go TestReload. Tocsin differs: a reload keeps every group's timers (they are state;
# a reload neither re-sends nor flushes early nor late), where Alertmanager re-creates its groups.
# So test2 joins the group's next tick on its grid, 2 + 6 = 8, not 3 + 6 = 9.
async def reload(run: Run) -> None:
    r = await run.api.post("/-/reload")
    if r.status_code in (404, 405):
        run.notes.append("skip: POST /-/reload is not served")
    else:
        assert r.status_code == 200, r.text


s = scenario("reload", "group_by: [], group_wait: 1s, group_interval: 6s, repeat_interval: 10m")
s.push(1, alert("alertname", "test1"))
s.actions.append((3, reload))
s.push(4, alert("alertname", "test2"))
s.want(2, 2.5, alert("alertname", "test1").active(1))
s.want(8, 8.5, alert("alertname", "test1").active(1), alert("alertname", "test2").active(4))


# send_test.go TestWebhookTimeout: the webhook takes 1 s to answer (then drops) until 3; its
# timeout is 500ms, so the first attempts time out and a retry at or after 3 gets through.
# Tocsin's retries wait with full jitter, up to notifier.retry.backoff_base x 2^n: with the
# default base (500ms) the third attempt may start a second after the second timeout, past 4.
# This file's configuration sets a 100ms base, so attempts follow the timeouts closely, as
# Alertmanager's do.
async def slow_until_3(collector: str, at: float) -> bool:
    if at < 3:
        await asyncio.sleep(1)
        return True
    return False


s = scenario("webhook_timeout", "group_by: [alertname], group_wait: 1s, group_interval: 1m, repeat_interval: 1m",
             hooks={"webhook": "timeout: 500ms"}, drop=slow_until_3)
s.push(1, alert("alertname", "test1"))
s.want(3, 4, alert("alertname", "test1").active(1))

# inhibit_test.go TestInhibiting (the rule's ``equal`` also lists ``scenario``: isolation)
INHIBIT = "group_by: [], group_wait: 1s, group_interval: 1s, repeat_interval: 1s"
s = scenario("inhibiting", INHIBIT)
s.push(1, alert("alertname", "test1", "job", "testjob", "zone", "aa"))
s.push(1, alert("alertname", "InstanceDown", "job", "testjob", "zone", "aa"))
s.push(1, alert("alertname", "InstanceDown", "job", "testjob", "zone", "ab"))
# This JobDown in zone aa should inhibit InstanceDown in zone aa in the second batch.
s.push(2.2, alert("alertname", "JobDown", "job", "testjob", "zone", "aa"))
# InstanceDown in zone aa should fire again in the third batch once JobDown in zone aa resolves.
s.push(3.6, alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(2.2, 3.6))
test1 = alert("alertname", "test1", "job", "testjob", "zone", "aa").active(1)
id_aa = alert("alertname", "InstanceDown", "job", "testjob", "zone", "aa").active(1)
id_ab = alert("alertname", "InstanceDown", "job", "testjob", "zone", "ab").active(1)
s.want(2, 2.5, test1, id_aa, id_ab)
s.want(3, 3.5, test1, id_ab, alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(2.2))
s.want(4, 4.5, test1, id_aa, id_ab, alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(2.2, 3.6))

# inhibit_test.go TestAlwaysInhibiting: inhibited and inhibiting alerts resolved at once are sent together.
s = scenario("always_inhibiting", INHIBIT)
s.push(1, alert("alertname", "InstanceDown", "job", "testjob", "zone", "aa"))
s.push(1, alert("alertname", "JobDown", "job", "testjob", "zone", "aa"))
s.push(2.6, alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(1, 2.6))
s.push(2.6, alert("alertname", "InstanceDown", "job", "testjob", "zone", "aa").active(1, 2.6))
s.want(2, 2.5, alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(1))
s.want(3, 3.5, alert("alertname", "InstanceDown", "job", "testjob", "zone", "aa").active(1, 2.6),
       alert("alertname", "JobDown", "job", "testjob", "zone", "aa").active(1, 2.6))

# silence_test.go TestSilencing (every silence also matches ``scenario``: isolation)
s = scenario("silencing", FAST.replace("[alertname]", "[]"))
s.push(1, alert("alertname", "test1").active(1))
s.push(1, alert("alertname", "test2").active(1))
s.want(2, 2.5, alert("alertname", "test1").active(1), alert("alertname", "test2").active(1))
# Add a silence that affects the first alert.
s.set_silence(2.3, Silence(2.5, 4.5, match=[("alertname", "test1")]))
s.want(3, 3.5 + GRACE, alert("alertname", "test2").active(1))
s.want(4, 4.5 + GRACE, alert("alertname", "test2").active(1))
# Silence should be over now and we receive both alerts again.
s.want(5, 5.5 + GRACE, alert("alertname", "test1").active(1), alert("alertname", "test2").active(1))

# silence_test.go TestSilenceDelete: silence everything for a long time, delete it after two ticks.
s = scenario("silence_delete", FAST.replace("[alertname]", "[]"))
s.push(1, alert("alertname", "test1").active(1))
s.push(1, alert("alertname", "test2").active(1))
sil = Silence(1.5, 100, match_re=[("alertname", ".+")])
s.set_silence(1.3, sil)
s.del_silence(3.5, sil)
s.want(3.5, 4.5 + GRACE, alert("alertname", "test1").active(1), alert("alertname", "test2").active(1))
# silence_test.go TestAddSilence: the API takes a silence (set_silence checks the answer). Nothing fires.
s = scenario("add_silence", FAST.replace("[alertname]", "[]"))
s.set_silence(0.5, Silence(0.5, 24 * 3600, match=[("foo", "bar")]))
s.want(0, 1)
del s, v1, v2, v3, test1, id_aa, id_ab, sil


def config(url: str) -> str:
    routes, receivers = [], []
    for sc in SCENARIOS.values():
        routes.append(f"    - {{receiver: {sc.name}, matchers: ['scenario=\"{sc.name}\"'], {sc.route}}}")
        hooks = ", ".join(f"{{url: '{url}/{sc.name}/{c}', {opts}}}" if opts else f"{{url: '{url}/{sc.name}/{c}'}}"
                          for c, opts in sc.hooks.items())
        receivers.append(f"  - {{name: {sc.name}, webhook_configs: [{hooks}]}}")
    newline = "\n"
    return f"""
global:
  resolve_timeout: 10s
route:
  receiver: none
  routes:
{newline.join(routes)}
receivers:
  - name: none
{newline.join(receivers)}
inhibit_rules:
  - source_match: {{alertname: JobDown}}
    target_match: {{alertname: InstanceDown}}
    equal: [job, zone, scenario]
tocsin:
  default_org: acme
  notifier: {{retry: {{backoff_base: 100ms}}}}
"""


# --------------------------------------------------------------------------- running


@contextlib.asynccontextmanager
async def webhooks(runs: dict[str, Run]) -> AsyncIterator[str]:
    """One HTTP server for every scenario's webhooks: ``/<scenario>/<collector>``."""

    async def record(request: Request) -> Response:
        now = time.time()
        name, _, collector = request.url.path.strip("/").partition("/")
        run = runs[name]
        drop = run.scenario.drop
        if drop is not None and await drop(collector, now - run.t0):
            return Response(status_code=200)  # MockWebhook.Func: dropped, yet a success
        body = msgspec.json.decode(await request.body())
        run.got.setdefault(collector, []).append(Got(at=now - run.t0, alerts=body["alerts"]))
        return Response(status_code=200)

    server = HttpServer(Starlette(routes=[Route("/{path:path}", record, methods=["POST"])]), "127.0.0.1:0")

    class _Status:
        def __init__(self) -> None:
            self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def started(self, value: Any = None) -> None:
            self.ready.set_result(None)

    status = _Status()
    task = asyncio.create_task(server.run(task_status=status))  # type: ignore[arg-type]
    await status.ready
    try:
        yield server.url
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


async def play(run: Run) -> Run:
    """Do the scenario's actions at their times, then wait out its latest window."""

    async def at(when: float, act: Action) -> None:
        await asyncio.sleep(max(0.0, run.abs(when) - time.time()))
        await act(run)

    # As in Alertmanager's runActions: every action in a task of its own, at its time.
    await asyncio.gather(*(at(when, act) for when, act in run.scenario.actions))
    await asyncio.sleep(max(0.0, run.abs(run.scenario.latest) - time.time()))
    return run


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def timelines(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, asyncio.Task[Run]]]:
    """Start one pipeline and every scenario at once; each test awaits its own."""
    tmp = tmp_path_factory.mktemp("am_acceptance")
    runs: dict[str, Run] = {}
    async with start_nats(tmp / "nats") as nats, webhooks(runs) as url:
        path = tmp / "alertmanager.yml"
        path.write_text(config(url))
        settings = Settings(storage_path=tmp / "data", nats_url=nats.url, listen="127.0.0.1:0",
                            loaded=load(path), config_file=path, partitions=4)
        async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep, \
                httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
            # Warm up the pipeline (a first step creates consumers and caches)
            # so that the scenarios' first pushes are as quick as the later ones.
            warm = [{"labels": {"alertname": "WarmUp", "n": str(i)}} for i in range(16)]
            assert (await api.post("/api/v2/alerts", json=warm)).status_code == 200
            await asyncio.sleep(1.0)
            # Scenarios start 50 ms apart: two dozen pushes at the same instant would queue in
            # the API for ~0.1 s, and an alert's startsAt (and its group's timers) is the time
            # its push arrives; Alertmanager's tests assume it arrives when it is sent.
            t0 = time.time() + 0.1
            for i, (name, sc) in enumerate(SCENARIOS.items()):
                runs[name] = Run(scenario=sc, api=api, t0=t0 + 0.05 * i)
            tasks = {name: asyncio.create_task(play(run)) for name, run in runs.items()}
            try:
                yield tasks
            finally:
                for task in tasks.values():
                    task.cancel()
                await asyncio.gather(*tasks.values(), return_exceptions=True)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_timeline(timelines: dict[str, asyncio.Task[Run]], name: str) -> None:
    run = await timelines[name]
    skips = [n for n in run.notes if n.startswith("skip: ")]
    if skips:
        pytest.skip(skips[0][6:])
    check(run)


def test_empty_inhibition_rule_is_accepted() -> None:
    """inhibit_test.go TestEmptyInhibitionRule: a configuration with an empty inhibit rule runs."""
    loaded = load_text("""
route: {receiver: default}
receivers: [{name: default, webhook_configs: [{url: 'http://127.0.0.1:9/x'}]}]
inhibit_rules:
-
""")
    (rule,) = loaded.config.inhibit_rules  # Go's zero value: no matchers, inhibits nothing
    assert not rule.source_matchers and not rule.target_matchers and not rule.equal
