"""Chaos mode, on the ``cluster`` topology (``tocsin up --topology processes``):

- every ``kill_every`` seconds, SIGKILL one random stage process (the topology's supervisor
  restarts it);
- once, SIGKILL one nats-server of the 3-node cluster and start it again with the same
  command line (the topology does not restart NATS nodes: done here);
- once, crash Postgres (SIGQUIT: immediate shutdown, crash recovery on start) and start it
  again with the same command line, as the same OS user.

Every action is logged with its time, so a same-key repeat at the receiver can be matched
with a notifier killed during the request. :func:`plan` (pure) says what happens when.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psutil

from loadtest.stack import Stack, spawn, stop_process

__all__ = ["Action", "Chaos", "plan"]

log = logging.getLogger("loadtest")


@dataclass(frozen=True)
class Action:
    at: float  # seconds after the start of the load
    kind: str  # "kill", "nats", "postgres"


def plan(duration: float, kill_every: float, *, nats_at: float | None, postgres_at: float | None) -> list[Action]:
    """Kills every ``kill_every`` seconds from ``kill_every`` on, plus the two server restarts (at
    fractions of the duration), in time order; nothing in the last ``kill_every`` of the load,
    so the end of the run is not a restart."""
    actions = []
    if kill_every > 0:
        t = kill_every
        while t < duration - kill_every / 2:
            actions.append(Action(round(t, 3), "kill"))
            t += kill_every
    if nats_at is not None:
        actions.append(Action(round(duration * nats_at, 3), "nats"))
    if postgres_at is not None:
        actions.append(Action(round(duration * postgres_at, 3), "postgres"))
    return sorted(actions, key=lambda a: (a.at, a.kind))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _cmdline_port(args: list[str], flag: str) -> int | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return int(args[i + 1])
        if a.startswith(f"{flag}="):
            return int(a.split("=", 1)[1])
    return None


@dataclass
class Chaos:
    stack: Stack
    stages: tuple[str, ...] = ("source", "rules", "router", "filter", "notifier")
    seed: int = 1
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (time, action, detail)
    respawned: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def _note(self, kind: str, detail: str) -> None:
        log.warning("chaos: %s %s", kind, detail)
        self.log.append((time.time(), kind, detail))

    async def run(self, t0: float, actions: list[Action]) -> None:
        rng = random.Random(self.seed)
        for a in actions:
            await anyio.sleep(max(0.0, t0 + a.at - time.time()))
            try:
                if a.kind == "kill":
                    self.kill_stage(rng)
                elif a.kind == "nats":
                    await self.restart_nats(rng)
                elif a.kind == "postgres":
                    await self.restart_postgres()
            except Exception as exc:  # a failed chaos action is reported, not fatal
                self._note("error", f"{a.kind}: {exc!r}")

    def kill_stage(self, rng: random.Random) -> None:
        kids = [c for c in self.stack.children() if str(c.get("stage")) in self.stages and c.get("pid")]
        if not kids:
            self._note("error", "no stage process to kill")
            return
        victim = kids[rng.randrange(len(kids))]
        pid = int(str(victim["pid"]))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._note("kill", f"{victim['replica']} pid {pid}")

    async def restart_nats(self, rng: random.Random) -> None:
        pids = self.stack.nats_pids()
        i = rng.randrange(len(pids))
        proc = psutil.Process(pids[i])
        args, cwd = proc.cmdline(), proc.cwd()
        port = _cmdline_port(args, "-p")
        store = Path(args[args.index("-sd") + 1]) if "-sd" in args else Path(cwd)
        proc.kill()
        self._note("nats-kill", f"nats-{i} pid {pids[i]}")
        await _gone(pids[i], 10)
        await anyio.sleep(2.0)  # the cluster notices; clients move to the other nodes
        new = spawn(args, store / "nats-server.log", death_signal=signal.SIGKILL)
        self.respawned.append(("nats", new))
        self.stack.nats_override[i] = new.pid
        if port:
            await _until(lambda: _port_open(port), 15)
        self._note("nats-start", f"nats-{i} pid {new.pid}")

    async def restart_postgres(self) -> None:
        data_dir = self.stack.work / "topo" / "postgres"
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        proc = psutil.Process(pid)
        args = proc.cmdline()
        uid = proc.uids().real
        port = next((int(a.split("=", 1)[1]) for a in args if a.startswith("port=")), None)
        proc.send_signal(signal.SIGQUIT)  # immediate shutdown: no checkpoint, crash recovery on start
        self._note("postgres-crash", f"postmaster pid {pid}")
        await _gone(pid, 20)
        with contextlib.suppress(FileNotFoundError):
            (data_dir / "postmaster.pid").unlink()  # a zombie postmaster leaves its lock file
        await anyio.sleep(1.0)
        new = spawn(args, data_dir.parent / f"{data_dir.name}.log", death_signal=signal.SIGINT,
                    user=uid if os.geteuid() == 0 and uid != 0 else None, env=dict(os.environ))
        self.respawned.append(("postgres", new))
        if port:
            await _until(lambda: _port_open(port), 30)
        self._note("postgres-start", f"postmaster pid {new.pid}")

    async def cleanup(self) -> None:
        for what, p in self.respawned:
            await stop_process(p, 20, signal.SIGINT if what == "postgres" else signal.SIGTERM)


async def _gone(pid: int, timeout: float) -> None:
    def dead() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await _until(dead, timeout)


async def _until(cond: object, timeout: float) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await anyio.sleep(0.1)
