"""Starting the system under test for a run, in one of three topologies, and stopping it.

- ``single``: ``tocsin up`` — every stage and the API in one process, embedded NATS and Postgres;
- ``stages``: one nats-server and one Postgres started here, every stage (source, rules,
  router, filter, notifier, and the API in API mode) a ``tocsin run STAGE`` process of its
  own — what a 2-core machine can give the pipeline with one NATS;
- ``cluster``: ``tocsin up --topology processes --with-source``: the Helm topology (3 NATS
  nodes, R3 streams, supervised stage processes) — the one the chaos mode kills things in.

A :class:`Stack` says where the API and Postgres are, which processes to sample (CPU,
memory) and where each process serves ``/metrics``. Every process started here gets
``PR_SET_PDEATHSIG`` so nothing survives the load test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import psutil

from pipeline.foundation.embedded import spawn, stop_process

__all__ = ["Proc", "Stack", "spawn", "start_stack", "stop_process", "wait_ready"]

TOPOLOGIES = ("single", "stages", "cluster")


@dataclass(frozen=True)
class Proc:
    """A process to sample; ``tree``: with all its descendants (Postgres backends)."""

    role: str
    pid: int
    tree: bool = False


async def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None,
                     what: str = "") -> None:
    """Until ``GET url`` answers 200."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what or 'a child process'} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout:.0f}s")
            await anyio.sleep(0.2)


async def _wait_file(path: Path, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f}s; see {log}")
        await anyio.sleep(0.2)
    await anyio.sleep(0.1)  # written in one go, but let the writer finish
    doc: dict[str, object] = json.loads(path.read_text())
    return doc


