"""Static bearer tokens from a file: a YAML or JSON list of entries.

::

    - token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      subject: prometheus
      orgs: [acme]
      role: viewer
      push: true
    - token: s3cr3t             # the token itself; prefer token_sha256 so the file holds no secret
      subject: ops
      orgs: ["*"]               # every organisation
      role: admin
      allow_union: true

Tokens are looked up by their SHA-256, so the table never holds a plain token either.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Self

import yaml

from contracts.matchers import go_quote
from pipeline.application.config.identity import ALL, ROLES, Identity, as_role, check_org_name
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.amconfig.decode import Decoder, compose
from pipeline.foundation.amconfig.model import Node, Problem
from pipeline.foundation.amconfig.values import Secret

_q = go_quote

__all__ = ["StaticToken", "TokenTable", "load_static_tokens", "parse_static_tokens", "token_digest"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def token_digest(token: str) -> str:
    """The lower-case hex SHA-256 of a token, as ``token_sha256`` holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaticToken(Node, frozen=True, forbid_unknown_fields=True):
    """One entry of the tokens file."""

    subject: str
    orgs: list[str]
    token: Secret | None = None
    token_sha256: str = ""
    role: str = "viewer"
    push: bool = False
    allow_union: bool = False

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if (self.token is not None) == bool(self.token_sha256):
            problems.append((None, "exactly one of token and token_sha256 must be given"))
        if self.token is not None and not self.token.value:
            problems.append(("token", "must not be empty"))
        if self.token_sha256 and not _HEX64.fullmatch(self.token_sha256.lower()):
            problems.append(("token_sha256", "must be 64 hex digits (the SHA-256 of the token)"))
        if not self.subject:
            problems.append(("subject", "must not be empty"))
        if self.role not in ROLES:
            problems.append(("role", f"unknown role {_q(self.role)} (one of {', '.join(ROLES)})"))
        if not self.orgs:
            problems.append(("orgs", 'name at least one organisation, or "*" for all'))
        elif "*" in self.orgs and len(self.orgs) > 1:
            problems.append(("orgs", '"*" (every organisation) stands alone'))
        for org in self.orgs:
            bad = check_org_name(org) if org != "*" else None
            if bad:
                problems.append(("orgs", f"{bad}: {_q(org)}"))
        return self, problems

    @property
    def digest(self) -> str:
        return token_digest(self.token.value) if self.token is not None else self.token_sha256.lower()

    def identity(self) -> Identity:
        orgs = ALL if self.orgs == ["*"] else frozenset(self.orgs)
        return Identity(
            self.subject,
            orgs,
            as_role(self.role),
            can_push=self.push,
            allow_union=self.allow_union,
            method="static",
        )


class TokenTable:
    """Token digest -> identity."""

    def __init__(self, by_digest: Mapping[str, Identity]) -> None:
        self._by_digest = dict(by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Identity | None:
        return self._by_digest.get(token_digest(token))


def parse_static_tokens(text: str, filename: str = "<tokens>") -> TokenTable:
    """The table of a tokens file's text; ``ConfigError`` lists every problem with its line."""
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise ConfigError([f"{where}: syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}: syntax error: {exc}"]) from None
    if root is None:
        raise ConfigError([f"{filename}: no tokens (expected a list of token entries)"])
    decoder = Decoder(filename)
    entries = decoder.decode(root, list[StaticToken], "")
    if decoder.errors:
        raise ConfigError(decoder.errors)
    by_digest: dict[str, Identity] = {}
    for i, entry in enumerate(entries):
        if entry.digest in by_digest:
            decoder.error_at(
                entry,
                "token" if entry.token is not None else "token_sha256",
                f"entry [{i}] repeats the token of {_q(by_digest[entry.digest].subject)}",
            )
            continue
        by_digest[entry.digest] = entry.identity()
    if decoder.errors:
        raise ConfigError(decoder.errors)
    return TokenTable(by_digest)


def load_static_tokens(path: str | os.PathLike[str]) -> TokenTable:
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}: {exc}"]) from None
    return parse_static_tokens(text, name)
