"""Start-up checks that fail in one line saying what failed and what to do.

``tocsin up`` and ``tocsin run`` check, before anything else starts, that the listen address is
free and that an external NATS or Postgres answers (Postgres with ``wal_level = logical`` when
the source runs). A server that does not answer is waited for up to ``TOCSIN_START_TIMEOUT``
seconds (default 30: a pod may start before its NATS), then the process exits non-zero.
:func:`one_line` turns any other failure into the line ``tocsin`` prints.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from urllib.parse import urlsplit

import anyio
import asyncpg

from pipeline.foundation.embedded import redact_url
from stages.source.replication import wal_level_problem

__all__ = ["START_TIMEOUT_ENV", "StartupError", "check_listen", "check_postgres", "leaf", "one_line",
           "parse_listen_address", "start_timeout", "wait_for_nats"]

START_TIMEOUT_ENV = "TOCSIN_START_TIMEOUT"


class StartupError(RuntimeError):
    """A start-up failure; its message is the whole line (what failed, what to do)."""


def start_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(START_TIMEOUT_ENV, "30")))
    except ValueError:
        value = os.environ[START_TIMEOUT_ENV]
        raise StartupError(f"{START_TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def parse_listen_address(addr: str) -> tuple[str, int]:
    """Alertmanager's ``--web.listen-address`` form: ``:9093``, ``0.0.0.0:9093``, ``[::1]:9093``."""
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid listen address {addr!r}: expected host:port or :port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def check_listen(listen: str) -> None:
    """The HTTP listen address is free (checked before the embedded servers start, not after)."""
    host, port = parse_listen_address(listen)
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            what = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise StartupError(f"cannot listen on {listen}: {what}; stop what uses it or give another "
                               "--web.listen-address") from None


async def _tcp(host: str, port: int) -> str:
    """'' when a TCP connection opens, else why not."""
    try:
        with anyio.fail_after(5):
            stream = await anyio.connect_tcp(host, port)
        await stream.aclose()
        return ""
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        return exc.strerror or str(exc)


async def wait_for_nats(url: str, timeout: float) -> None:
    """One of the servers of ``url`` accepts TCP connections within ``timeout`` seconds."""
    targets = []
    for part in url.split(","):
        u = urlsplit(part.strip())
        if u.hostname:
            targets.append((u.hostname, u.port or 4222))
    if not targets:
        raise StartupError(f"invalid NATS URL {redact_url(url)!r}; give --nats-url nats://host:4222")
    give_up = time.monotonic() + timeout
    while True:
        why = ""
        for host, port in targets:
            why = await _tcp(host, port)
            if not why:
                return
        if time.monotonic() >= give_up:
            raise StartupError(f"cannot reach NATS at {redact_url(url)}: {why}; start it, or fix --nats-url "
                               "(or TOCSIN_NATS_URL)")
        await anyio.sleep(0.5)


async def check_postgres(dsn: str, timeout: float, *, logical: bool) -> None:
    """Postgres answers within ``timeout`` seconds (with ``wal_level = logical`` when ``logical``)."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            if time.monotonic() >= give_up:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
                raise StartupError(f"cannot reach Postgres at {redact_url(dsn)}: {_first_line(why)}; start it, or "
                                   "fix --postgres-dsn (or TOCSIN_POSTGRES_DSN)") from None
            await anyio.sleep(0.5)
            continue
        except asyncpg.PostgresError as exc:  # (a wrong password, a missing database: waiting does not help)
            raise StartupError(f"Postgres at {redact_url(dsn)} refused the connection: {_first_line(str(exc))}; "
                               "fix --postgres-dsn (or TOCSIN_POSTGRES_DSN)") from None
        try:
            level = str(await conn.fetchval("SHOW wal_level"))
        finally:
            await conn.close()
        problem = wal_level_problem(level) if logical else None
        if problem:
            raise StartupError(problem)
        return


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def leaf(exc: BaseException) -> BaseException:
    """The first real failure inside exception groups (task groups wrap what stopped them)."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def one_line(exc: BaseException) -> str:
    """The line ``tocsin`` prints for a failure (without the ``tocsin: `` prefix)."""
    exc = leaf(exc)
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"address already in use ({exc}); stop what uses it or give another --web.listen-address"
    text = _first_line(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {text} (--log.level=debug shows where)"
