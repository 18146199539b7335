"""Helpers for notifier integration tests: configs, send requests, a running notifier, reads back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.messages import Alert, DeadLetter, Integration, SendRequest, decode_as, encode
from pipeline.foundation.amconfig import Config, load_config_text
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from stages.notifier.ledger import Ledger
from stages.notifier.records import LedgerRecord
from stages.notifier.service import NotifierOptions, NotifierService, build_notifier
from stages.notifier.worker import CONSUMER, DLQ_FILTER, SENDS

__all__ = [
    "T0",
    "Running",
    "alert",
    "am_config",
    "dead_letters",
    "publish",
    "running_notifier",
    "send_request",
    "wait_consumer_idle",
    "wait_ledger",
]

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def am_config(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "test.yml")


def alert(name: str, *, instance: str = "a", org: str = "acme", starts_at: float = T0 - 60,
          ends_at: float | None = None, fingerprint: str = "") -> Alert:
    return Alert(fingerprint=fingerprint or f"fp-{name}-{instance}", org=org,
                 labels={"alertname": name, "instance": instance},
                 annotations={"summary": f"{name} on {instance}"}, starts_at=starts_at, ends_at=ends_at,
                 generator_url="http://prom/graph")


def send_request(send_id: str, receiver: str, kind: str = "webhook", index: int = 0, *,
                 alerts: list[Alert] | None = None, org: str = "acme", acknowledged: bool = False,
                 status: str = "firing", created_at: float = T0, flush_seq: int = 1) -> SendRequest:
    alerts = alerts if alerts is not None else [alert("Down")]
    return SendRequest(id=send_id, org=org, group_key='{}:{alertname="Down"}', group_id="g1", receiver=receiver,
                       integration=Integration(kind=kind, index=index), flush_seq=flush_seq,
                       status=status,  # type: ignore[arg-type]
                       group_labels={"alertname": "Down"}, alerts=alerts, created_at=created_at,
                       acknowledged=acknowledged)


async def publish(js: JetStreamContext, req: SendRequest, *, partition: int = 0, msg_id: str | None = None) -> None:
    msg_id = msg_id or req.id
    await js.publish(SENDS.out(partition, "send", msg_id), encode(req), headers={"Nats-Msg-Id": msg_id})


@dataclass
class Running:
    service: NotifierService
    nc: NATS
    js: JetStreamContext
    ledger: Ledger


@contextlib.asynccontextmanager
async def running_notifier(nats_url: str, config: Config, *, external_url: str = "http://tocsin.test:9093",
                           start: bool = True) -> AsyncIterator[Running]:
    nc = await connect(nats_url, name="notifier-test")
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    service = build_notifier(nc, js, config, NotifierOptions(external_url=external_url))
    try:
        async with anyio.create_task_group() as tg:
            if start:
                await tg.start(service.run)
            yield Running(service, nc, js, service.worker.ledger)
            with anyio.CancelScope(shield=True):
                await service.drain(2.0)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()


async def wait_ledger(ledger: Ledger, send_id: str, states: set[str], timeout: float = 20.0) -> LedgerRecord:
    deadline = time.monotonic() + timeout
    last: LedgerRecord | None = None
    while time.monotonic() < deadline:
        got = await ledger.read(send_id)
        if got is not None:
            last = got[1]
            if last.state in states:
                return last
        await asyncio.sleep(0.05)
    raise TimeoutError(f"ledger of {send_id} is {last}, expected one of {states}")


async def dead_letters(js: JetStreamContext, *, wait_for: int = 0, timeout: float = 20.0) -> list[DeadLetter]:
    """The dead letters of the notifier (waiting until at least ``wait_for`` are there)."""
    deadline = time.monotonic() + timeout
    while True:
        psub = await js.pull_subscribe(DLQ_FILTER, durable=None, stream=SENDS.stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=10.0))
        info = await psub.consumer_info()
        out: list[DeadLetter] = []
        while len(out) < int(info.num_pending or 0):
            out += [decode_as(m.data, DeadLetter) for m in await psub.fetch(100, timeout=5)]
        await psub.unsubscribe()
        if len(out) >= wait_for or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.1)


def jsonable(obj: object) -> object:
    return msgspec.to_builtins(obj)


async def wait_consumer_idle(js: JetStreamContext, timeout: float = 20.0) -> None:
    """Wait until the notifier consumer has delivered and seen acknowledged every request."""
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(SENDS.stream, CONSUMER)
        if not info.num_pending and not info.num_ack_pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumer still has {info.num_pending} pending, {info.num_ack_pending} unacked")
        await asyncio.sleep(0.05)


LIVE_WORKERS: list[WorkerProcess] = []


class WorkerProcess:
    """``tocsin run notifier`` as a child process (killed at test teardown).

    Its storage path (``endpoints.json``) is a directory next to ``log``."""

    def __init__(self, nats_url: str, config_file: str, log: str) -> None:
        storage = f"{log}.data"
        self.args = [sys.executable, "-m", "pipeline.application.cli", "run", "notifier", "--nats-url", nats_url,
                     "--config.file", config_file, "--web.external-url", "http://tocsin.test:9093",
                     "--log.level", "info", "--storage.path", storage]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        LIVE_WORKERS.append(self)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no drain, no nak, nothing recorded after this instant
        self.proc.wait()
