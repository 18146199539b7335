"""Notifier throughput: webhook notifications/s and emails/s of ONE worker process.

    .venv/bin/python -m loadtest.notifier_bench [--webhooks 20000] [--emails 2000] [--alerts 3]
        [--concurrency 64] [--log-level info] [--fast-time-format] [--profile FILE]

Starts an embedded nats-server, a local receiver (a minimal HTTP/1.1 server in its own
process that answers 200 and counts) and an aiosmtpd server (in its own process), publishes
the send requests first, then starts one worker process (``tocsin run notifier``)
and times the receivers from the first delivery to the last. Every send goes the full path:
fetch, ledger ``sending``, payload, HTTP/SMTP, ledger ``sent``, ack; the ledger's writes
are counted (its stream's last sequence) and printed per notification.

Besides notifications per second of wall time it prints notifications per CPU-second of the
worker process: on a shared machine that is the figure to compare, and what one worker on
a core of its own reaches. A second line gives the cores each process used during the run
(worker, nats-server, receiver, this driver) and how busy the whole machine was, to tell
which one limits and whether something else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

from nats.js.errors import NotFoundError

from contracts.messages import Alert, Integration, SendRequest, encode
from pipeline.foundation.embedded import free_port, start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_stream
from pipeline.foundation.runtime.subjects import StreamNames

__all__ = ["fast_time_format", "main"]

SENDS = StreamNames("sends")

_HTTP_RECEIVER = r'''
import asyncio, sys
count = 0
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.buf = b""
    def data_received(self, d):
        global count
        self.buf += d
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].lower(); n = 0
            j = head.find(b"content-length:")
            if j >= 0:
                n = int(head[j + 15:].split(b"\r\n", 1)[0])
            if len(self.buf) < i + 4 + n:
                return
            path = head.split(b" ", 2)[1]
            self.buf = self.buf[i + 4 + n:]
            if path == b"/count":
                body = str(count).encode()
            else:
                count += 1; body = b"ok"
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
'''

_SMTP_RECEIVER = r'''
import asyncio, sys, time
from aiosmtpd.controller import Controller
count = 0
class H:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        return "250 OK"
class Count(asyncio.Protocol):
    def connection_made(self, t):
        t.write(str(count).encode()); t.close()
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
async def main():
    server = await asyncio.get_running_loop().create_server(Count, "127.0.0.1", int(sys.argv[2]))
    await server.serve_forever()
asyncio.run(main())
'''


def _request(i: int, receiver: str, kind: str, alerts: int) -> SendRequest:
    now = time.time()
    return SendRequest(
        id=f"bench/{kind}/{i}", org=f"org{i % 50}", group_key=f'{{}}:{{alertname="A{i}"}}', group_id=f"g{i}",
        receiver=receiver, integration=Integration(kind=kind, index=0), flush_seq=1, status="firing",
        group_labels={"alertname": f"A{i}"},
        alerts=[Alert(fingerprint=f"{i:08x}{j:08x}", org=f"org{i % 50}",
                      labels={"alertname": f"A{i}", "instance": f"host-{j}", "severity": "critical"},
                      annotations={"summary": f"host-{j} is down"}, starts_at=now - 60) for j in range(alerts)],
        created_at=now)


async def _publish(url: str, reqs: list[SendRequest]) -> None:
    nc = await connect(url, name="bench-publisher")
    js = nc.jetstream()
    await ensure_stream(js, SENDS)
    for i in range(0, len(reqs), 1000):
        futs = [await js.publish_async(SENDS.out(j % 16, "send", r.id), encode(r), headers={"Nats-Msg-Id": r.id})
                for j, r in enumerate(reqs[i:i + 1000], i)]
        await asyncio.gather(*futs)
    await nc.close()


async def _count_http(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(n)
    writer.close()
    return int(body)


async def _count_smtp(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await reader.read()
    writer.close()
    return int(data or b"0")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over its cores (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


class _Span(NamedTuple):
    """What one run measured between the first delivery and the last."""

    seconds: float  # wall time from the first delivery to the last
    startup: float  # from the worker's start to the first delivery
    cpu: dict[str, float]  # CPU seconds of each process (worker, nats-server, receiver, driver)
    busy: float  # CPU seconds of the whole machine, all processes
    capacity: float  # CPU seconds the machine had (wall time x cores)


async def _measure(count, total: int, timeout: float, pids: dict[str, int]) -> _Span:
    """Poll the receiver's count; CPU of ``pids`` and of the machine between first and last delivery."""
    t_start = time.perf_counter()
    t_first = None
    cpu_first: dict[str, float] = {}
    machine_first = (0.0, 0.0)

    def cpu_now() -> dict[str, float]:
        return {name: _cpu_seconds(pid) for name, pid in pids.items()}

    while True:
        n = await count()
        now = time.perf_counter()
        if n > 0 and t_first is None:
            t_first = now
            cpu_first = cpu_now()
            machine_first = _machine_busy()
        if n >= total:
            first = t_first or now
            busy, capacity = _machine_busy()
            cpu = {k: v - cpu_first.get(k, 0.0) for k, v in cpu_now().items()}
            return _Span(now - first, first - t_start, cpu, busy - machine_first[0], capacity - machine_first[1])
        if now - t_start > timeout:
            raise TimeoutError(f"only {n} of {total} delivered in {timeout}s")
        await asyncio.sleep(0.02)


