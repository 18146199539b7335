"""The load test's webhook receiver: records every request with its arrival time, answers 200.

It runs as its own process (``python -m loadtest.sink --port 0 --out FILE``), so its CPU is
neither the pipeline's nor the generator's, on a minimal HTTP/1.1 server (keep-alive,
pipelining, Content-Length or chunked bodies): at thousands of notifications per second a
full ASGI stack would be the bottleneck of the measurement. Each request becomes one line of
``FILE``::

    {"t": <arrival, Unix seconds>, "k": "<Idempotency-Key or empty>", "p": "<path>", "b": <the JSON body>}

The body is written as received (it is JSON; raw newlines in JSON are only whitespace and are
replaced by spaces), so the receiver never parses it. ``GET /stats`` answers
``{"count": N}``. The first line on stdout is ``listening <port>``.

:func:`parse_requests` (pure) splits a byte buffer into complete requests; :func:`read_records`
reads a record file from an offset (what the load test tails).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Record", "Request", "end_of_records", "main", "parse_requests", "read_records", "record_line"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes


class Record(msgspec.Struct, frozen=True):
    t: float
    k: str
    p: str
    b: Any


def _dechunk(buf: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start``: (body, end offset), or None while incomplete."""
    body = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers, if any, end with an empty line
            return (bytes(body), end + 4) if end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos:pos + size]
        pos += size + 2


def parse_requests(buf: bytearray) -> list[Request]:
    """Take every complete request off the front of ``buf`` (incomplete bytes stay)."""
    out: list[Request] = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ValueError("request head too large")
            return out
        lines = bytes(buf[:end]).split(b"\r\n")
        method, path = ([*lines[0].split(b" "), b"", b""])[:2]
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            got = _dechunk(buf, end + 4)
            if got is None:
                return out
            body, stop = got
        else:
            n = int(headers.get(b"content-length", b"0") or 0)
            if len(buf) < end + 4 + n:
                return out
            body, stop = bytes(buf[end + 4:end + 4 + n]), end + 4 + n
        del buf[:stop]
        out.append(Request(method=method, path=path, headers=headers, body=body))


def record_line(at: float, key: bytes, path: bytes, body: bytes) -> bytes:
    """One line of the record file (see the module doc)."""
    payload = body.strip().replace(b"\n", b" ").replace(b"\r", b" ") or b"null"
    return b'{"t":%r,"k":%s,"p":%s,"b":%s}\n' % (at, msgspec.json.encode(key.decode("latin-1")),
                                                msgspec.json.encode(path.decode("latin-1")), payload)


def read_records(path: Path, offset: int) -> tuple[list[Record], int]:
    """Complete records of ``path`` from byte ``offset``, and the offset after the last one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    decoder = msgspec.json.Decoder(Record)
    records = [decoder.decode(line) for line in data[:end].split(b"\n") if line]
    return records, offset + end + 1


def end_of_records(path: Path) -> int:
    """The offset just after the last complete record of ``path`` (0 when there is none), read
    from the end: a later run of a scenario starts there without reading the earlier runs'."""
    try:
        with open(path, "rb") as f:
            pos = f.seek(0, 2)
            while pos > 0:
                start = max(0, pos - 65536)
                f.seek(start)
                nl = f.read(pos - start).rfind(b"\n")
                if nl >= 0:
                    return start + nl + 1
                pos = start
    except FileNotFoundError:
        pass
    return 0


class _Server:
    def __init__(self, out: Path) -> None:
        self.file = open(out, "ab")
        self.count = 0
        self.pending: list[bytes] = []

    def handle(self, req: Request) -> bytes:
        if req.method == b"GET" and req.path == b"/stats":
            body = b'{"count":%d}' % self.count
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(body), body)
        self.count += 1
        self.pending.append(record_line(time.time(), req.headers.get(b"idempotency-key", b""), req.path, req.body))
        return _OK

    def flush(self) -> None:
        if self.pending:
            self.file.write(b"".join(self.pending))
            self.file.flush()
            self.pending = []


class _Protocol(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        try:
            reqs = parse_requests(self.buf)
        except ValueError:
            self.transport.close()
            return
        if reqs:
            self.transport.write(b"".join(self.server.handle(r) for r in reqs))


async def _run(port: int, out: Path, host: str) -> None:
    server = _Server(out)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Protocol(server), host, port, backlog=1024)
    sock_port = listener.sockets[0].getsockname()[1]
    print(f"listening {sock_port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
            server.flush()
    finally:
        listener.close()
        server.flush()
        server.file.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="webhook receiver of the load test")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    gc.set_threshold(50_000, 20, 100)  # as the stage processes: a collection's pause would read as latency
    asyncio.run(_run(a.port, a.out, a.host))


if __name__ == "__main__":
    main(sys.argv[1:])
