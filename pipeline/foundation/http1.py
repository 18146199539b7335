"""The one HTTP/1.1 client of Tocsin: keep-alive connections on asyncio streams.

The notifier's integrations and the load test's pushers send small requests at a high
rate; httpx with httpcore's pool costs about a millisecond of CPU per request at 64
requests in flight, ten times the rest of a notification. Here:

- :class:`Http1Pool`: ``request(method, url, headers, body) -> HttpResponse`` over idle
  connections kept per origin (most recently used first). A request on a reused connection
  that the peer had closed before any response byte is sent once more on a new connection.
  A cancelled request (a timeout) closes its connection, never reuses it. There is no
  timeout of its own: wrap the call in ``asyncio.timeout``.
- :class:`Http1Connection`: a pool bound to one base URL with a timeout, for clients that
  post to one server (``post(path, body, headers) -> (status, body)``); every failure is one
  retryable :class:`HttpError`.

Responses are read by ``Content-Length``, chunked, or to the end of the connection (at most
1 MiB is kept; a longer body is cut and its connection dropped).

Errors: a connection that fails, resets or answers something that is not HTTP/1.x raises a
:class:`ConnectionError` (or ``asyncio.IncompleteReadError``), :class:`HttpProtocolError`
for a malformed answer: all retryable, the request may not have reached the server. A URL
that cannot work (scheme, host, a header with a line break) raises ``ValueError``: not
worth retrying. Imports the standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["MAX_BODY", "Http1Connection", "Http1Pool", "HttpError", "HttpProtocolError", "HttpResponse"]

MAX_BODY = 1 << 20  # response bytes kept; a longer body is cut and its connection dropped


class HttpError(OSError):
    """The request got no usable response (connect, reset, timeout, malformed answer): retry it."""


class HttpProtocolError(HttpError, ConnectionError):
    """The peer's answer is not HTTP/1.x as understood here, or it closed without one: retry it."""


