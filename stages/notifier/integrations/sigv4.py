"""AWS Signature Version 4 and AWS credentials, with ``hashlib``/``hmac`` only (no botocore).

:func:`sign` adds ``X-Amz-Date``, ``X-Amz-Security-Token`` (temporary credentials) and the
``Authorization`` header to a request, as AWS's SigV4 specifies (header-based signing, the
payload hash in the canonical request). :func:`resolve_credentials` finds the credentials
and region of an ``sigv4`` block the way the AWS SDK's default chain does, minus what needs
AWS-side machinery: the block's keys, then a named profile (``profile`` or ``AWS_PROFILE``)
of the shared files, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
else the ``default`` profile. :func:`assume_role` is STS ``AssumeRole`` for ``role_arn``.
Not supported (an error says so): instance/container roles, SSO, web identity and
``credential_process`` / ``source_profile`` in profiles.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from urllib.parse import quote, unquote, urlencode, urlsplit

from pipeline.foundation.amconfig.model import SigV4Config

from ..secrets import SecretError, SecretReader

__all__ = [
    "AwsCredentials",
    "AwsError",
    "aws_error",
    "form_body",
    "parse_assume_role",
    "host_header",
    "resolve_credentials",
    "service_endpoint",
    "session_name",
    "sign",
    "sts_endpoint",
]

_ALGORITHM = "AWS4-HMAC-SHA256"
# Credentials a profile can only get through AWS-side machinery Tocsin does not implement.
_UNSUPPORTED_PROFILE_KEYS = ("credential_process", "source_profile", "sso_start_url", "sso_session",
                             "web_identity_token_file", "credential_source", "role_arn")


@dataclass(frozen=True)
class AwsCredentials:
    access_key: str
    secret_key: str
    token: str = ""
    expires: float | None = None  # Unix seconds; None: does not expire

    def __repr__(self) -> str:  # never show the secret
        token = "'<secret>'" if self.token else "''"
        return f"AwsCredentials(access_key={self.access_key!r}, secret_key='<secret>', token={token})"


class AwsError(Exception):
    """An AWS answer that is an error document: ``code`` and ``message`` from its XML."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code or status}: {message}" if message else (code or str(status)))
        self.status = status
        self.code = code
        self.message = message


def _xml_text(body: str, tag: str) -> str:
    m = re.search(rf"<{tag}>(.*?)</{tag}>", body, re.S)
    return unescape(m.group(1)).strip() if m else ""


def aws_error(status: int, body: bytes) -> AwsError:
    """The error of a query-API answer (``<ErrorResponse><Error><Code>``...)."""
    text = body[:4096].decode("utf-8", "replace")
    return AwsError(status, _xml_text(text, "Code"), _xml_text(text, "Message")[:256])


# --------------------------------------------------------------------------- signing


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(text: str, *, path: bool = False) -> str:
    # RFC 3986 unreserved characters stay as they are; in a path, "/" too
    return quote(text, safe="/-_.~" if path else "-_.~")


def host_header(url: str) -> str:
    """The ``Host`` value an HTTP client sends for ``url`` (the port only when not the default)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return shown if parts.port in (None, default) else f"{shown}:{parts.port}"


def _remove_dot_segments(path: str) -> str:
    """The path as SigV4 canonicalises it for every service but S3: dot segments resolved,
    empty segments dropped, the trailing slash kept (as the AWS SDKs do)."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    return "/" + "/".join(out) + ("/" if out and path.endswith("/") else "")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((_uri_encode(_unquote(name)), _uri_encode(_unquote(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _unquote(text: str) -> str:
    return unquote(text.replace("+", " "))


def sign(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes, creds: AwsCredentials,
         region: str, service: str, now: float) -> list[tuple[str, str]]:
    """``headers`` plus ``X-Amz-Date``, the session token and ``Authorization``.

    Every given header is signed, and ``host``; send exactly these headers (the HTTP client
    may add unsigned ones: ``Content-Length``, ``User-Agent``).
    """
    amz_date = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = [*headers, ("X-Amz-Date", amz_date)]
    if creds.token:
        out.append(("X-Amz-Security-Token", creds.token))
    signed: dict[str, str] = {"host": host_header(url)}
    for name, value in out:
        lower = name.lower()
        value = " ".join(value.split())
        signed[lower] = f"{signed[lower]},{value}" if lower in signed and lower != "host" else value
    names = sorted(signed)
    parts = urlsplit(url)
    canonical = "\n".join([
        method.upper(),
        _uri_encode(_remove_dot_segments(parts.path or "/"), path=True),
        _canonical_query(parts.query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names),
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{creds.secret_key}".encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out.append(("Authorization", f"{_ALGORITHM} Credential={creds.access_key}/{scope}, "
                                 f"SignedHeaders={';'.join(names)}, Signature={signature}"))
    return out


