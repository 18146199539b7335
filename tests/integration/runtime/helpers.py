"""Helpers for runtime tests: publish events, run worker processes, read a stream back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import Event, encode
from contracts.partition import partition_of
from pipeline.foundation.runtime.partition import ack_metadata
from pipeline.foundation.runtime.subjects import EVENTS, StreamNames

COUNTS = StreamNames("counts")


def event(i: int, org: str, resource: str, reason: str = "Tick", at: float | None = None) -> Event:
    return Event(id=str(i), org=org, reason=reason, resource_kind="device", resource_name=resource,
                 occurred_at=time.time() if at is None else at)


async def publish_events(nc: NATS, events: list[Event], partitions: int) -> None:
    js = nc.jetstream()
    for i in range(0, len(events), 500):
        await asyncio.gather(*(js.publish(EVENTS.out(partition_of(ev.org, partitions), "event"), encode(ev))
                               for ev in events[i:i + 500]))


async def read_all(nc: NATS, names: StreamNames, subject: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every message on ``subject`` of the stream, in order."""
    js = nc.jetstream()
    psub = await js.pull_subscribe(subject, durable=None, stream=names.stream,
                                   config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                         ack_policy=AckPolicy.NONE, inactive_threshold=10.0))
    info = await psub.consumer_info()
    out: list[tuple[str, bytes, dict[str, str]]] = []
    pending = info.num_pending
    while len(out) < pending:
        for m in await psub.fetch(min(5000, pending - len(out)), timeout=10):
            headers = dict(m.headers or {})
            headers["stored_at"] = str(ack_metadata(m)[3] / 1e9)  # the stream's timestamp, for timing checks
            out.append((m.subject, m.data, headers))
    await psub.unsubscribe()
    return out


def decode_json(data: bytes) -> dict:
    return msgspec.json.decode(data)


LIVE: list[Worker] = []


class Worker:
    """A `tocsin run counter` process against an external NATS (killed at test teardown)."""

    def __init__(self, nats_url: str, tmp: Path, replica: str, *, partitions: int = 16, delay: float = 0.3,
                 member_ttl: float | None = None, stream_replicas: int = 1) -> None:
        self.args = [sys.executable, "-m", "pipeline.application.cli", "run", "counter", "--nats-url", nats_url,
                     "--partitions", str(partitions), "--replica", replica, "--counter-delay", str(delay),
                     "--storage.path", str(tmp / f"w-{replica}"), "--log-level", "info",
                     "--stream-replicas", str(stream_replicas)]
        self.log = tmp / f"worker-{replica}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = open(self.log, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        self.starts += 1
        LIVE.append(self)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def wait_ready(storage: Path, timeout: float = 30) -> None:
    """Until the worker wrote endpoints.json and answers /-/ready."""
    import json

    import anyio
    import httpx

    with anyio.fail_after(timeout):
        while not (storage / "endpoints.json").exists():
            await anyio.sleep(0.05)
        url = json.loads((storage / "endpoints.json").read_text())["api_url"]
        async with httpx.AsyncClient() as http:
            while (await http.get(f"{url}/-/ready")).status_code != 200:
                await anyio.sleep(0.05)
