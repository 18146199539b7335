"""The HTTP/1.1 client (pipeline.foundation.http1) against a real local server that answers
what each test scripts: keep-alive reuse, body framings, timeouts, resets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from pipeline.foundation.http1 import MAX_BODY, Http1Connection, Http1Pool, HttpError, HttpProtocolError

# What the server does with one request: ("send", raw bytes), ("send-close", raw bytes): send
# then close, ("hang",): never answer, ("reset", raw bytes): send them then reset the
# connection, ("close",): close without answering (the client closes a hung connection).
Action = tuple[str, ...] | tuple[str, bytes]


def ok(body: bytes = b"ok", *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), b"".join(h + b"\r\n" for h in extra),
                                                                  body)


@dataclass
class Peer:
    """A local HTTP server answering each request with the next scripted action (default: ``ok()``)."""

    script: list[Action] = field(default_factory=list)
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.requests.append(head + await reader.readexactly(length))
                action = self.script.pop(0) if self.script else ("send", ok())
                if action[0] == "hang":
                    await reader.read()  # until the client gives up and closes
                    return
                if action[0] == "close":
                    return
                if action[0] == "reset":
                    writer.write(action[1])  # type: ignore[misc]
                    await writer.drain()
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()  # with SO_LINGER 0: a TCP reset
                    return
                writer.write(action[1])  # type: ignore[misc]
                await writer.drain()
                if action[0] == "send-close":
                    return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    p.server = await asyncio.start_server(p._serve, "127.0.0.1", 0)
    p.port = p.server.sockets[0].getsockname()[1]
    yield p
    p.server.close()


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    client = Http1Pool()
    yield client
    await client.aclose()


async def test_keep_alive_reuses_one_connection(peer: Peer, pool: Http1Pool) -> None:
    for i in range(5):
        resp = await pool.request("POST", f"{peer.url}/hook?n={i}", [("X-Test", "yes")], b'{"n": %d}' % i)
        assert (resp.status, resp.body) == (200, b"ok")
    assert peer.connections == 1 and pool.idle() == 1
    first = peer.requests[0]
    assert first.startswith(b"POST /hook?n=0 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % peer.port)
    assert b"\r\nContent-Length: 8\r\n" in first and b"\r\nX-Test: yes\r\n" in first and first.endswith(b'{"n": 0}')


@pytest.mark.parametrize(("answer", "status", "body", "reused"), [
    (ok(b"hello"), 200, b"hello", True),
    (b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nRetry-After: 7\r\n\r\nbusy", 503, b"busy", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     200, b"hello world", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n", 200, b"hi", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"), 200, b"after", True),
    (ok(b"bye", b"Connection: close"), 200, b"bye", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nv0", 200, b"v0", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nv0", 200, b"v0", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 10) + b"x" * (MAX_BODY + 10), 200,
     b"x" * MAX_BODY, False),
], ids=["content-length", "error-status", "chunked", "chunked-trailers", "no-body", "interim-1xx", "connection-close",
        "http-1.0", "http-1.0-keep-alive", "too-long-body-is-cut"])
async def test_response_framing(peer: Peer, pool: Http1Pool, answer: bytes, status: int, body: bytes,
                                reused: bool) -> None:
    peer.script = [("send", answer)]
    resp = await pool.request("POST", f"{peer.url}/x", [], b"{}")
    assert (resp.status, resp.body) == (status, body)
    assert pool.idle() == (1 if reused else 0)
    assert (await pool.request("POST", f"{peer.url}/x", [], b"{}")).status == 200  # the next one works either way
    assert peer.connections == (1 if reused else 2)


async def test_body_delimited_by_the_end_of_the_connection(peer: Peer, pool: Http1Pool) -> None:
    peer.script = [("send-close", b"HTTP/1.1 200 OK\r\n\r\nuntil the end")]
    resp = await pool.request("GET", f"{peer.url}/", [])
    assert (resp.status, resp.body) == (200, b"until the end") and pool.idle() == 0


async def test_response_headers(peer: Peer, pool: Http1Pool) -> None:
    peer.script = [("send", ok(b"{}", b"Content-Type: application/json", b"retry-after:  12 "))]
    resp = await pool.request("POST", f"{peer.url}/", [])
    assert resp.header("content-type") == "application/json" and resp.header("Retry-After") == "12"
    assert resp.header("location") is None


async def test_a_kept_connection_closed_by_the_peer_is_replaced_once(peer: Peer, pool: Http1Pool) -> None:
    """The peer closes an idle kept-alive connection (its keep-alive timeout): the request is
    sent again on a new connection, invisibly to the caller."""
    peer.script = [("send", ok()), ("close",)]
    assert (await pool.request("POST", f"{peer.url}/", [], b"1")).status == 200
    assert (await pool.request("POST", f"{peer.url}/", [], b"2")).status == 200
    assert peer.connections == 2 and len(peer.requests) == 3


async def test_a_new_connection_closed_without_an_answer_is_a_retryable_error(peer: Peer, pool: Http1Pool) -> None:
    peer.script = [("close",)]
    with pytest.raises(HttpProtocolError, match="without a response") as info:
        await pool.request("POST", f"{peer.url}/", [], b"1")
    assert isinstance(info.value, ConnectionError | HttpError)


@pytest.mark.parametrize("partial", [
    b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
], ids=["before-any-byte", "in-the-head", "in-the-body"])
async def test_a_reset_connection_is_a_retryable_error(peer: Peer, pool: Http1Pool, partial: bytes) -> None:
    peer.script = [("reset", partial)]
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await pool.request("POST", f"{peer.url}/", [], b"1")
    assert pool.idle() == 0
    assert (await pool.request("POST", f"{peer.url}/", [], b"2")).status == 200  # a new connection works


async def test_a_timed_out_request_closes_its_connection(peer: Peer, pool: Http1Pool) -> None:
    assert (await pool.request("POST", f"{peer.url}/", [])).status == 200
    peer.script = [("hang",)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await pool.request("POST", f"{peer.url}/", [])
    assert pool.idle() == 0  # never reused: its answer may still come
    assert (await pool.request("POST", f"{peer.url}/", [])).status == 200
    assert peer.connections == 2


@pytest.mark.parametrize(("answer", "match"), [
    (b"SMTP 220 hello\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
], ids=["not-http", "bad-length", "bad-chunk"])
async def test_a_malformed_answer_is_a_retryable_error(peer: Peer, pool: Http1Pool, answer: bytes, match: str) -> None:
    peer.script = [("send", answer)]
    with pytest.raises(HttpProtocolError, match=match):
        await pool.request("POST", f"{peer.url}/", [])
    assert pool.idle() == 0


@pytest.mark.parametrize(("url", "headers"), [
    ("ftp://127.0.0.1/x", []),
    ("http:///x", []),
    ("http://127.0.0.1:1/x", [("X-Evil", "a\r\nInjected: 1")]),
], ids=["scheme", "no-host", "header-line-break"])
async def test_a_request_that_cannot_work_is_a_value_error(pool: Http1Pool, url: str,
                                                           headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        await pool.request("POST", url, headers)


async def test_connection_posts_and_reconnects(peer: Peer) -> None:
    conn = Http1Connection(peer.url + "/api/", timeout=0.3)
    try:
        assert await conn.post("/v2/alerts", b"[]", {"Authorization": "Bearer t"}) == (200, b"ok")
        assert peer.requests[0].startswith(b"POST /api/v2/alerts HTTP/1.1\r\n")
        assert b"\r\nContent-Type: application/json\r\n" in peer.requests[0]
        assert b"\r\nAuthorization: Bearer t\r\n" in peer.requests[0]
        peer.script = [("hang",)]
        with pytest.raises(HttpError, match="TimeoutError"):
            await conn.post("/v2/alerts", b"[]")
        peer.script = [("reset", b"")]
        with pytest.raises(HttpError):
            await conn.post("/v2/alerts", b"[]")
        assert await conn.post("/v2/alerts", b"[]") == (200, b"ok")
    finally:
        await conn.close()


async def test_connection_refused_is_an_http_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connect is refused
        conn = Http1Connection(f"http://127.0.0.1:{port}")
        with pytest.raises(HttpError, match="ConnectionRefusedError"):
            await conn.post("/", b"")


def test_connection_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="http://"):
        Http1Connection("https://example.com")
