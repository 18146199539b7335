"""One delivery attempt per integration: webhook, Slack, PagerDuty (HTTP) and email (SMTP).

:func:`build_senders` turns the receivers of an Alertmanager config into one
:class:`Sender` per integration; :func:`attempt` makes one attempt with a timeout and turns
every way it can end into an :class:`Outcome` (classified by ``classify``). The worker
decides about retries; nothing here sleeps or retries, except re-sending once on a fresh
connection when a kept-alive one turns out closed before any response byte.

HTTP goes through :class:`Http1Pool`, a lean HTTP/1.1 keep-alive client on asyncio streams
(httpx with httpcore's pool costs about a millisecond of CPU per request at 64 requests in
flight, ten times the rest of a send); a config with a proxy uses ``httpx.AsyncClient``. Alertmanager's
``http_config`` is honoured: basic auth, authorization / bearer token (inline or from a
file), custom ``http_headers``, TLS options (CA, client certificate, server name,
``insecure_skip_verify``, versions), proxies and redirects (307/308 on the lean path).
OAuth2 is not supported: such an integration fails permanently with that reason.

Secrets are read when needed (see ``secrets``) and never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import importlib.util
import logging
import os
import socket
import ssl
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urljoin, urlsplit

import aiosmtplib
import anyio
import httpx
import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import (
    EmailConfig,
    HTTPConfig,
    PagerdutyConfig,
    SlackConfig,
    TLSConfig,
    WebhookConfig,
)

from .classify import (
    TransportError,
    Verdict,
    classify_smtp,
    classify_status,
    classify_transport,
    parse_retry_after,
)
from .payloads import (
    PAGERDUTY_V1_URL,
    PAGERDUTY_V2_URL,
    email_envelope,
    email_message,
    idempotency_key,
    message_id_for,
    pagerduty_payload,
    slack_payload,
    webhook_body,
)
from .secrets import SecretError, SecretReader
from .templates import TemplateSet, build_data

__all__ = [
    "USER_AGENT",
    "EmailSender",
    "Http1Pool",
    "HttpProtocolError",
    "HttpResponse",
    "HttpSender",
    "Outcome",
    "PagerdutySender",
    "Sender",
    "SenderKey",
    "SlackSender",
    "WebhookSender",
    "attempt",
    "auth_headers",
    "http_outcome",
    "permanent",
    "ssl_context",
]

log = logging.getLogger("tocsin.notifier")

# httpcore asks for sniffio on every request; when it is not installed, each failed import
# scans sys.path (a large share of the CPU per request). Record it as absent once.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

USER_AGENT = "Tocsin/0.1 (Alertmanager-compatible)"
_MAX_BODY = 1 << 20  # response bytes kept; a longer body is cut and its connection dropped
_ERROR_BODY = 256  # response characters quoted in an error
_MAX_REDIRECTS = 10

SenderKey = tuple[str, str, int]  # (receiver, integration kind, index)


class Outcome(NamedTuple):
    """How one attempt ended. ``error`` is safe to log and store (no secrets)."""

    verdict: Verdict
    error: str = ""
    status: int = 0
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok


_OK = Outcome(Verdict(ok=True, retryable=False, reason=""))


def permanent(error: str) -> Outcome:
    return Outcome(Verdict(ok=False, retryable=False, reason="other"), error)


def _transport(kind: TransportError, error: str) -> Outcome:
    return Outcome(classify_transport(kind), error)


class Sender(Protocol):
    key: SenderKey
    send_resolved: bool
    timeout: float

    async def send(self, req: SendRequest, now: float) -> Outcome: ...

    async def aclose(self) -> None: ...


async def attempt(sender: Sender, req: SendRequest, now: float) -> Outcome:
    """One attempt with the sender's timeout; never raises, except cancellation.

    The timeout is asyncio's (the worker runs on anyio's asyncio backend, nats-py needs it):
    ``anyio.fail_after`` costs several times more, a few percent of a notification's CPU.
    A cancellation from outside (a drained worker) still propagates as one.
    """
    try:
        async with asyncio.timeout(sender.timeout):
            return await sender.send(req, now)
    except TimeoutError:
        return _transport("timeout", f"no response within {sender.timeout:g}s")
    except ssl.SSLError as exc:  # before ValueError: a certificate error is both; retried, as Alertmanager does
        return _transport("tls", f"TLS: {exc.reason or exc}")
    except (SecretError, ValueError) as exc:  # config or URL that cannot work: not worth retrying
        return permanent(str(exc))
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, EOFError, httpx.NetworkError,
            httpx.ProtocolError, aiosmtplib.SMTPServerDisconnected) as exc:
        return _transport("network", f"connection lost: {type(exc).__name__}: {exc}")
    except (OSError, httpx.TransportError, aiosmtplib.SMTPConnectError) as exc:
        return _transport("connect", f"cannot connect: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug or an unexpected answer: do not hammer the receiver with it
        log.exception("send %s to %s failed unexpectedly", req.id, sender.key)
        return permanent(f"internal error: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- HTTP transport


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
    """A URL split for HTTP/1.1 (cached: integrations post to a few URLs again and again)."""
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
        with contextlib.suppress(Exception):
            self.writer.close()


class _Stale(Exception):
    """A kept-alive connection was closed by the peer before it answered."""


class HttpProtocolError(ConnectionError):
    """The peer's answer is not HTTP/1.x as understood here."""


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


