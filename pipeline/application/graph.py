"""The stage graph, as data: one declaration of the stateful stages, and what derives from it.

Each :class:`StageDecl` names a stage, its inputs (upstream streams and the message types
taken from each), its output stream and the types it writes there, its partitioning, and
its pure core (a factory of the process's settings). The runtime's stage specs
(:func:`stage_specs`), ``tocsin run STAGE`` and ``tocsin up`` (:func:`process_stages`), the
API's reads (:func:`stream_names`) and the topology (:func:`topology_stages`) derive from it.

It lives in ``pipeline/``, not ``contracts/``: a declaration names the stages' cores, and
``contracts/`` is what the stages import (the only coupling between them), so it must not
import a stage. The message types it names are ``contracts``'.

**Deployments** (the brief's §4b), recorded in ``TOCSIN_META`` like P
(:func:`pipeline.foundation.runtime.jetstream.ensure_deployment`):

- ``separate``: one stage per consumer, each with its own output stream ``TOCSIN_<OUTPUT>``
  (state, progress, outputs); every hop is a fetch and an atomic commit;
- ``chained``: a run of consecutive stages with the same partitioning (:func:`chains`: rules,
  router, filter) is one stage, ``chain`` (:mod:`pipeline.foundation.runtime.chain`). Its stream is its
  last stage's, ``TOCSIN_SENDS``, which holds the subjects of every member (``tocsin.alerts.>``,
  ``tocsin.groups.>``, ``tocsin.sends.>``): subjects stay as they are, one atomic batch holds
  them all, and the notifier consumes ``tocsin.sends.out.>`` there as before. The chain's
  progress record is ``tocsin.sends.progress.<p>``. Group flushes are handed on in memory and
  not published (nothing outside the chain reads them: :data:`StageDecl.kept`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from contracts.messages import (
    AckCommand,
    AlertChange,
    Event,
    GroupFlush,
    PushedAlerts,
    RuleCommand,
    SendRequest,
    SilenceCommand,
)
from pipeline.application.process_settings import CHAINED, DEFAULT_DEPLOYMENT, DEPLOYMENTS, SEPARATE, Settings
from pipeline.foundation.runtime.chain import ChainCore, ChainLayout, ChainMember
from pipeline.foundation.runtime.partition import Input, StageSpec
from pipeline.foundation.runtime.subjects import StreamNames
from stages.filter.config import filter_config, filter_options
from stages.filter.core import FilterCore
from stages.filter.state import GroupState
from stages.filter.ticks import LastFlush
from stages.router.config import RouteTable
from stages.router.core import RouterCore
from stages.rules.core import RulesCore
from stages.rules.effective import load_checked_rules

__all__ = [
    "CHAIN",
    "CHAINED",
    "DEFAULT_DEPLOYMENT",
    "DEPLOYMENTS",
    "GRAPH",
    "FilterInChain",
    "SEPARATE",
    "InputDecl",
    "StageDecl",
    "chain_core",
    "chains",
    "decl",
    "filter_in_chain",
    "process_stages",
    "separate_streams",
    "stage_specs",
    "stream_names",
    "topology_stages",
]

CHAIN: Final = "chain"  # the stage name of the chain in the chained deployment
# Inputs the chain fetches at once: an alert writes about 6 messages through the chain, so a full
# fetch of 160 stays in one atomic batch (under 1,000); 256 split in two sequential commits, and
# measured 10% fewer alerts/s (loadtest.runtime_bench --stage pipeline, docs/loadtest.md)
CHAIN_FETCH_BATCH: Final = 160


def rules_core(settings: Settings) -> Any:
    section = settings.loaded.tocsin.rules
    retention = {} if settings.alerts_gc_interval is None else {"retention": settings.alerts_gc_interval}
    return RulesCore(load_checked_rules(section) if section else None,
                     resolve_timeout=settings.loaded.config.global_.resolve_timeout, **retention)


def router_core(settings: Settings) -> Any:
    table = RouteTable.from_config(settings.loaded.config, settings.loaded.orgs)
    retention = {} if settings.data_retention is None else {"retention": settings.data_retention}
    return RouterCore(table, since=time.time(), **retention)


def filter_core(settings: Settings) -> Any:
    options = filter_options(settings.loaded.tocsin.filter)
    config = filter_config(settings.loaded.config, options)
    orgs = {org: filter_config(c, options) for org, c in settings.loaded.orgs.items()}
    return FilterCore(config, orgs)


class FilterInChain:
    """The filter core in a chain: a group's re-evaluation at its tick T fires at T.

    Run apart, the filter waits ``tick_grace`` (``min(group_interval / 4, 1 s)``) after a tick
    before it re-evaluates a quiet group, so that a flush the router makes at that tick, which
    comes through a stream, arrives first and replaces it; a router later than that makes two
    notifications where Alertmanager makes one. In a chain the router's timers at T fire before
    the filter's (:class:`~pipeline.foundation.runtime.chain.ChainCore` orders equal deadlines by place),
    and its flush reaches the filter in the same step: the re-evaluation needs no grace, and no
    flush can come after it. The core is unchanged: its timer is moved from ``next + grace``
    to ``next``, and fired as due then (what else of the group falls due within the grace goes
    with it, up to a second early)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.value_type = inner.value_type

    def __getattr__(self, name: str) -> Any:  # config_for, reindex, ...
        return getattr(self.inner, name)

    @staticmethod
    def _tick(value: Any) -> tuple[float, float] | None:
        """(tick, graced deadline) of a value whose timer is a re-evaluation."""
        last = value.last if isinstance(value, GroupState) else value if isinstance(value, LastFlush) else None
        due = None if last is None else last.due_at
        if last is None or last.next is None or due is None or due != value.due_at:
            return None
        return last.next, due

    def step(self, state: Any, inp: Any, now: float) -> Any:
        return self.inner.step(state, inp, now)

    def deadline(self, key: str, value: Any) -> float | None:
        tick = self._tick(value)
        return tick[0] if tick is not None else self.inner.deadline(key, value)

    def fire(self, state: Any, key: str, now: float) -> Any:
        tick = self._tick(state.get(key))
        if tick is not None and tick[0] <= now < tick[1]:
            now = tick[1]  # the re-evaluation itself is at the tick's time (its flush's time is the tick)
        return self.inner.fire(state, key, now)


