"""Value types and scalar converters used by the config model.

A converter takes the YAML scalar's text and returns the typed value or raises
``ValueError`` with a message; the decoder adds the file, line and field path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from contracts.matchers import go_quote

__all__ = [
    "Conv",
    "HostPort",
    "InclusiveRange",
    "Raw",
    "Secret",
    "canonical_mime_header",
    "check_label_name",
    "check_legacy_label_name",
    "parse_host_port",
    "parse_secret_template_url",
    "parse_secret_url",
    "parse_url",
]

_q = go_quote


class Secret:
    """A secret string; ``repr()`` and ``str()`` never show it, ``.value`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<secret>')"

    def __str__(self) -> str:
        return "<secret>"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class Raw(msgspec.Struct, frozen=True):
    """A mapping kept as loaded (integrations Tocsin does not deliver, opaque sections).

    Its ``repr()`` lists only the keys: such sections routinely hold credentials.
    """

    data: dict[str, Any]

    def __repr__(self) -> str:
        return f"Raw(keys={sorted(self.data)!r})"


class HostPort(msgspec.Struct, frozen=True):
    """A ``host:port`` address (SMTP smarthost)."""

    host: str
    port: str

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class InclusiveRange(msgspec.Struct, frozen=True):
    """``begin:end`` with both ends included (weekdays, days of month, months, years)."""

    begin: int
    end: int

    def __str__(self) -> str:
        return str(self.begin) if self.begin == self.end else f"{self.begin}:{self.end}"


@dataclass(frozen=True)
class Conv:
    """Decoder directive attached with ``Annotated``: parse scalars with ``fn``.

    ``each``: the node is a sequence and ``fn`` applies to every item; ``flatten``: ``fn``
    returns a list per item and the results are concatenated.
    """

    fn: Callable[[str], Any]
    each: bool = False
    flatten: bool = False


def parse_url(text: str) -> str:
    """An absolute http(s) URL with a host, as Alertmanager's ``config.URL``."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {_q(parts.scheme)} for URL")
    if not parts.netloc:
        raise ValueError("missing host for URL")
    return text


def parse_secret_url(text: str) -> Secret:
    # "<secret>" is what Alertmanager prints for a redacted URL; it loads back as a placeholder.
    if text == "<secret>":
        return Secret(text)
    try:
        return Secret(parse_url(text))
    except ValueError as exc:  # the message must not echo the secret
        raise ValueError(str(exc)) from None


def parse_secret_template_url(text: str) -> Secret:
    """A secret URL that may contain Go template syntax; only plain URLs are checked."""
    if text in ("", "<secret>") or "{{" in text:
        return Secret(text)
    try:
        parse_url(text)
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    return Secret(text)


def parse_host_port(text: str) -> HostPort | None:
    """Go's ``net.SplitHostPort`` plus Alertmanager's non-empty port rule."""
    if text == "":
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"address {text}: missing ']' in address")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {text}: missing port in address")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {text}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {text}: too many colons in address")
    if not port:
        raise ValueError(f"address {_q(text)}: port cannot be empty")
    return HostPort(host, port)


_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def check_legacy_label_name(name: str) -> str | None:
    """Error text when ``name`` is not a classic Prometheus label name (``match`` keys)."""
    return None if _LEGACY_LABEL.fullmatch(name) else f"invalid label name {_q(name)}"


def check_label_name(name: str) -> str | None:
    """Alertmanager's default (UTF-8) label name rule: any non-empty string."""
    return None if name else "label name must not be empty"


def canonical_mime_header(key: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey`` (``content-type`` -> ``Content-Type``)."""
    if not key or any(ch == " " or not (ch.isascii() and (ch.isalnum() or ch in "!#$%&'*+-.^_`|~")) for ch in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))
