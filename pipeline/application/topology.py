"""`tocsin up --topology processes`: the Helm chart's topology on one machine.

A 3-node nats-server cluster on loopback (R3 streams), one Postgres when the source runs,
and every stage as its own `tocsin run STAGE` process with a configurable number of
replicas, supervised: a child that dies is restarted (after a short backoff), SIGINT or
SIGTERM stops the children first and the servers last. Tests use it to kill a NATS node
and a replica of each stage during a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from pipeline.application.graph import DEFAULT_DEPLOYMENT, topology_stages
from pipeline.foundation.embedded import NatsServer, free_port, spawn, start_nats, start_postgres, write_private_file
from pipeline.foundation.runtime.jetstream import connect, ensure_partitions, ensure_stream
from pipeline.foundation.runtime.subjects import StreamNames

__all__ = ["Child", "Topology", "run_topology"]

log = logging.getLogger("tocsin.topology")


@dataclass
class Child:
    stage: str
    replica: str
    args: list[str]
    log: Path
    # Credentials reach a child in its environment, never in argv (which `ps` shows to everyone).
    env: dict[str, str] = field(default_factory=dict, repr=False)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "TOCSIN_POSTGRES_DSN_FILE"}  # it would win over ours
        self.proc = spawn(self.args, log=self.log, death_signal=signal.SIGTERM,
                          env={**env, **self.env, "PYTHONUNBUFFERED": "1"})

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Topology:
    storage: Path
    nats: list[NatsServer]
    children: list[Child] = field(default_factory=list)
    postgres_dsn: str = ""
    api_url: str = ""

    @property
    def nats_url(self) -> str:
        return ",".join(s.url for s in self.nats)

    def describe(self) -> dict[str, object]:
        """What endpoints.json holds: the URLs with their credentials (the file is 0600)."""
        return {"nats_url": self.nats_url, "postgres_dsn": self.postgres_dsn, "api_url": self.api_url,
                "metrics_url": f"{self.api_url}/metrics", "storage_path": str(self.storage), "pid": os.getpid(),
                "nats_pids": [s.proc.pid for s in self.nats],
                "children": [{"stage": c.stage, "replica": c.replica, "pid": c.pid} for c in self.children]}


async def _wait_cluster(url: str, partitions: int, timeout: float = 60) -> None:
    """Until JetStream has a meta leader and R3 streams can be created."""
    nc = await connect(url, name="tocsin-topology")
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    js = nc.jetstream()
                    await ensure_partitions(js, nc, partitions, replicas=3)
                    for name in ("events", "commands", "audit"):
                        await ensure_stream(js, StreamNames(name), replicas=3)
                    return
                except Exception as exc:  # no meta leader yet
                    log.debug("cluster not ready: %r", exc)
                    await anyio.sleep(0.5)
    finally:
        await nc.close()


async def run_topology(storage: Path, *, replicas: int = 1, partitions: int = 16, listen: str = ":9093",
                       config_file: Path | None = None, with_source: bool = False,
                       child_args: Sequence[str] = (), deployment: str = DEFAULT_DEPLOYMENT,
                       task_status: TaskStatus[Topology] = anyio.TASK_STATUS_IGNORED) -> None:
    storage = storage.absolute()
    storage.mkdir(parents=True, exist_ok=True)
    cports = [free_port() for _ in range(3)]
    routes = [f"nats://127.0.0.1:{p}" for p in cports]
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for i in range(3):
            servers.append(await stack.enter_async_context(start_nats(
                storage / f"nats-{i}", name=f"nats-{i}", cluster_name="tocsin", cluster_port=cports[i],
                routes=[r for j, r in enumerate(routes) if j != i], secrets_dir=storage)))
        topo = Topology(storage=storage, nats=servers)
        if with_source:
            topo.postgres_dsn = (await stack.enter_async_context(start_postgres(storage / "postgres"))).dsn
        await _wait_cluster(topo.nats_url, partitions)
        common = ["--partitions", str(partitions), "--stream-replicas", "3", *child_args]
        if "--deployment" not in child_args:
            common += ["--deployment", deployment]
        nats_env = {"TOCSIN_NATS_URL": topo.nats_url}
        if config_file:
            common += ["--config.file", str(config_file)]
        stages = [*topology_stages(deployment), *(["source"] if with_source else [])]
        for stage in stages:
            for r in range(replicas):
                replica = f"{stage}-{r}"
                args = [sys.executable, "-m", "pipeline.application.cli", "run", stage, *common, "--replica", replica,
                        "--storage.path", str(storage / replica)]
                env = {**nats_env, **({"TOCSIN_POSTGRES_DSN": topo.postgres_dsn} if stage == "source" else {})}
                topo.children.append(Child(stage, replica, args, storage / f"{replica}.log", env))
        api_args = [sys.executable, "-m", "pipeline.application.cli", "run", "api", *common, "--replica", "api-0",
                    "--storage.path", str(storage / "api-0"), "--web.listen-address", listen]
        api = Child("api", "api-0", api_args, storage / "api-0.log", nats_env)
        topo.children.append(api)
        for child in topo.children:
            child.start()
        with anyio.fail_after(60):
            while not (storage / "api-0" / "endpoints.json").exists():
                await anyio.sleep(0.1)
        topo.api_url = json.loads((storage / "api-0" / "endpoints.json").read_text())["api_url"]
        write_private_file(storage / "endpoints.json", json.dumps(topo.describe(), indent=2) + "\n")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_supervise, topo)
                task_status.started(topo)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                    async for signum in signals:
                        if signum == signal.SIGHUP:  # reload: every process reloads its configuration
                            for child in topo.children:
                                if child.proc is not None and child.proc.poll() is None:
                                    child.proc.send_signal(signal.SIGHUP)
                            continue
                        break
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _stop_children(topo)


async def _supervise(topo: Topology) -> None:
    """Restart a child that exited (killed by a test, crashed): the topology stays whole."""
    while True:
        await anyio.sleep(0.5)
        for child in topo.children:
            if child.proc is not None and child.proc.poll() is not None:
                child.restarts += 1
                log.warning("%s exited with %s; restarting (%d)", child.replica, child.proc.returncode,
                            child.restarts)
                child.start()
        write_private_file(topo.storage / "endpoints.json", json.dumps(topo.describe(), indent=2) + "\n")


async def _stop_children(topo: Topology, grace: float = 20.0) -> None:
    for child in topo.children:
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(c.proc and c.proc.poll() is None for c in topo.children) and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    for child in topo.children:
        if child.proc and child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()
