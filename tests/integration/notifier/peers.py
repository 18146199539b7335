"""Real local peers for notifier tests: a scriptable HTTP server and an SMTP server.

:class:`HttpPeer` stands in for a webhook receiver, Slack or PagerDuty. It records every
request (method, path, headers, body, arrival time) and answers each path from a script:
``reply(path, Answer(500), Answer(429, {"Retry-After": "2"}), HANG, ...)`` is consumed in
order, then the path's default answer (200 unless set with ``default``). A ``HANG`` holds
the request without answering until :meth:`HttpPeer.release` or the client goes away.

:class:`SmtpPeer` is aiosmtpd in its own thread, with STARTTLS or implicit TLS (a
self-signed certificate made with ``openssl``) and AUTH PLAIN/LOGIN, recording each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.foundation.embedded import free_port

__all__ = ["HANG", "Answer", "HttpPeer", "Recorded", "SmtpPeer", "make_cert"]


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering


HANG = Answer(status=0)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() when the whole request had arrived

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class HttpPeer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: dict[str, list[Answer]] = {}
        self._default: dict[str, Answer] = {}
        self._release = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._arrived = asyncio.Condition()
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def reply(self, path: str, *answers: Answer) -> None:
        self._script.setdefault(path, []).extend(answers)

    def default(self, path: str, answer: Answer) -> None:
        self._default[path] = answer

    def release(self) -> None:
        """Let every hanging request go (it then gets its path's next answer... none: the connection closes)."""
        self._release.set()

    def on(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, n: int, path: str | None = None, timeout: float = 20.0) -> list[Recorded]:
        """The first ``n`` requests (to ``path``), waiting for them to arrive."""

        def got() -> list[Recorded]:
            return [r for r in self.requests if path is None or r.path == path]

        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(got()) >= n)
        return got()[:n]

    def _answer_for(self, path: str) -> Answer:
        script = self._script.get(path)
        if script:
            return script.pop(0)
        return self._default.get(path, Answer())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                async with self._arrived:
                    self.requests.append(Recorded(method, target, headers, body, time.monotonic()))
                    self._arrived.notify_all()
                answer = self._answer_for(target)
                if answer is HANG:
                    # hold the request until released or the client closes the connection
                    closed = asyncio.ensure_future(reader.read(1))
                    released = asyncio.ensure_future(self._release.wait())
                    await asyncio.wait([closed, released], return_when=asyncio.FIRST_COMPLETED)
                    closed.cancel()
                    released.cancel()
                    return
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                hdrs = {"Content-Length": str(len(answer.body)), "Content-Type": "text/plain", **answer.headers}
                out = f"HTTP/1.1 {answer.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                writer.write(out.encode() + b"\r\n" + answer.body)
                await writer.drain()
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (cert, key), made with openssl."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    auth_user: str
    tls: bool

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        user = session.auth_data if isinstance(session.auth_data, str) else ""
        # STARTTLS sets session.ssl; under implicit TLS the transport itself is TLS
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.peer.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content
                                    or envelope.content), user, tls))
        return "250 OK"


class SmtpPeer:
    """aiosmtpd on a free port. ``mode``: "plain", "starttls" or "implicit"."""

    def __init__(self, tmp: Path, *, mode: str = "starttls", users: dict[str, str] | None = None,
                 exclude_auth: list[str] | None = None) -> None:
        self.mails: list[Mail] = []
        self.port = free_port()
        self.cert, self.key = make_cert(tmp) if mode != "plain" else (Path(), Path())
        ctx: ssl.SSLContext | None = None
        if mode != "plain":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, self.key)
        self.users = users or {}
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port, "server_hostname": "localhost"}
        if mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        elif mode == "implicit":
            kwargs.update(ssl_context=ctx)
        if self.users:
            # aiosmtpd counts only STARTTLS as TLS when it decides whether AUTH needs it
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=mode == "starttls", auth_exclude_mechanism=exclude_auth or [])
        self.controller = Controller(_Handler(self), **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            ok = self.users.get(auth_data.login.decode()) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)
        return AuthResult(success=False, handled=False)

    def start(self) -> SmtpPeer:
        self.controller.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.controller.stop()

    async def wait_for(self, n: int, timeout: float = 20.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.mails)} of {n} mails arrived")
            await asyncio.sleep(0.02)
        return self.mails[:n]