class Http1Pool:
    """HTTP/1.1 with keep-alive over asyncio streams, for plain requests with small bodies.

    Idle connections are kept per origin (most recently used first). A request on a
    reused connection that the peer had closed is sent once more on a new connection.
    Cancel a request (timeout) and its connection is closed, never reused.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, server_hostname: str = "",
                 max_idle: int = 256) -> None:
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._max_idle = max_idle
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._closed = False

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
                conn.writer.write(wire)
                await conn.writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                raise _Stale() from None
            while True:
                status, headers, keep = self._parse_head(head)
                if status >= 200 or status == 101:
                    break
                head = await conn.reader.readuntil(b"\r\n\r\n")  # 1xx interim answers
            body, reusable = await self._read_body(conn.reader, method, status, headers)
            if keep and reusable and not self._closed:
                pool = self._idle.setdefault(origin, [])
                if len(pool) < self._max_idle:
                    pool.append(conn)
                    done = True
            return HttpResponse(status, headers, body)
        finally:
            if not done:
                conn.close()

    @staticmethod
    def _parse_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool]:
        lines = head[:-4].split(b"\r\n")
        first = lines[0].split(b" ", 2)
        if len(first) < 2 or not first[0].startswith(b"HTTP/1.") or not first[1].isdigit():
            raise HttpProtocolError(f"malformed status line {lines[0][:80]!r}")
        status = int(first[1])
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.strip(), value.strip()))
        connection = (_header(headers, b"connection") or b"").lower()
        if first[0] == b"HTTP/1.0":
            keep = b"keep-alive" in connection
        else:
            keep = b"close" not in connection
        return status, headers, keep

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, method: str, status: int,
                         headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bool]:
        if method == "HEAD" or status in (204, 304):
            return b"", True
        te = _header(headers, b"transfer-encoding")
        if te is not None and b"chunked" in te.lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                n = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if n == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks), True
                if size + n > _MAX_BODY:
                    return b"".join(chunks), False
                chunks.append(await reader.readexactly(n))
                size += n
                await reader.readexactly(2)
        length = _header(headers, b"content-length")
        if length is not None:
            n = int(length)
            if n > _MAX_BODY:
                return await reader.readexactly(_MAX_BODY), False
            return await reader.readexactly(n), True
        return await reader.read(_MAX_BODY), False  # delimited by the end of the connection

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()


# --------------------------------------------------------------------------- HTTP config

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


def _pem_file(text: str, tmpdir: list[str]) -> str:
    """Write inline PEM to a private temporary file (ssl only loads certificates from files)."""
    if not tmpdir:
        tmpdir.append(tempfile.mkdtemp(prefix="tocsin-tls-"))
    fd, path = tempfile.mkstemp(dir=tmpdir[0], suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def ssl_context(tls: TLSConfig | None, secrets: SecretReader | None = None) -> ssl.SSLContext:
    """An SSL context for a ``tls_config`` (Alertmanager's defaults when ``None``)."""
    if tls is None:
        return ssl.create_default_context()
    ctx = ssl.create_default_context(cafile=tls.ca_file or None, cadata=tls.ca or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version:
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Prometheus' default
    if tls.max_version:
        ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.cert or tls.cert_file:
        tmp: list[str] = []
        try:
            cert = tls.cert_file or _pem_file(tls.cert, tmp)
            key = tls.key_file or _pem_file(tls.key.value if tls.key else "", tmp)
            ctx.load_cert_chain(cert, key)
        finally:
            if tmp:
                import shutil

                shutil.rmtree(tmp[0], ignore_errors=True)
    return ctx


@dataclass
class HttpClient:
    """How an integration's requests are sent: the lean pool, or ``httpx.AsyncClient`` for proxies."""

    pool: Http1Pool | None
    client: httpx.AsyncClient | None
    follow_redirects: bool

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> HttpResponse:
        return await self.request("POST", url, headers, body)

    async def request(self, method: str, url: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"") -> HttpResponse:
        if self.client is not None:
            r = await self.client.request(method, url, headers=list(headers), content=body)
            return HttpResponse(r.status_code, list(r.headers.raw), r.content)
        assert self.pool is not None
        for _ in range(_MAX_REDIRECTS + 1):
            resp = await self.pool.request(method, url, headers, body)
            location = resp.header("location")
            if not (self.follow_redirects and resp.status in (307, 308) and location):
                return resp
            url = urljoin(url, location)
        raise HttpProtocolError(f"more than {_MAX_REDIRECTS} redirects")

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
        if self.client is not None:
            await self.client.aclose()


class Clients:
    """One client per distinct ``http_config`` (SSL contexts are costly to build)."""

    def __init__(self) -> None:
        self._clients: list[tuple[HTTPConfig | None, HttpClient]] = []  # HTTPConfig is not hashable

    def get(self, http: HTTPConfig | None, secrets: SecretReader) -> HttpClient:
        for cfg, client in self._clients:
            if cfg == http:
                return client
        tls = http.tls_config if http is not None else None
        ctx = ssl_context(tls, secrets)
        follow = http.follow_redirects if http is not None else True
        if http is not None and (http.proxy_url or http.proxy_from_environment):
            client = HttpClient(None, httpx.AsyncClient(
                verify=ctx, proxy=http.proxy_url or None, trust_env=http.proxy_from_environment,
                follow_redirects=follow, timeout=None), follow)
        else:
            client = HttpClient(Http1Pool(ctx, server_hostname=tls.server_name if tls else ""), None, follow)
        self._clients.append((http, client))
        return client

    async def aclose(self) -> None:
        for _, client in self._clients:
            await client.aclose()


def auth_headers(http: HTTPConfig | None, secrets: SecretReader, what: str) -> list[tuple[str, str]]:
    if http is None:
        return []
    out: list[tuple[str, str]] = []
    if http.oauth2 is not None:
        raise SecretError(f"{what}: http_config.oauth2 is not supported by Tocsin")
    if http.basic_auth is not None:
        ba = http.basic_auth
        user = secrets.resolve(ba.username, ba.username_file, f"{what}: basic_auth username")
        password = secrets.resolve(ba.password, ba.password_file, f"{what}: basic_auth password")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        out.append(("Authorization", f"Basic {token}"))
    elif http.authorization is not None:
        auth = http.authorization
        cred = secrets.resolve(auth.credentials, auth.credentials_file, f"{what}: authorization credentials")
        out.append(("Authorization", f"{auth.type or 'Bearer'} {cred}"))
    elif http.bearer_token or http.bearer_token_file:
        cred = secrets.resolve(http.bearer_token, http.bearer_token_file, f"{what}: bearer_token")
        out.append(("Authorization", f"Bearer {cred}"))
    for name, header in (http.http_headers or {}).items():
        out += [(name, v) for v in header.values]
        out += [(name, s.value) for s in header.secrets]
        out += [(name, secrets.read_file(f, f"{what}: http_headers {name}")) for f in header.files]
    return out


def http_outcome(resp: HttpResponse, now: float, retry_codes: Sequence[int] = ()) -> Outcome:
    verdict = classify_status(resp.status, retry_codes=retry_codes)
    if verdict.ok:
        return _OK
    body = resp.body[:_ERROR_BODY].decode("utf-8", "replace").strip()
    retry_after = parse_retry_after(resp.header("retry-after"), now)
    error = f"unexpected status code {resp.status}" + (f": {body}" if body else "")
    return Outcome(verdict, error, resp.status, retry_after)


# --------------------------------------------------------------------------- HTTP integrations


class HttpSender:
    """What the HTTP integrations share: client, auth headers, POST of a JSON body."""

    kind = ""

    def __init__(self, key: SenderKey, http: HTTPConfig | None, timeout: float, client: HttpClient,
                 secrets: SecretReader, templates: TemplateSet, external_url: str, send_resolved: bool) -> None:
        self.key = key
        self.http = http
        self.timeout = timeout
        self.client = client
        self.secrets = secrets
        self.templates = templates
        self.external_url = external_url
        self.send_resolved = send_resolved
        self.what = f"{key[0]}/{key[1]}[{key[2]}]"

    async def post(self, url: str, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> HttpResponse:
        headers = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT), *extra,
                   *auth_headers(self.http, self.secrets, self.what)]
        return await self.client.post(url, headers, body)

    async def aclose(self) -> None:
        return None


class WebhookSender(HttpSender):
    """Alertmanager's webhook message v4; ``Idempotency-Key`` carries the send id."""

    kind = "webhook"

    def __init__(self, cfg: WebhookConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    def url(self, req: SendRequest) -> str:
        url = self.secrets.resolve(self.cfg.url, self.cfg.url_file, f"{self.what}: url")
        if "{{" in url:
            rendered, err = self.templates.render(url, build_data(req, self.external_url), "")
            if err is not None:  # the error may quote the template, which is a secret
                raise SecretError(f"{self.what}: the url template does not render")
            url = rendered.strip()
        return url

    async def send(self, req: SendRequest, now: float) -> Outcome:
        body = webhook_body(req, self.cfg, self.external_url)
        resp = await self.post(self.url(req), body, [("Idempotency-Key", idempotency_key(req))])
        return http_outcome(resp, now)


class SlackSender(HttpSender):
    """A Slack message to an incoming webhook (``api_url``) or ``chat.postMessage`` (app token)."""

    kind = "slack"

    def __init__(self, cfg: SlackConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    async def send(self, req: SendRequest, now: float) -> Outcome:
        url = self.secrets.resolve(self.cfg.api_url, self.cfg.api_url_file, f"{self.what}: api_url")
        if not url:
            return permanent(f"{self.what}: no api_url")
        errors: list[str] = []
        body = slack_payload(req, self.cfg, build_data(req, self.external_url), templates=self.templates,
                             errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        resp = await self.post(url, msgspec.json.encode(body))
        out = http_outcome(resp, now)
        if not out.ok:
            return out
        # Slack answers errors with 200 too: a JSON {"ok": false}, or a text other than "ok"
        ctype = resp.header("content-type") or ""
        if ctype.startswith("application/json"):
            try:
                answer = msgspec.json.decode(resp.body)
            except msgspec.DecodeError:
                return Outcome(Verdict(False, False, "clientError"), "Slack answered invalid JSON", resp.status)
            if isinstance(answer, dict) and not answer.get("ok", False):
                return Outcome(Verdict(False, False, "clientError"), f"Slack error: {answer.get('error', '')}",
                               resp.status)
            return out
        text = resp.body.decode("utf-8", "replace").strip()
        if text != "ok":
            return Outcome(Verdict(False, False, "clientError"), f"Slack error: {text[:_ERROR_BODY]}", resp.status)
        return out


class PagerdutySender(HttpSender):
    """A PagerDuty event (v2, or v1 for ``service_key``); the dedup key is stable per group."""

    kind = "pagerduty"

    def __init__(self, cfg: PagerdutyConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg
        self.v1 = bool(cfg.service_key or cfg.service_key_file) and not (cfg.routing_key or cfg.routing_key_file)

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        if self.v1:
            key = self.secrets.resolve(cfg.service_key, cfg.service_key_file, f"{self.what}: service_key")
            url = cfg.url if cfg.url and cfg.url != PAGERDUTY_V2_URL else PAGERDUTY_V1_URL
        else:
            key = self.secrets.resolve(cfg.routing_key, cfg.routing_key_file, f"{self.what}: routing_key")
            url = cfg.url or PAGERDUTY_V2_URL
        errors: list[str] = []
        body = pagerduty_payload(req, cfg, build_data(req, self.external_url), key, templates=self.templates,
                                 errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        resp = await self.post(url, msgspec.json.encode(body))
        # the v1 API asks for a retry on 403 (rate limited)
        return http_outcome(resp, now, retry_codes=(403,) if self.v1 else ())


# --------------------------------------------------------------------------- email


class EmailSender:
    """An email through the smarthost: implicit TLS (port 465 or ``force_implicit_tls``) or
    STARTTLS when ``require_tls``; AUTH CRAM-MD5, PLAIN or LOGIN as the server offers, when
    ``auth_username`` is set. The message is the same bytes on every retry."""

    kind = "email"

    def __init__(self, cfg: EmailConfig, *, key: SenderKey, timeout: float, secrets: SecretReader,
                 templates: TemplateSet, external_url: str) -> None:
        if cfg.smarthost is None:
            raise ValueError("no smarthost")
        self.key = key
        self.cfg = cfg
        self.timeout = timeout
        self.secrets = secrets
        self.templates = templates
        self.external_url = external_url
        self.send_resolved = cfg.send_resolved
        self.what = f"{key[0]}/email[{key[2]}]"
        self.host = cfg.smarthost.host
        self.port = int(cfg.smarthost.port)
        self.implicit_tls = cfg.force_implicit_tls if cfg.force_implicit_tls is not None else self.port == 465
        self.tls = ssl_context(cfg.tls_config, secrets)
        # STARTTLS verifies this name; implicit TLS verifies the smarthost's host name
        self.server_name = (cfg.tls_config.server_name if cfg.tls_config else "") or self.host

    async def aclose(self) -> None:
        return None

    async def _auth(self, smtp: aiosmtplib.SMTP, encrypted: bool) -> None:
        cfg = self.cfg
        username = cfg.auth_username
        methods = smtp.server_auth_methods
        secret = self.secrets.resolve(cfg.auth_secret, cfg.auth_secret_file, f"{self.what}: auth_secret")
        password = self.secrets.resolve(cfg.auth_password, cfg.auth_password_file, f"{self.what}: auth_password")
        if "cram-md5" in methods and secret:
            await smtp.auth_crammd5(username, secret)
        elif "plain" in methods and password:
            if not encrypted and self.host not in ("localhost", "127.0.0.1", "::1"):
                raise _SmtpSetupError("refusing AUTH PLAIN over an unencrypted connection")
            token = base64.b64encode(f"{cfg.auth_identity}\0{username}\0{password}".encode())
            resp = await smtp.execute_command(b"AUTH", b"PLAIN", token)
            if resp.code != 235:
                raise aiosmtplib.SMTPAuthenticationError(resp.code, resp.message)
        elif "login" in methods and password:
            await smtp.auth_login(username, password)
        else:
            raise _SmtpSetupError(f"no usable AUTH mechanism among {', '.join(methods) or 'none'}")

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        data = build_data(req, self.external_url)
        try:
            sender, recipients = email_envelope(cfg, data, templates=self.templates)
        except ValueError as exc:
            return permanent(f"{self.what}: {exc}")
        errors: list[str] = []
        msg = email_message(req, cfg, data, message_id_for(req, sender.rpartition("@")[2] or "tocsin"),
                            templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, local_hostname=cfg.hello or "localhost",
                               timeout=self.timeout, use_tls=self.implicit_tls, start_tls=False,
                               tls_context=self.tls if self.implicit_tls else None)
        try:
            await smtp.connect()
            await smtp.ehlo()
            encrypted = self.implicit_tls
            if not self.implicit_tls and cfg.require_tls:
                if not smtp.supports_extension("starttls"):
                    return Outcome(Verdict(False, True, "other"),
                                   f"require_tls is true but {self.host}:{self.port} does not advertise STARTTLS")
                await smtp.starttls(tls_context=self.tls, server_hostname=self.server_name)
                await smtp.ehlo()  # the extensions (AUTH) offered over TLS may differ
                encrypted = True
            if cfg.auth_username and smtp.supports_extension("auth"):
                await self._auth(smtp, encrypted)
            await smtp.send_message(msg, sender=sender, recipients=recipients)
        except _SmtpSetupError as exc:
            return permanent(f"{self.what}: {exc}")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0] if exc.recipients else None
            code = first.code if first is not None else 550
            return Outcome(classify_smtp(code), f"recipients refused: {code} {first.message if first else ''}")
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(classify_smtp(exc.code), f"SMTP {exc.code}: {exc.message}")
        except aiosmtplib.SMTPTimeoutError:
            return _transport("timeout", "SMTP timeout")
        finally:
            with anyio.CancelScope(shield=True):
                if smtp.is_connected:
                    try:
                        with anyio.move_on_after(2):
                            await smtp.quit()
                    except Exception:
                        smtp.close()
                    if smtp.is_connected:
                        smtp.close()
        return _OK


class _SmtpSetupError(Exception):
    pass


# --------------------------------------------------------------------------- building