def _tocsin(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.application.cli", *args]


@dataclass
class Stack:
    topology: str
    work: Path
    api_url: str = ""
    postgres_dsn: str = ""
    nats_url: str = ""
    fixed: list[Proc] = field(default_factory=list)  # processes that do not change
    storages: list[Path] = field(default_factory=list)  # endpoints.json dirs of stage processes
    topo_endpoints: Path | None = None  # cluster: the topology's endpoints.json
    nats_override: dict[int, int] = field(default_factory=dict)  # cluster: node index -> respawned pid
    nats_pprof: str = ""  # stages: nats-server's Go pprof endpoint (--profile)

    def _postmaster(self, data_dir: Path) -> Proc | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            if psutil.pid_exists(pid):
                return Proc("postgres", pid, tree=True)
        return None

    def describe(self) -> dict[str, object]:
        """The cluster topology's current description (children pids change on restarts)."""
        if self.topo_endpoints is None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            doc: dict[str, object] = json.loads(self.topo_endpoints.read_text())
            return doc
        return {}

    def nats_pids(self) -> list[int]:
        desc = self.describe()
        pids = [int(p) for p in desc.get("nats_pids", [])]  # type: ignore[attr-defined]
        return [self.nats_override.get(i, p) for i, p in enumerate(pids)]

    def children(self) -> list[dict[str, object]]:
        kids = self.describe().get("children", [])
        return list(kids) if isinstance(kids, list) else []

    def processes(self) -> list[Proc]:
        procs = list(self.fixed)
        if self.topology == "cluster":
            procs += [Proc(f"nats-{i}", pid) for i, pid in enumerate(self.nats_pids())]
            for c in self.children():
                if c.get("pid"):
                    procs.append(Proc(str(c["replica"]), int(str(c["pid"]))))
            pm = self._postmaster(self.work / "topo" / "postgres")
            if pm:
                procs.append(pm)
        return procs

    def metrics_urls(self) -> list[str]:
        urls = []
        for d in self.storages:
            with contextlib.suppress(OSError, ValueError, KeyError):
                urls.append(str(json.loads((d / "endpoints.json").read_text())["metrics_url"]))
        if self.topology == "cluster":
            for c in self.children():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    ep = self.work / "topo" / str(c["replica"]) / "endpoints.json"
                    urls.append(str(json.loads(ep.read_text())["metrics_url"]))
        return urls


@contextlib.asynccontextmanager
async def start_stack(topology: str, work: Path, config: Path, *, partitions: int = 16, replicas: int = 1,
                      with_api: bool = True, deployment: str = "separate") -> AsyncIterator[Stack]:
    if topology == "single":
        cm = _single(work, config, partitions, deployment)
    elif topology == "stages":
        cm = _stages(work, config, partitions, replicas, with_api, deployment)
    elif topology == "cluster":
        cm = _cluster(work, config, partitions, replicas, deployment)
    else:
        raise ValueError(f"unknown topology {topology!r}; known: {', '.join(TOPOLOGIES)}")
    async with cm as stack:
        yield stack


@contextlib.asynccontextmanager
async def _single(work: Path, config: Path, partitions: int, deployment: str) -> AsyncIterator[Stack]:
    storage = work / "tocsin"
    log = work / "tocsin.log"
    proc = spawn(_tocsin("up", "--config.file", str(config), "--storage.path", str(storage), "--partitions",
                         str(partitions), "--web.listen-address", "127.0.0.1:0", "--deployment", deployment), log)
    try:
        ep = await _wait_file(storage / "endpoints.json", 120, proc, log)
        stack = Stack("single", work, api_url=str(ep["api_url"]), postgres_dsn=str(ep["postgres_dsn"]),
                      nats_url=str(ep["nats_url"]), storages=[storage])
        stack.fixed.append(Proc("tocsin", proc.pid))
        for child in psutil.Process(proc.pid).children():
            name = child.name()
            if name.startswith("nats-server"):
                stack.fixed.append(Proc("nats", child.pid))
            elif name.startswith("postgres"):
                stack.fixed.append(Proc("postgres", child.pid, tree=True))
        yield stack
    finally:
        with anyio.CancelScope(shield=True):
            await stop_process(proc, 60)


@contextlib.asynccontextmanager
async def _stages(work: Path, config: Path, partitions: int, replicas: int, with_api: bool,
                  deployment: str) -> AsyncIterator[Stack]:
    from pipeline.application.graph import process_stages
    from pipeline.foundation.embedded import free_port, start_nats, start_postgres

    pprof = free_port()
    async with start_nats(work / "nats", extra_args=["--profile", str(pprof)]) as ns, \
            start_postgres(work / "postgres") as pg:
        stack = Stack("stages", work, postgres_dsn=pg.dsn, nats_url=ns.url,
                      nats_pprof=f"http://127.0.0.1:{pprof}/debug/pprof/profile")
        stack.fixed += [Proc("nats", ns.proc.pid), Proc("postgres", pg.proc.pid, tree=True)]
        procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
        names = process_stages(deployment, ["source", "rules", "router", "filter", "notifier",
                                            *(["api"] if with_api else [])])
        try:
            for stage in names:
                for r in range(1 if stage in ("source", "api") else replicas):
                    replica = f"{stage}-{r}"
                    storage = work / replica
                    log = work / f"{replica}.log"
                    args = _tocsin("run", stage, "--nats-url", ns.url, "--postgres-dsn", pg.dsn, "--partitions",
                                   str(partitions), "--config.file", str(config), "--storage.path", str(storage),
                                   "--replica", replica, "--web.listen-address", "127.0.0.1:0",
                                   "--deployment", deployment)
                    procs.append((spawn(args, log), storage, log))
                    stack.storages.append(storage)
            for proc, storage, log in procs:
                ep = await _wait_file(storage / "endpoints.json", 120, proc, log)
                stack.fixed.append(Proc(storage.name, proc.pid))
                if storage.name.startswith("api"):
                    stack.api_url = str(ep["api_url"])
            yield stack
        finally:
            with anyio.CancelScope(shield=True):
                for proc, _, _ in procs:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                for proc, _, _ in procs:
                    await stop_process(proc, 30)


@contextlib.asynccontextmanager
async def _cluster(work: Path, config: Path, partitions: int, replicas: int, deployment: str) -> AsyncIterator[Stack]:
    storage = work / "topo"
    log = work / "topology.log"
    proc = spawn(_tocsin("up", "--topology", "processes", "--with-source", "--replicas", str(replicas),
                         "--deployment", deployment,
                         "--partitions", str(partitions), "--config.file", str(config), "--storage.path",
                         str(storage), "--web.listen-address", "127.0.0.1:0"), log)
    try:
        ep = await _wait_file(storage / "endpoints.json", 180, proc, log)
        stack = Stack("cluster", work, api_url=str(ep["api_url"]), postgres_dsn=str(ep["postgres_dsn"]),
                      nats_url=str(ep["nats_url"]), topo_endpoints=storage / "endpoints.json")
        stack.fixed.append(Proc("topology", proc.pid))
        await wait_ready(f"{stack.api_url}/-/ready", 120, proc, "the topology")
        deadline = time.monotonic() + 120
        while not all((storage / str(c["replica"]) / "endpoints.json").exists() for c in stack.children()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"stage processes of the topology not ready; see {log}")
            await anyio.sleep(0.2)
        yield stack
    finally:
        with anyio.CancelScope(shield=True):
            await stop_process(proc, 90)
