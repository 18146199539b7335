"""HTTP for the integrations: Alertmanager's ``http_config`` over the one HTTP/1.1 client.

:class:`Clients` gives one :class:`HttpClient` per distinct ``http_config``: the lean
keep-alive client of ``pipeline.foundation.http1`` (307/308 redirects followed here), or
``httpx.AsyncClient`` when the config names a proxy. Honoured: basic auth, authorization /
bearer token (inline or from a file), custom ``http_headers``, TLS options (CA, client
certificate, server name, ``insecure_skip_verify``, versions), proxies and redirects.
OAuth2 is not supported: such an integration fails permanently with that reason.
:class:`HttpSender` is what every HTTP integration shares; :func:`http_outcome` judges a
response. Secrets are read when needed (see ``secrets``) and never appear in errors.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from pipeline.foundation.amconfig.model import HTTPConfig, TLSConfig
from pipeline.foundation.http1 import Http1Pool, HttpProtocolError, HttpResponse

from .classify import OK, Outcome, classify_status, parse_retry_after
from .core import SenderKey
from .secrets import SecretError, SecretReader
from .templates import TemplateSet

__all__ = [
    "USER_AGENT",
    "Clients",
    "HttpClient",
    "HttpSender",
    "auth_headers",
    "http_outcome",
    "ssl_context",
]

# httpcore asks for sniffio on every request; when it is not installed, each failed import
# scans sys.path (a large share of the CPU per request). Record it as absent once.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

USER_AGENT = "Tocsin/0.1 (Alertmanager-compatible)"
_ERROR_BODY = 256  # response characters quoted in an error
_MAX_REDIRECTS = 10

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
            if not (self.follow_redirects and resp.status in (307, 308)):  # no header scan for the rest
                return resp
            location = resp.header("location")
            if not location:
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
        return OK
    body = resp.body[:_ERROR_BODY].decode("utf-8", "replace").strip()
    retry_after = parse_retry_after(resp.header("retry-after"), now)
    error = f"unexpected status code {resp.status}" + (f": {body}" if body else "")
    return Outcome(verdict, error, resp.status, retry_after)



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
