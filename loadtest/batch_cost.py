"""What one atomic batch costs nats-server, by where the stream's store lives.

nats-server stages every atomic batch of an R1 file stream in a new on-disk store and
deletes it after the commit; a memory stream (or an R3 stream) stages in memory, and so does
Tocsin's embedded server for R1 file streams (``pipeline.foundation.embedded.stage_batches_in_memory``).
This commits ``--batches`` batches of ``--size`` messages, ``--streams`` streams at a time,
to a file stream under each ``--dirs`` directory (staged there, and staged in memory), and to
a memory stream, and reports the server's CPU time per batch (from ``/proc``) and
batches/s, all in one run so the figures read as ratios.
Run: ``.venv/bin/python -m loadtest.batch_cost --dirs /tmp,/dev/shm``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import anyio
from nats.js.api import StorageType, StreamConfig

from pipeline.foundation.embedded import memory_dir, stage_batches_in_memory, start_nats
from pipeline.foundation.runtime.jetstream import connect, publish_atomic
from pipeline.foundation.runtime.wire import BatchMsg

__all__ = ["main"]


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def measure(base: str, storage: StorageType, size: int, batches: int, streams: int,
                  staging: Path | None = None) -> dict[str, float]:
    store = Path(tempfile.mkdtemp(dir=base, prefix="batch-cost-"))
    async with start_nats(store, batches_in_memory=False) as server:
        nc = await connect(server.url)
        js = nc.jetstream()
        for s in range(streams):
            await js.add_stream(StreamConfig(name=f"B{s}", subjects=[f"b{s}.>"], storage=storage,
                                             allow_atomic=True, allow_rollup_hdrs=True))
        if staging is not None:
            stage_batches_in_memory(store, staging)
        payload = b"x" * 300

        async def commit_all(s: int) -> None:
            for r in range(batches):
                await publish_atomic(nc, [BatchMsg(f"b{s}.out.{i}", payload, {"Nats-Msg-Id": f"{r}:{i}"})
                                          for i in range(size)])

        user0, sys0 = _cpu_seconds(server.proc.pid)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for s in range(streams):
                tg.start_soon(commit_all, s)
        elapsed = time.perf_counter() - t0
        user1, sys1 = _cpu_seconds(server.proc.pid)
        await nc.close()
    n = batches * streams
    return {"batches_per_s": n / elapsed, "cpu_ms": (user1 - user0 + sys1 - sys0) / n * 1e3,
            "user_ms": (user1 - user0) / n * 1e3, "sys_ms": (sys1 - sys0) / n * 1e3}


async def run(args: argparse.Namespace) -> None:
    memory = memory_dir()
    cases: list[tuple[str, StorageType, Path | None]] = []
    for d in (d for d in args.dirs.split(",") if d):
        cases.append((d, StorageType.FILE, None))
        if memory is not None:
            cases.append((d, StorageType.FILE, Path(tempfile.mkdtemp(dir=memory, prefix="batch-cost-"))))
    cases.append((args.dirs.split(",")[0], StorageType.MEMORY, None))
    print(f"{args.streams} streams x {args.batches} atomic batches of {args.size} messages (300 bytes)")
    print("| store | batches/s | server CPU per batch | user | system |")
    print("|---|---|---|---|---|")
    for base, storage, staging in cases:
        try:
            r = await measure(base, storage, args.size, args.batches, args.streams, staging)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        where = "memory stream" if storage is StorageType.MEMORY else f"file stream under {base}" + (
            ", batches staged in memory" if staging else "")
        print(f"| {where} | {r['batches_per_s']:,.0f} | {r['cpu_ms']:.2f} ms | {r['user_ms']:.2f} ms "
              f"| {r['sys_ms']:.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirs", default=tempfile.gettempdir(),
                        help="comma-separated directories for the file stream's store (e.g. /tmp,/dev/shm)")
    parser.add_argument("--size", type=int, default=40, help="messages per batch")
    parser.add_argument("--batches", type=int, default=1000, help="batches per stream")
    parser.add_argument("--streams", type=int, default=4, help="streams committed to at once")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