def form_body(params: Mapping[str, str]) -> bytes:
    """A query-API request body (``application/x-www-form-urlencoded``), spaces as ``%20``."""
    return urlencode(list(params.items()), quote_via=quote, safe="-_.~").encode()


# --------------------------------------------------------------------------- credentials


def _read_ini(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(default_section="\0none")
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        pass
    except (OSError, configparser.Error) as exc:
        raise SecretError(f"cannot read AWS shared file {path}: {exc}") from None
    return parser


def _shared_files(environ: Mapping[str, str]) -> tuple[str, str]:
    home = environ.get("HOME") or os.path.expanduser("~")
    return (environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"),
            environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"))


def _profile(environ: Mapping[str, str], name: str) -> dict[str, str]:
    """A profile's settings: the config file's ``[profile name]`` (``[default]``), then the
    credentials file's ``[name]`` over it, as the AWS SDK merges them."""
    creds_path, config_path = _shared_files(environ)
    config = _read_ini(config_path)
    section = "default" if name == "default" else f"profile {name}"
    out: dict[str, str] = {}
    if config.has_section(section):
        out.update(config.items(section))
    elif name == "default" and config.has_section("profile default"):
        out.update(config.items("profile default"))
    creds = _read_ini(creds_path)
    if creds.has_section(name):
        out.update(creds.items(name))
    return out


def resolve_credentials(cfg: SigV4Config, secrets: SecretReader, environ: Mapping[str, str],
                        what: str) -> tuple[AwsCredentials, str]:
    """The credentials and region for ``cfg`` (see the module's docstring for the order)."""
    profile_name = cfg.profile or environ.get("AWS_PROFILE", "")
    profile = _profile(environ, profile_name or "default")
    region = cfg.region or environ.get("AWS_REGION", "") or environ.get("AWS_DEFAULT_REGION", "") \
        or profile.get("region", "")
    if not region:
        raise SecretError(f"{what}: region not configured in sns.sigv4.region or in default credentials chain "
                          "(AWS_REGION, or region in the profile of the AWS config file)")
    if cfg.access_key:
        secret = secrets.resolve(cfg.secret_key, "", f"{what}: sigv4.secret_key")
        return AwsCredentials(cfg.access_key, secret), region
    env_key, env_secret = environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not profile_name and env_key and env_secret:
        return AwsCredentials(env_key, env_secret, environ.get("AWS_SESSION_TOKEN", "")), region
    key, secret = profile.get("aws_access_key_id", ""), profile.get("aws_secret_access_key", "")
    if key and secret:
        return AwsCredentials(key, secret, profile.get("aws_session_token", "")), region
    name = profile_name or "default"
    unsupported = [k for k in _UNSUPPORTED_PROFILE_KEYS if k in profile]
    if unsupported:
        raise SecretError(f"{what}: AWS profile {name!r} gets its credentials through {unsupported[0]}, which "
                          "Tocsin does not support; give the profile aws_access_key_id and aws_secret_access_key, "
                          "or use sigv4.role_arn")
    raise SecretError(f"{what}: no AWS credentials found: set sigv4.access_key and sigv4.secret_key, "
                      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key "
                      f"in profile {name!r} of the shared credentials file (instance and container roles, SSO and "
                      "web identity are not supported)")


def service_endpoint(service: str, region: str, environ: Mapping[str, str]) -> str:
    """AWS's endpoint for ``service`` in ``region``, or the ``AWS_ENDPOINT_URL_<SERVICE>`` /
    ``AWS_ENDPOINT_URL`` override the AWS SDKs honour."""
    override = environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or environ.get("AWS_ENDPOINT_URL")
    if override:
        return override
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region}.{suffix}/"


def sts_endpoint(region: str, fips: bool, environ: Mapping[str, str]) -> str:
    if fips and not (environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL")):
        return f"https://sts-fips.{region}.amazonaws.com/"
    return service_endpoint("sts", region, environ)


def parse_assume_role(body: bytes, now: float) -> AwsCredentials:
    """The temporary credentials of an STS ``AssumeRoleResponse``."""
    text = body.decode("utf-8", "replace")
    key, secret = _xml_text(text, "AccessKeyId"), _xml_text(text, "SecretAccessKey")
    if not key or not secret:
        raise AwsError(200, "InvalidResponse", "STS AssumeRole answered without credentials")
    expires: float | None = None
    when = _xml_text(text, "Expiration")
    if when:
        try:
            expires = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            expires = now + 900  # the shortest session STS grants
    return AwsCredentials(key, secret, _xml_text(text, "SessionToken"), expires)


def session_name(now: float) -> str:
    return f"tocsin-{int(now * 1000)}"
