"""A `tocsin` process: embedded servers, endpoints.json, health/ready/metrics, drain, no orphans,
Alertmanager flags, partition-count guard, trace context passing through a stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from contracts import encode
from contracts.partition import partition_of
from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream

from .helpers import COUNTS, EVENTS, Worker, event, read_all

pytestmark = pytest.mark.integration


def _children_of(storage: Path) -> list[int]:
    """PIDs of processes whose command line mentions ``storage`` (the embedded servers)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(storage) in cmd and "pipeline.application.cli" not in cmd:
                pids.append(int(d.name))
    return pids


async def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], dict, Path]:
    storage = tmp_path / "data"
    log = tmp_path / "tocsin.log"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.application.cli",
                             "run", "counter", "--storage.path", str(storage),
                             *extra], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    with anyio.fail_after(30):
        while not (storage / "endpoints.json").exists():
            assert proc.poll() is None, log.read_text()
            await anyio.sleep(0.1)
    return proc, json.loads((storage / "endpoints.json").read_text()), log


async def test_embedded_process_serves_health_and_drains_on_sigterm(tmp_path: Path) -> None:
    proc, ep, log = await _start(tmp_path, "--cluster.listen-address=:9094", "--log.format=json")
    try:
        async with httpx.AsyncClient(base_url=ep["api_url"]) as http:
            assert (await http.get("/-/healthy")).status_code == 200
            with anyio.fail_after(15):
                while (await http.get("/-/ready")).status_code != 200:
                    await anyio.sleep(0.1)
            metrics = (await http.get("/metrics")).text
        assert 'tocsin_stage_partitions_owned{stage="counter"} 16.0' in metrics
        assert ep["nats_url"].startswith("nats://tocsin:") and ep["metrics_url"].endswith("/metrics")  # credentials
        servers = _children_of(tmp_path / "data")
        assert servers, "the embedded nats-server should be running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        await anyio.sleep(0.5)
        assert _children_of(tmp_path / "data") == []
        out = log.read_text()
        assert "Alertmanager flag --cluster.listen-address is accepted and has no effect" in out
        logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert logged and all({"ts", "level", "caller", "msg"} <= set(r) for r in logged)  # --log.format=json
    finally:
        proc.kill()


def test_an_unknown_flag_stops_the_start(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pipeline.application.cli", "run", "counter", "--storage.path",
                          str(tmp_path / "data"), "--bogus-flag"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "tocsin: error: unknown flag --bogus-flag" in res.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


async def test_no_orphan_survives_a_sigkilled_parent(tmp_path: Path) -> None:
    proc, _, _ = await _start(tmp_path)
    servers = _children_of(tmp_path / "data")
    assert servers
    proc.kill()
    proc.wait()
    with anyio.fail_after(10):
        while _children_of(tmp_path / "data"):
            await anyio.sleep(0.1)


async def test_another_partition_count_is_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, 16)
    await nc.close()
    res = subprocess.run([sys.executable, "-m", "pipeline.application.cli",
                          "run", "counter", "--nats-url", nats_server.url,
                          "--partitions", "8", "--storage.path", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "created with 16 partitions but this process was started with 8" in res.stderr + res.stdout


async def test_trace_context_travels_through_a_stage(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await connect(nats_server.url)
    await ensure_partitions(nc.jetstream(), nc, 16)
    await ensure_stream(nc.jetstream(), EVENTS)
    w = Worker(nats_server.url, tmp_path, "w1", delay=600)
    w.start()
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ev = event(1, "acme", "r1", at=time.time())
    await nc.jetstream().publish(EVENTS.out(partition_of("acme", 16), "event"), encode(ev),
                                 headers={"traceparent": tp})
    with anyio.fail_after(30):
        while True:
            try:
                msgs = await read_all(nc, COUNTS, f"{COUNTS.prefix}.out.>")
            except Exception:
                msgs = []
            if msgs:
                break
            await anyio.sleep(0.2)
    w.stop()
    _, data, headers = msgs[0]
    assert msgspec.json.decode(data)["count"] == 1
    # With tracing off in the worker, the trace id still reaches the output unchanged.
    assert headers.get("traceparent", "").split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    await nc.close()
    assert os.environ.get("OTEL_TRACES_EXPORTER", "none") in ("none", "")
