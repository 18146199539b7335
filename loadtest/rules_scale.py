"""Scale of the rules stage: N active alerts across M organisations (issue: rules stage).

Publishes pushed alerts (far-future endsAt, so all stay active) into EVENTS, runs
`tocsin run rules` as its own process until every alert fired, reads its resident memory,
then restarts it and times state rebuild (start to /-/ready).

Run: `.venv/bin/python -m loadtest.rules_scale --alerts 100000 --orgs 1000`
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from contracts import PushedAlert, PushedAlerts, encode
from contracts.partition import partition_of
from pipeline.foundation.embedded import start_nats
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.subjects import EVENTS, StreamNames

__all__ = ["main"]

ALERTS = StreamNames("alerts")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_ready(storage: Path, started: float, timeout: float = 600) -> float:
    with anyio.fail_after(timeout):
        while not (storage / "endpoints.json").exists() or json.loads(
                (storage / "endpoints.json").read_text())["pid"] == 0:
            await anyio.sleep(0.05)
        url = json.loads((storage / "endpoints.json").read_text())["api_url"]
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"{url}/-/ready")).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await anyio.sleep(0.05)


async def run(alerts: int, orgs: int, partitions: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        async with start_nats(Path(d) / "nats") as ns:
            nc = await connect(ns.url)
            js = nc.jetstream()
            await ensure_partitions(js, nc, partitions)
            await ensure_stream(js, EVENTS)
            per_org = alerts // orgs
            now = time.time()
            t0 = time.perf_counter()
            pending = []
            for o in range(orgs):
                org = f"org-{o:04d}"
                batch = [PushedAlert(labels={"alertname": f"A{i % 20}", "instance": f"host-{i}", "org": org},
                                     annotations={"summary": "load"}, starts_at=now, ends_at=now + 86400)
                         for i in range(per_org)]
                for i in range(0, per_org, 100):
                    msg = PushedAlerts(request_id=f"r{o}-{i}", org=org, received_at=now, alerts=batch[i:i + 100])
                    pending.append(js.publish(EVENTS.out(partition_of(org, partitions), "alerts"), encode(msg)))
                if len(pending) > 200:
                    for f in pending:
                        await f
                    pending = []
            for f in pending:
                await f
            print(f"published {alerts} alerts of {orgs} orgs in {time.perf_counter() - t0:.1f}s")

            storage = Path(d) / "rules"
            args = [sys.executable, "-m", "pipeline.application.cli",
                    "run", "rules", "--nats-url", ns.url, "--partitions",
                    str(partitions), "--storage.path", str(storage), "--log-level", "warning"]
            started = time.monotonic()
            proc = subprocess.Popen(args)
            await wait_ready(storage, started)
            t1 = time.monotonic()
            with anyio.fail_after(900):
                while True:
                    info = await js.stream_info(ALERTS.stream, subjects_filter=f"{ALERTS.prefix}.out.>")
                    got = sum((info.state.subjects or {}).values())
                    if got >= alerts:
                        break
                    await anyio.sleep(0.5)
            took = time.monotonic() - t1
            rss = rss_mib(proc.pid)
            print(f"rules stage: {alerts / took:,.0f} alerts/s; resident memory with {alerts} active alerts: "
                  f"{rss:,.0f} MiB")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            (storage / "endpoints.json").unlink()
            started = time.monotonic()
            proc = subprocess.Popen(args)
            rebuild = await wait_ready(storage, started)
            rss2 = rss_mib(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            print(f"restart: ready (state of {alerts} alerts rebuilt, {partitions} partitions) in {rebuild:.1f}s; "
                  f"memory after rebuild {rss2:,.0f} MiB")
            await nc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--orgs", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=16)
    a = ap.parse_args()
    anyio.run(run, a.alerts, a.orgs, a.partitions)


if __name__ == "__main__":
    main()
