"""Prometheus metrics of the stage runtime (one set per process, labelled by stage)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["REGISTRY", "LATENCY_BUCKETS", "StageMetrics", "metric_set", "stage_metrics"]

T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = _LAT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class StageMetrics:
    inputs: Counter
    outputs: Counter
    skipped: Counter
    dead_letters: Counter
    commits: Counter
    batches: Counter
    resets: Counter
    stale_reads: Counter
    step_seconds: Histogram
    commit_seconds: Histogram
    rebuild_seconds: Histogram
    lag: Gauge
    owned: Gauge


def metric_set(build: Callable[[CollectorRegistry], T]) -> Callable[[], T]:
    """The process's one set of metrics ``build`` makes in :data:`REGISTRY`: made at the first
    call, the same object after (prometheus_client refuses a name registered twice)."""
    @functools.cache
    def get() -> T:
        return build(REGISTRY)
    get.__doc__ = build.__doc__
    return get


def _stage_metrics(r: CollectorRegistry) -> StageMetrics:
    """The process's stage metrics (created once, shared by every stage in the process)."""
    return StageMetrics(
        inputs=Counter("tocsin_stage_inputs", "Inputs stepped", ["stage"], registry=r),
        outputs=Counter("tocsin_stage_outputs", "Outputs committed", ["stage"], registry=r),
        skipped=Counter("tocsin_stage_inputs_skipped", "Redelivered inputs skipped by progress",
                        ["stage"], registry=r),
        dead_letters=Counter("tocsin_stage_dead_letters", "Inputs or timers dead-lettered, by kind (input, "
                             "timer) and cause (undecodable, rejected, step_failed, too_large, refused)",
                             ["stage", "kind", "cause"], registry=r),
        commits=Counter("tocsin_stage_commits", "Partition commits (each atomic, fenced)", ["stage"], registry=r),
        batches=Counter("tocsin_stage_commit_batches", "Atomic batches sent; a batch carries the commits of "
                        "several partitions when they wait together (group commit)", ["stage"], registry=r),
        resets=Counter("tocsin_stage_partition_resets", "Partitions re-acquired after a fence or gap",
                       ["stage"], registry=r),
        stale_reads=Counter("tocsin_stage_stale_reads", "State reads served by a replica behind the "
                            "partition's claim, read again", ["stage"], registry=r),
        step_seconds=Histogram("tocsin_stage_step_seconds", "Time to step and commit one fetched batch",
                               ["stage"], buckets=_LAT, registry=r),
        commit_seconds=Histogram("tocsin_stage_commit_seconds", "Atomic batch commit latency",
                                 ["stage"], buckets=_LAT, registry=r),
        rebuild_seconds=Histogram("tocsin_stage_rebuild_seconds", "Partition acquire + state rebuild time",
                                  ["stage"], buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30), registry=r),
        lag=Gauge("tocsin_stage_consumer_lag", "Input messages not yet delivered, per partition",
                  ["stage", "input", "partition"], registry=r),
        owned=Gauge("tocsin_stage_partitions_owned", "Partitions this process owns", ["stage"], registry=r),
    )


stage_metrics = metric_set(_stage_metrics)
