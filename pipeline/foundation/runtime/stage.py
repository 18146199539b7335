"""Runs one stateful stage in this process: membership, partition workers, readiness, drain."""

from __future__ import annotations

import functools
import logging
import uuid

import anyio
from anyio.abc import TaskGroup, TaskStatus
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from pipeline.foundation.runtime.commit import GroupCommitter
from pipeline.foundation.runtime.jetstream import ensure_stream, retry_transient
from pipeline.foundation.runtime.membership import Membership, assign
from pipeline.foundation.runtime.metrics import stage_metrics
from pipeline.foundation.runtime.partition import PartitionWorker, StageSpec

__all__ = ["StageRunner"]

log = logging.getLogger("tocsin.stage")


class StageRunner:
    """Owns this replica's share of a stage's partitions and keeps it up to date."""

    def __init__(self, nc: NATS, js: JetStreamContext, spec: StageSpec, *, replica: str | None = None,
                 member_ttl: float = 5.0, heartbeat: float = 1.0, stream_replicas: int = 1) -> None:
        self.nc, self.js, self.spec = nc, js, spec
        self.replica = replica or uuid.uuid4().hex[:12]
        self.metrics = stage_metrics()
        self.membership = Membership(nc, js, spec.name, self.replica, ttl=member_ttl, beat=heartbeat,
                                     replicas=stream_replicas)
        self.stream_replicas = stream_replicas
        self.workers: dict[int, PartitionWorker] = {}
        # the partitions' commits share atomic batches
        self.committer = GroupCommitter(nc, self.metrics.batches.labels(spec.name).inc)
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._draining = False

    @property
    def ready(self) -> bool:
        """Every assigned partition is acquired (state rebuilt, consumers bound)."""
        wanted = self.assigned()
        return (bool(wanted) and all(p in self.workers and self.workers[p].ready for p in wanted)) or (
            not wanted and not self._draining)

    def _owns(self, p: int) -> bool:
        return p in self.assigned()

    def assigned(self) -> set[int]:
        return assign(self.spec.partitions, self.membership.members, self.replica)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await retry_transient(f"stream {self.spec.output.stream}", functools.partial(
            ensure_stream, self.js, self.spec.output, replicas=self.stream_replicas,
            subjects=self.spec.output_subjects))
        for names in (i.names for i in self.spec.inputs):
            await retry_transient(f"stream {names.stream}", functools.partial(
                ensure_stream, self.js, names, replicas=self.stream_replicas))
        async with anyio.create_task_group() as tg:
            await tg.start(self.membership.run)
            await self._rebalance(tg, initial=True)
            task_status.started()
            while not self._draining:
                with anyio.move_on_after(1.0):
                    await self.membership.changed.wait()
                if not self._draining:
                    await self._rebalance(tg)
            tg.cancel_scope.cancel()

    async def _rebalance(self, tg: TaskGroup, initial: bool = False) -> None:
        wanted = self.assigned()
        for p in sorted(set(self.workers) - wanted):
            self.workers.pop(p).stop()
        new = []
        for p in sorted(wanted - set(self.workers)):
            worker = PartitionWorker(self.nc, self.js, self.spec, p, self.replica, self.metrics,
                                     should_own=functools.partial(self._owns, p), committer=self.committer)
            self.workers[p] = worker
            new.append(worker)
        if initial:  # acquire concurrently; readiness once every partition is rebuilt
            async with anyio.create_task_group() as starting:
                for worker in new:
                    starting.start_soon(functools.partial(tg.start, self._run_worker, worker))
        else:
            for worker in new:
                tg.start_soon(self._run_worker, worker)
        self.metrics.owned.labels(self.spec.name).set(len(self.workers))

    async def _run_worker(self, worker: PartitionWorker, *,
                          task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await worker.run(task_status=task_status)
        finally:
            if self.workers.get(worker.p) is worker:
                del self.workers[worker.p]

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop fetching, let every partition commit its step in flight, then leave."""
        self._draining = True
        for w in self.workers.values():
            w.stop()
        with anyio.move_on_after(timeout):
            while self.workers:
                await anyio.sleep(0.05)
        await self.membership.leave()