async def _ledger_writes(url: str) -> int:
    """Every write the ledger took so far (its last sequence: claims rolled up since count too)."""
    nc = await connect(url, name="bench-ledger")
    try:
        return int((await nc.jetstream().stream_info("TOCSIN_LEDGER")).state.last_seq)
    except NotFoundError:  # no worker has made it yet
        return 0
    finally:
        await nc.close()


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    try:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    finally:
        out.close()


def fast_time_format() -> None:
    """What-if experiment (``--fast-time-format``): format JSON times with strftime instead of
    the templates' general Go-layout formatter, to measure the worker without that cost."""
    from datetime import UTC

    from stages.notifier.templates import data, gotime

    general = gotime.go_format

    def go_format(dt, layout: str) -> str:  # type: ignore[no-untyped-def]
        if layout != gotime.RFC3339_NANO or dt.tzinfo is not UTC:
            return general(dt, layout)
        text = dt.strftime("%Y-%m-%dT%H:%M:%S")
        if dt.microsecond:
            text += f".{dt.microsecond:06d}".rstrip("0")
        return text + "Z"

    gotime.go_format = go_format
    data.go_format = go_format  # type: ignore[attr-defined]


def _worker_command(worker_args: list[str], *, fast_time: bool, profile: str) -> list[str]:
    """``tocsin run notifier`` with ``worker_args``, optionally patched or profiled."""
    args = ["run", "notifier", *worker_args]
    setup = "from loadtest.notifier_bench import fast_time_format; fast_time_format(); " if fast_time else ""
    if not (setup or profile):
        return [sys.executable, "-m", "pipeline.application.cli", *args]
    code = f"import sys; {setup}from pipeline.application.cli import main; "
    if profile:  # CPU time, written when the worker exits
        code += (f"import atexit, cProfile, time; p = cProfile.Profile(time.process_time); "
                 f"atexit.register(lambda: (p.disable(), p.dump_stats({profile!r}))); p.enable(); ")
    return [sys.executable, "-c", code + f"sys.exit(main({args!r}))"]


