"""The JWT verification keys the ``auth: jwt:`` settings name: a JWKS file or an HMAC secret file.

Read when the configuration loads (a bad file is a configuration error with its line); a
JWKS URL is fetched by the API on first use (``pipeline.application.api.auth.jwt``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import jwt
from jwt import PyJWK

from pipeline.application.config.auth import HMAC_ALGORITHMS, JwtConfig
from pipeline.foundation.amconfig import ConfigError

__all__ = ["FileKeys", "KeySource", "VerifyKey", "keys_from_jwks", "keys_from_secret", "load_key_files"]

log = logging.getLogger(__name__)

_KTY_ALGORITHMS: Final[dict[str, frozenset[str]]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "oct": HMAC_ALGORITHMS,
    "OKP": frozenset({"EdDSA"}),
}
_EC_ALGORITHMS: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_MIN_HMAC_BYTES: Final = 32  # RFC 7518 3.2: a key at least as long as the hash


@dataclass(frozen=True)
class VerifyKey:
    """A verification key: its ``kid`` (may be absent), the algorithms it may verify, the key."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any


def _key_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    alg = jwk.get("alg")
    if isinstance(alg, str) and alg:
        return frozenset({alg})
    kty = jwk.get("kty")
    if kty == "EC":
        ec = _EC_ALGORITHMS.get(str(jwk.get("crv", "")))
        return frozenset({ec}) if ec else frozenset()
    return _KTY_ALGORITHMS.get(str(kty), frozenset())


def keys_from_jwks(document: Any, allowed: Sequence[str]) -> list[VerifyKey]:
    """The signing keys of a JWKS document usable with the ``allowed`` algorithms.

    Encryption keys (``use: enc``) and keys of other algorithms are skipped; a key that
    cannot be read is skipped with a log line. Raises ``ValueError`` when none is left.
    """
    raw = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(raw, list):
        raise ValueError('a JWKS document is an object with a "keys" list')
    out: list[VerifyKey] = []
    for i, jwk in enumerate(raw):
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        algorithms = _key_algorithms(jwk) & frozenset(allowed)
        if not algorithms:
            continue
        kid = jwk.get("kid")
        try:
            key = PyJWK(jwk, algorithm=sorted(algorithms)[0]).key
        except jwt.PyJWTError as exc:
            log.warning("JWKS key %d (kid %r) skipped: %s", i, kid, exc)
            continue
        if jwk.get("kty") == "oct" and len(key) < _MIN_HMAC_BYTES:
            log.warning(
                "JWKS key %d (kid %r) skipped: HMAC keys need at least %d bytes", i, kid, _MIN_HMAC_BYTES
            )
            continue
        out.append(VerifyKey(kid if isinstance(kid, str) else None, algorithms, key))
    if not out:
        raise ValueError(f"the JWKS holds no signing key for {', '.join(allowed)}")
    return out


def keys_from_secret(secret: bytes, allowed: Sequence[str]) -> list[VerifyKey]:
    if len(secret) < _MIN_HMAC_BYTES:
        raise ValueError(f"the HMAC secret must be at least {_MIN_HMAC_BYTES} bytes")
    return [VerifyKey(None, frozenset(allowed) & HMAC_ALGORITHMS, secret)]


class KeySource(Protocol):
    async def keys(self, now: float, *, refresh: bool = False) -> Sequence[VerifyKey]:
        """The current keys; ``refresh``: a token named an unknown key, reload if allowed."""
        ...


class FileKeys:
    """Keys loaded once (a JWKS file or an HMAC secret file)."""

    def __init__(self, keys: Sequence[VerifyKey]) -> None:
        self._keys = list(keys)

    async def keys(self, now: float, *, refresh: bool = False) -> Sequence[VerifyKey]:
        return self._keys


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def load_key_files(config: JwtConfig, *, base_dir: str = ".") -> FileKeys:
    """The keys of ``config``'s ``jwks_file`` or ``secret_file``, read now (``ConfigError`` names the file)."""
    if config.jwks_file:
        path = os.path.join(base_dir, config.jwks_file)
        try:
            return FileKeys(keys_from_jwks(json.loads(_read(path)), config.algorithms))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ConfigError([f"{path}: {exc}"]) from None
    path = os.path.join(base_dir, config.secret_file)
    try:
        return FileKeys(keys_from_secret(_read(path).strip(), config.algorithms))
    except ValueError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
