"""`tocsin up --topology processes` as a child process for a test: started, described
(``endpoints.json``), ready, and stopped with SIGTERM at the end (killed after 60 s)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx


@dataclass
class Topology:
    proc: subprocess.Popen[bytes]
    storage: Path
    log: Path  # the supervisor's stdout and stderr
    desc: dict[str, Any]  # endpoints.json: api_url, nats_url, nats_pids, children

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


@contextlib.asynccontextmanager
async def topology(tmp_path: Path, *args: str, ready_within: float = 90) -> AsyncIterator[Topology]:
    """Run ``tocsin up --topology processes ARGS`` (storage ``tmp_path/topo``, log
    ``tmp_path/topology.log``); yields once every stage process is ready."""
    storage, log = tmp_path / "topo", tmp_path / "topology.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.application.cli", "up", "--topology", "processes",
                                 *args, "--storage.path", str(storage), "--web.listen-address", "127.0.0.1:0"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with anyio.fail_after(120):
            while not (storage / "endpoints.json").exists():
                assert proc.poll() is None, log.read_text()[-3000:]
                await anyio.sleep(0.2)
        running = Topology(proc, storage, log, json.loads((storage / "endpoints.json").read_text()))
        async with httpx.AsyncClient(base_url=running.desc["api_url"], timeout=20) as api:
            with anyio.fail_after(ready_within):  # every stage process connected and ready
                while True:
                    try:
                        if (await api.get("/-/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await anyio.sleep(0.2)
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
