"""Replicas of a stage find each other and split its partitions.

Each replica heartbeats a subject ``tocsin.members.<stage>.<replica>`` in a stream whose
messages expire after ``ttl``: the live members are the subjects that exist. Partitions are
assigned by rendezvous hashing over the live members, so a join or a death moves only the
partitions it must. Assignment is advisory: safety comes from the progress fence (a new
owner's claim makes a stale owner's next commit fail), liveness from the heartbeats.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import anyio
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from pipeline.foundation.runtime.jetstream import retry_transient

__all__ = ["MEMBERS_STREAM", "Membership", "assign"]

log = logging.getLogger("tocsin.membership")
MEMBERS_STREAM = "TOCSIN_MEMBERS"


def _score(member: str, p: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{member}/{p}".encode(), digest_size=8).digest(), "big")


def assign(partitions: int, members: Iterable[str], me: str) -> set[int]:
    """The partitions ``me`` owns among ``members`` (rendezvous hashing)."""
    live = sorted(set(members) | {me})
    return {p for p in range(partitions) if max(live, key=lambda m: _score(m, p)) == me}


class Membership:
    """Heartbeat this replica and keep the set of live replicas of one stage."""

    def __init__(self, nc: NATS, js: JetStreamContext, stage: str, replica: str, *, ttl: float = 5.0,
                 beat: float = 1.0, replicas: int = 1) -> None:
        self.nc, self.js, self.stage, self.replica = nc, js, stage, replica
        self.ttl, self.beat, self.replicas = ttl, beat, replicas
        self.members: set[str] = {replica}
        self.changed = anyio.Event()
        self._subject = f"tocsin.members.{stage}.{replica}"

    async def _ensure_stream(self) -> None:
        cfg = StreamConfig(name=MEMBERS_STREAM, subjects=["tocsin.members.>"], storage=StorageType.MEMORY,
                           max_msgs_per_subject=1, max_age=self.ttl, num_replicas=self.replicas)
        try:
            await self.js.stream_info(MEMBERS_STREAM)
        except NotFoundError:
            try:
                await self.js.add_stream(cfg)
            except Exception:  # another replica created it first
                await self.js.stream_info(MEMBERS_STREAM)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await retry_transient("members stream", self._ensure_stream)
        await retry_transient("first heartbeat", self._tick)
        task_status.started()
        while True:
            await anyio.sleep(self.beat)
            try:
                await self._tick()
            except Exception as exc:  # NATS restarting: keep the last view, try again
                log.warning("membership of %s: %r", self.stage, exc)

    async def _tick(self) -> None:
        await self.js.publish(self._subject, b"")
        info = await self.js.stream_info(MEMBERS_STREAM, subjects_filter=f"tocsin.members.{self.stage}.*")
        members = {s.rsplit(".", 1)[1] for s in (info.state.subjects or {})} | {self.replica}
        if members != self.members:
            log.info("%s members: %s", self.stage, sorted(members))
            self.members = members
            self.changed.set()
            self.changed = anyio.Event()

    async def leave(self) -> None:
        """Remove this replica at once, so the others take its partitions without waiting for the TTL."""
        try:
            await self.js.purge_stream(MEMBERS_STREAM, subject=self._subject)
        except Exception as exc:
            log.warning("leaving %s: %r", self.stage, exc)
