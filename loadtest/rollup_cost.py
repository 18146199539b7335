"""What a stage's commits cost nats-server as its stream grows, by how state replaces itself.

A stage commits atomic batches of a progress record, changed state keys (one subject per
key: last value wins) and outputs. This commits such batches back to back to one file stream
and reports the server's CPU time per batch (from ``/proc``) as the stream grows, in three
layouts, in one run so the figures read as ratios:

- ``limit``: the pipeline's layout (``pipeline.foundation.runtime.subjects``): the stream keeps one
  message per subject, every output has a subject of its own;
- ``rollup``: the older layout: state written with ``Nats-Rollup: sub``, outputs sharing a
  subject per partition. A rollup removes the key's previous value; the file store finds it
  by scanning from the subject's first block, which it updates lazily, loading the subject
  state of blocks that had it expire (two minutes without use), so a rollup costs more as
  the stream grows;
- ``plain``: the same messages, nothing removed (a reference, not a layout).

It also reports nats-server's resident memory: the ``limit`` layout gives every output a
subject of its own, which the server indexes.

Run: ``.venv/bin/python -m loadtest.rollup_cost`` (about 7 minutes).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import anyio
import psutil
from nats.js.api import StorageType, StreamConfig

from pipeline.foundation.embedded import start_nats
from pipeline.foundation.runtime.jetstream import connect, publish_atomic
from pipeline.foundation.runtime.wire import BatchMsg

__all__ = ["main"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


MODES = ("limit", "rollup", "plain")


async def measure(args: argparse.Namespace, mode: str) -> list[tuple[int, float, float]]:
    """(messages in the stream, server CPU ms per batch, server memory MiB) after every
    ``args.every`` batches."""
    store = Path(tempfile.mkdtemp(dir=args.dir, prefix="rollup-cost-"))
    rows: list[tuple[int, float, float]] = []
    try:
        async with start_nats(store) as server:
            nc = await connect(server.url)
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="S", subjects=["s.>"], storage=StorageType.FILE,
                                             allow_atomic=True, allow_rollup_hdrs=True, allow_msg_ttl=True,
                                             max_msgs_per_subject=1 if mode == "limit" else -1))
            rnd = random.Random(1)
            payload = b"x" * args.payload
            state_headers = {"Nats-Rollup": "sub"} if mode == "rollup" else {}
            progress_headers = {} if mode == "limit" else {"Nats-Rollup": "sub"}
            out = 0
            cpu0 = _cpu_seconds(server.proc.pid)
            for b in range(1, args.batches + 1):
                p = b % 16
                msgs = [BatchMsg(f"s.progress.{p}", b"{}", progress_headers)]
                msgs += [BatchMsg(f"s.state.{p}.k{k}", payload, state_headers)
                         for k in rnd.sample(range(args.keys), args.state)]
                for _ in range(args.outputs):
                    subject = f"s.out.{p}.{out}" if mode == "limit" else f"s.out.{p}"
                    msgs.append(BatchMsg(subject, payload, {"Nats-Msg-Id": f"o{out}", "Nats-TTL": "604800"}))
                    out += 1
                await publish_atomic(nc, msgs)
                if b % args.every == 0:
                    cpu1 = _cpu_seconds(server.proc.pid)
                    info = await js.stream_info("S")
                    rss = psutil.Process(server.proc.pid).memory_info().rss / 2**20
                    rows.append((info.state.messages, (cpu1 - cpu0) / args.every * 1e3, rss))
                    print(f"  {mode:6} batch {b:,}: {rows[-1][0]:,} messages, "
                          f"{rows[-1][1]:.1f} ms per batch, {rss:,.0f} MiB", flush=True)
                    cpu0 = cpu1
            await nc.close()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return rows


async def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    limit, rolled, plain = [await measure(args, mode) for mode in MODES]
    print(f"\n{args.batches:,} atomic batches of 1 progress record, {args.state} state keys (of {args.keys:,}) "
          f"and {args.outputs} outputs ({args.payload} bytes each), back to back, "
          f"{time.perf_counter() - started:.0f} s in all")
    print("| batches | messages kept | server CPU per batch: limit (the pipeline's) | rollup (older) | plain "
          "| rollup / limit | server memory: limit | rollup |")
    print("|---|---|---|---|---|---|---|---|")
    for i, ((kept, lm, lmem), (_, r, rmem), (_, p, _)) in enumerate(zip(limit, rolled, plain, strict=True), 1):
        print(f"| {i * args.every:,} | {kept:,} | {lm:.1f} ms | {r:.1f} ms | {p:.1f} ms | {r / lm:.2f}x "
              f"| {lmem:,.0f} MiB | {rmem:,.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5000)
    parser.add_argument("--every", type=int, default=1000, help="report after this many batches")
    parser.add_argument("--keys", type=int, default=400_000, help="state keys, each batch changes a random sample")
    parser.add_argument("--state", type=int, default=500, help="state keys changed per batch")
    parser.add_argument("--outputs", type=int, default=499, help="outputs per batch")
    parser.add_argument("--payload", type=int, default=300, help="bytes per message")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the stream's store lives")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