def filter_in_chain(core: Any) -> Any:
    return FilterInChain(core)


def _history_ttl(settings: Settings) -> int | None:
    return int(settings.loaded.tocsin.history_retention)


@dataclass(frozen=True)
class InputDecl:
    """An input of a stage: the ``out`` subjects of stream ``stream``, and the types taken there."""

    stream: str
    types: tuple[type, ...]


@dataclass(frozen=True)
class StageDecl:
    name: str
    inputs: tuple[InputDecl, ...]
    output: str  # the output stream's name (TOCSIN_<OUTPUT>)
    output_types: tuple[type, ...]
    core: Callable[[Settings], Any]
    partitioned_by: str = "org"  # partition = hash(org) mod P (contracts.partition)
    #: its outputs are read outside a chain (alert changes: the history; send requests: the
    #: notifier); a chain publishes only these
    kept: bool = True
    output_ttl: Callable[[Settings], int | None] | None = None  # seconds outputs are kept; None: the default
    in_chain: Callable[[Any], Any] | None = None  # how its core runs in a chain (wraps it), if not as it is


#: The stateful stages, in pipeline order. Streams no stage writes (``events``: the source and
#: the API; ``commands``: the API) are the graph's inputs.
GRAPH: Final[tuple[StageDecl, ...]] = (
    StageDecl("rules", (InputDecl("events", (Event, PushedAlerts, RuleCommand)),), "alerts", (AlertChange,),
              rules_core, output_ttl=_history_ttl),
    StageDecl("router", (InputDecl("alerts", (AlertChange,)),), "groups", (GroupFlush,), router_core, kept=False),
    StageDecl("filter", (InputDecl("groups", (GroupFlush,)), InputDecl("alerts", (AlertChange,)),
                         InputDecl("commands", (SilenceCommand, AckCommand))), "sends", (SendRequest,), filter_core,
              in_chain=filter_in_chain),
)


def decl(name: str) -> StageDecl:
    for d in GRAPH:
        if d.name == name:
            return d
    raise KeyError(name)