class HttpResponse(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        value = _header(self.headers, name.lower().encode())
        return None if value is None else value.decode("latin-1")


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    path: bytes  # path and query, as sent on the request line
    host_header: bytes


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> _Target:
    """A URL split for HTTP/1.1 (cached: clients post to a few URLs again and again)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("URL without a host")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, host, port, path.encode(), host_header.encode("idna"))


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        # A connection being discarded: its request's outcome is already decided, so a socket
        # error or a loop already closed (at shutdown) while closing it loses nothing.
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()


class _Stale(Exception):
    """A kept-alive connection was closed by the peer before it answered."""


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class Http1Pool:
    """HTTP/1.1 with keep-alive over asyncio streams, for plain requests with small bodies (see the module doc)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, server_hostname: str = "",
                 max_idle: int = 256) -> None:
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._closed = False

    def idle(self) -> int:
        """Connections kept open for reuse."""
        return sum(len(pool) for pool in self._idle.values())

    async def _open(self, t: _Target) -> _Conn:
        tls: ssl.SSLContext | None = None
        if t.scheme == "https":
            tls = self._ssl or ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            t.host, t.port, ssl=tls, server_hostname=(self._server_hostname or t.host) if tls else None,
            limit=256 * 1024)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def request(self, method: str, url: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"") -> HttpResponse:
        t = _target(url)
        origin = (t.scheme, t.host, t.port)
        parts = [method.encode(), b" ", t.path, b" HTTP/1.1\r\nHost: ", t.host_header,
                 b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
        for k, v in headers:
            if "\n" in v or "\r" in v:
                raise ValueError(f"header {k} holds a line break")
            parts += [k.encode("latin-1"), b": ", v.encode("utf-8"), b"\r\n"]
        parts += [b"\r\n", body]
        wire = b"".join(parts)
        idle = self._idle.get(origin)
        conn = idle.pop() if idle else None
        if conn is not None:
            try:
                return await self._exchange(conn, origin, method, wire)
            except _Stale:
                pass
        conn = await self._open(t)
        try:
            return await self._exchange(conn, origin, method, wire)
        except _Stale:
            raise HttpProtocolError("server closed the connection without a response") from None

    async def _exchange(self, conn: _Conn, origin: tuple[str, str, int], method: str, wire: bytes) -> HttpResponse:
        done = False
        try:
            try:
                writer = conn.writer
                writer.write(wire)
                # drain only when the socket did not take it all: a lost connection's error
                # surfaces on the read below as it would in drain()
                if writer.transport.get_write_buffer_size():
                    await writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                raise _Stale() from None
            while True:
                status, headers, keep, framing = _parse_head(head)
                if status >= 200 or status == 101:
                    break
                head = await conn.reader.readuntil(b"\r\n\r\n")  # 1xx interim answers
            body, reusable = await _read_body(conn.reader, method, status, framing)
            if keep and reusable and not self._closed:
                pool = self._idle.setdefault(origin, [])
                if len(pool) < self._max_idle:
                    pool.append(conn)
                    done = True
            return HttpResponse(status, headers, body)
        finally:
            if not done:
                conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()


class _Framing(NamedTuple):
    """The first ``Transfer-Encoding`` and ``Content-Length`` of a response (None: absent)."""

    transfer_encoding: bytes | None
    content_length: bytes | None


_FRAMING_NAMES = frozenset((b"connection", b"transfer-encoding", b"content-length"))


def _parse_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool, _Framing]:
    lines = head[:-4].split(b"\r\n")
    first = lines[0].split(b" ", 2)
    if len(first) < 2 or not first[0].startswith(b"HTTP/1.") or not first[1].isdigit():
        raise HttpProtocolError(f"malformed status line {lines[0][:80]!r}")
    status = int(first[1])
    headers: list[tuple[bytes, bytes]] = []
    found: dict[bytes, bytes] = {}  # the first of each header the framing needs, looked up in the one pass
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            name = name.strip()
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower in _FRAMING_NAMES and lower not in found:
                found[lower] = value
    connection = found.get(b"connection", b"").lower()
    if first[0] == b"HTTP/1.0":
        keep = b"keep-alive" in connection
    else:
        keep = b"close" not in connection
    return status, headers, keep, _Framing(found.get(b"transfer-encoding"), found.get(b"content-length"))


async def _read_body(reader: asyncio.StreamReader, method: str, status: int,
                     framing: _Framing) -> tuple[bytes, bool]:
    """The body and whether the connection can carry another request."""
    if method == "HEAD" or status in (204, 304):
        return b"", True
    te = framing.transfer_encoding
    if te is not None and b"chunked" in te.lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                n = int(line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                raise HttpProtocolError(f"malformed chunk size {line[:40]!r}") from None
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks), True
            if size + n > MAX_BODY:
                return b"".join(chunks), False
            chunks.append(await reader.readexactly(n))
            size += n
            await reader.readexactly(2)
    length = framing.content_length
    if length is not None:
        if not length.isdigit():
            raise HttpProtocolError(f"malformed Content-Length {length[:40]!r}")
        n = int(length)
        if n > MAX_BODY:
            return await reader.readexactly(MAX_BODY), False
        return await reader.readexactly(n), True
    return await reader.read(MAX_BODY), False  # delimited by the end of the connection


class Http1Connection:
    """An :class:`Http1Pool` bound to one ``http://`` base URL: ``await conn.post(path, body,
    headers) -> (status, body)`` within ``timeout`` seconds; reconnects when needed.

    Any failure (connect, reset, timeout, malformed answer) closes the connection and raises
    :class:`HttpError`: retry the request.
    """

    def __init__(self, base_url: str, timeout: float = 30.0, *, content_type: str = "application/json") -> None:
        u = urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"need an http:// URL, got {base_url!r}")
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.content_type = content_type
        self._pool = Http1Pool(max_idle=1)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        head = [("Content-Type", self.content_type), *(headers or {}).items()]
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._pool.request("POST", self.base + path, head, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        return resp.status, resp.body

    async def close(self) -> None:
        """Close the kept connection (the next request opens a new one)."""
        await self._pool.aclose()
        self._pool = Http1Pool(max_idle=1)
