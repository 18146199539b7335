"""One delivery attempt, and the built-in senders: webhook, Slack, PagerDuty (HTTP) and email (SMTP).

A :class:`Sender` sends one request to one integration; :func:`attempt` makes one attempt
with the sender's timeout and turns every way it can end into an
:class:`~stages.notifier.classify.Outcome`. The worker decides about retries (``core``);
nothing here sleeps or retries. The other integrations live under ``integrations/``; the
HTTP they share (``http_config``, the client) is in ``http``. Secrets are read when needed
(see ``secrets``) and never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from typing import Any, Protocol

import aiosmtplib
import anyio
import httpx
import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import EmailConfig, PagerdutyConfig, SlackConfig, WebhookConfig

from .classify import OK, Outcome, Verdict, classify_smtp, permanent, transport_outcome
from .core import SenderKey
from .http import HttpSender, http_outcome, ssl_context
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
    "EmailSender",
    "PagerdutySender",
    "Sender",
    "SlackSender",
    "WebhookSender",
    "attempt",
]

log = logging.getLogger("tocsin.notifier")
_ERROR_BODY = 256  # response characters quoted in an error


class Sender(Protocol):
    key: SenderKey
    send_resolved: bool
    timeout: float

    async def send(self, req: SendRequest, now: float) -> Outcome: ...

    async def aclose(self) -> None: ...


class _Deadline:
    """One attempt's deadline in :class:`_Deadlines` (``asyncio.timeout``'s, as a record)."""

    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[Any], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.expired = False


class _Deadlines:
    """``asyncio.timeout`` for the many concurrent attempts of a loop, with one timer.

    ``asyncio.timeout`` schedules and cancels a timer handle per attempt (a heap push, a
    cancelled handle the loop later sweeps): several percent of a webhook's CPU. Here one
    timer is kept at the earliest deadline; when it fires it cancels the tasks whose
    deadline passed, as ``asyncio.timeout`` does, and is set again for the next one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[_Deadline, None] = {}  # insertion-ordered set
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def start(self, seconds: float) -> _Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an attempt runs inside a task")
        d = _Deadline(task, self.loop.time() + seconds)
        self.pending[d] = None
        if self.timer is None or d.when < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(d.when, self._fire)
            self.timer_at = d.when
        return d

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        first: float | None = None
        for d in list(self.pending):
            if d.when <= now:
                del self.pending[d]
                d.expired = True
                d.task.cancel()
            elif first is None or d.when < first:
                first = d.when
        if first is not None:
            self.timer = self.loop.call_at(first, self._fire)
            self.timer_at = first

    def end(self, d: _Deadline) -> bool:
        """Forget ``d`` (once, as the attempt ends); whether its expiry cancelled the task and
        no other cancellation is pending (a CancelledError then means: timed out)."""
        self.pending.pop(d, None)
        return d.expired and d.task.uncancel() <= d.cancelling


_deadlines: dict[asyncio.AbstractEventLoop, _Deadlines] = {}


def _loop_deadlines() -> _Deadlines:
    loop = asyncio.get_running_loop()
    got = _deadlines.get(loop)
    if got is None:
        for old in [lp for lp in _deadlines if lp.is_closed()]:  # loops of tests run before
            del _deadlines[old]
        got = _deadlines[loop] = _Deadlines(loop)
    return got


async def attempt(sender: Sender, req: SendRequest, now: float) -> Outcome:
    """One attempt with the sender's timeout; never raises, except cancellation.

    The timeout works as ``asyncio.timeout`` (the worker runs on anyio's asyncio backend,
    nats-py needs it) with one timer for all attempts (:class:`_Deadlines`); ``anyio.fail_after``
    costs several times more. A cancellation from outside (a drained worker) still
    propagates as one.
    """
    try:
        deadlines = _loop_deadlines()
        deadline = deadlines.start(sender.timeout)
        ended = False
        try:
            return await sender.send(req, now)
        except asyncio.CancelledError:
            ended = True
            if deadlines.end(deadline):
                raise TimeoutError from None
            raise
        finally:
            if not ended:
                deadlines.end(deadline)
    except TimeoutError:
        return transport_outcome("timeout", f"no response within {sender.timeout:g}s")
    except ssl.SSLError as exc:  # before ValueError: a certificate error is both; retried, as Alertmanager does
        return transport_outcome("tls", f"TLS: {exc.reason or exc}")
    except (SecretError, ValueError) as exc:  # config or URL that cannot work: not worth retrying
        return permanent(str(exc))
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, EOFError, httpx.NetworkError,
            httpx.ProtocolError, aiosmtplib.SMTPServerDisconnected) as exc:
        return transport_outcome("network", f"connection lost: {type(exc).__name__}: {exc}")
    except (OSError, httpx.TransportError, aiosmtplib.SMTPConnectError) as exc:
        return transport_outcome("connect", f"cannot connect: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug or an unexpected answer: do not hammer the receiver with it
        log.exception("send %s to %s failed unexpectedly", req.id, sender.key)
        return permanent(f"internal error: {type(exc).__name__}: {exc}")


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
            return transport_outcome("timeout", "SMTP timeout")
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
        return OK


class _SmtpSetupError(Exception):
    pass