def chains(graph: tuple[StageDecl, ...] = GRAPH) -> list[list[StageDecl]]:
    """Runs of consecutive stages where each consumes the one before it, with the same partitioning."""
    runs: list[list[StageDecl]] = []
    for d in graph:
        prev = runs[-1][-1] if runs else None
        if prev is not None and prev.partitioned_by == d.partitioned_by and any(
                i.stream == prev.output for i in d.inputs):
            runs[-1].append(d)
        else:
            runs.append([d])
    return [r for r in runs if len(r) > 1]


def _chain_of(name: str) -> list[StageDecl] | None:
    return next((c for c in chains() if any(d.name == name for d in c)), None)


def stream_names(deployment: str) -> dict[str, StreamNames]:
    """The names of every stage's output stream (by output name) in ``deployment``: where its
    state, progress and outputs are read."""
    check_deployment(deployment)
    names = {d.output: StreamNames(d.output) for d in GRAPH}
    if deployment == CHAINED:
        for run in chains():
            tail = StreamNames(run[-1].output)
            for d in run:
                names[d.output] = StreamNames(d.output, stream=tail.stream, progress_prefix=tail.prefix)
    return names


def separate_streams() -> list[str]:
    """Streams that exist only in the ``separate`` deployment (chained stages' own streams)."""
    return [StreamNames(d.output).stream for run in chains() for d in run[:-1]]


def check_deployment(deployment: str) -> None:
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"unknown deployment {deployment!r}; use one of {', '.join(DEPLOYMENTS)}")


def process_stages(deployment: str, stages: list[str]) -> list[str]:
    """The stages a process runs for the requested ``stages``: in the chained deployment a
    chain's members are its chain (once, where its first member was asked for)."""
    check_deployment(deployment)
    if deployment == SEPARATE:
        return [s for s in stages if s != CHAIN] + ([] if CHAIN not in stages else [n.name for n in chains()[0]])
    out: list[str] = []
    for s in stages:
        run = _chain_of(s)
        s = CHAIN if run is not None else s
        if s not in out:
            out.append(s)
    return out


def topology_stages(deployment: str) -> list[str]:
    """The stateful and stateless stages of ``tocsin up --topology processes`` (each a process)."""
    return process_stages(deployment, [*(d.name for d in GRAPH), "notifier"])


def chain_core(settings: Settings, run: list[StageDecl] | None = None) -> ChainCore:
    run = run or chains()[0]
    names = stream_names(CHAINED)
    inside = {d.output: i for i, d in enumerate(run)}
    members = []
    for d in run:
        takes = tuple(t for i in d.inputs if i.stream not in inside for t in i.types)
        feeds = tuple((inside[i.stream], i.types) for i in d.inputs if i.stream in inside)
        core = d.core(settings)
        members.append(ChainMember(d.name, d.in_chain(core) if d.in_chain else core, names[d.output], takes, feeds,
                                   keep=d.kept))
    return ChainCore(members, CHAIN)


def stage_specs(settings: Settings, name: str) -> StageSpec:
    """The runtime's spec of stage ``name`` (a stage of the graph, or ``chain``)."""
    deployment = getattr(settings, "deployment", DEFAULT_DEPLOYMENT)
    if name == CHAIN:
        run = chains()[0]
        core = chain_core(settings, run)
        inside = {d.output for d in run}
        inputs: list[Input] = []
        for d in run:
            inputs += [Input(i.stream, StreamNames(i.stream)) for i in d.inputs
                       if i.stream not in inside and all(x.name != i.stream for x in inputs)]
        ttls = [d.output_ttl(settings) if d.output_ttl else StageSpec.output_ttl for d in run if d.kept]
        return StageSpec(name=CHAIN, core=core, inputs=inputs, output=stream_names(CHAINED)[run[-1].output],
                         partitions=settings.partitions, state_layout=ChainLayout(core), fetch_batch=CHAIN_FETCH_BATCH,
                         output_subjects=tuple(StreamNames(d.output).all for d in run),
                         output_ttl=None if None in ttls else max(t for t in ttls if t is not None))
    d = decl(name)
    names = stream_names(deployment)
    spec = StageSpec(name=d.name, core=d.core(settings), inputs=[Input(i.stream, StreamNames(i.stream))
                                                                   for i in d.inputs],
                     output=names[d.output], partitions=settings.partitions)
    if d.output_ttl:
        spec.output_ttl = d.output_ttl(settings)
    return spec