async def _run(kind: str, total: int, alerts: int, tmp: Path, nats_url: str, config: str, count,
               args: argparse.Namespace, pids: dict[str, int]) -> float:
    await _publish(nats_url, [_request(i, "bench", kind, alerts) for i in range(total)])
    cfg_file = tmp / f"{kind}.yml"
    cfg_file.write_text(config)
    worker_args = ["--nats-url", nats_url, "--config.file", str(cfg_file), "--log.level", args.log_level,
                   "--storage.path", str(tmp / f"worker-{kind}")]
    profile = f"{args.profile}.{kind}" if args.profile else ""
    writes = -await _ledger_writes(nats_url)
    worker = _spawn(_worker_command(worker_args, fast_time=args.fast_time_format, profile=profile),
                    tmp / f"worker-{kind}.log")
    try:
        span = await _measure(count, total, timeout=600,
                              pids={"worker": worker.pid, **pids, "driver": os.getpid()})
    finally:
        worker.terminate()
        worker.wait(10)
    writes += await _ledger_writes(nats_url)
    rate = total / span.seconds if span.seconds > 0 else float("inf")
    cpu = span.cpu["worker"]
    what_if = " [what-if: fast time format]" if args.fast_time_format else ""
    print(f"{kind}{what_if}: {total} notifications ({alerts} alerts each) in {span.seconds:.2f}s = {rate:,.0f}/s "
          f"wall; worker CPU {cpu:.2f}s = {total / cpu:,.0f} per CPU-second "
          f"(one worker process, concurrency {args.concurrency}, log level {args.log_level}; "
          f"start to first delivery {span.startup:.2f}s)")
    print(f"  ledger writes (TOCSIN_LEDGER's sequence): {writes}, {writes / total:.2f} per notification")
    if span.seconds > 0:
        shares = ", ".join(f"{name} {sec / span.seconds:.2f}" for name, sec in span.cpu.items())
        print(f"  cores used during the run: {shares}; whole machine {span.busy / span.seconds:.2f} "
              f"of {span.capacity / span.seconds:.0f}")
    return rate


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--webhooks", type=int, default=20000)
    ap.add_argument("--emails", type=int, default=2000)
    ap.add_argument("--alerts", type=int, default=3, help="alerts per notification")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--log-level", default="info",
                    help="the worker's --log.level (info: as deployed, its per-notification lines included)")
    ap.add_argument("--fast-time-format", action="store_true",
                    help="what-if: replace the templates' time formatter in the worker (see fast_time_format)")
    ap.add_argument("--profile", default="", help="write the worker's CPU profile to PROFILE.<kind>")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tocsin-notifier-bench-") as d:
        tmp = Path(d)
        async with start_nats(tmp / "nats") as nats:
            procs: list[subprocess.Popen[bytes]] = []
            try:
                if args.webhooks:
                    port = free_port()
                    procs.append(_spawn([sys.executable, "-c", _HTTP_RECEIVER, str(port)], tmp / "http.log"))
                    await asyncio.sleep(0.5)
                    config = textwrap.dedent(f"""
                        route: {{receiver: bench}}
                        receivers:
                        - name: bench
                          webhook_configs: [{{url: 'http://127.0.0.1:{port}/hook'}}]
                        tocsin: {{notifier: {{concurrency: {args.concurrency}}}}}
                        """)
                    await _run("webhook", args.webhooks, args.alerts, tmp, nats.url, config,
                               lambda: _count_http(port), args,
                               {"nats-server": nats.proc.pid, "receiver": procs[-1].pid})
                if args.emails:
                    port, count_port = free_port(), free_port()
                    procs.append(_spawn([sys.executable, "-c", _SMTP_RECEIVER, str(port), str(count_port)],
                                        tmp / "smtp.log"))
                    await asyncio.sleep(1.0)
                    config = textwrap.dedent(f"""
                        global: {{smtp_smarthost: '127.0.0.1:{port}', smtp_from: 'tocsin@example.com',
                                  smtp_require_tls: false}}
                        route: {{receiver: bench}}
                        receivers:
                        - name: bench
                          email_configs: [{{to: 'oncall@example.com'}}]
                        tocsin: {{notifier: {{concurrency: {args.concurrency}}}}}
                        """)
                    await _run("email", args.emails, args.alerts, tmp, nats.url, config,
                               lambda: _count_smtp(count_port), args,
                               {"nats-server": nats.proc.pid, "receiver": procs[-1].pid})
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
