"""Test keys and tokens for the JWT tests: real RSA/EC keys generated per test session."""

from __future__ import annotations

import functools
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from pipeline.application.config.auth import JwtConfig

ISSUER = "https://idp.test/"
AUDIENCE = "tocsin"
NOW = 1_750_000_000.0
HMAC_SECRET = b"0123456789abcdef0123456789abcdef-hmac"


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(name: str, kind: str = "RSA", *, alg: bool = True) -> dict[str, Any]:
    """The public JWK of test key ``name`` with ``kid`` = name."""
    if kind == "RSA":
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(rsa_key(name).public_key(), as_dict=True)
        if alg:
            jwk["alg"] = "RS256"
    elif kind == "EC":
        jwk = ECAlgorithm.to_jwk(ec_key(name).public_key(), as_dict=True)
        if alg:
            jwk["alg"] = "ES256"
    else:
        jwk = HMACAlgorithm.to_jwk(HMAC_SECRET, as_dict=True)
        if alg:
            jwk["alg"] = "HS256"
    jwk["kid"] = name
    jwk["use"] = "sig"
    return jwk


def jwks(*jwks_: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(jwks_)}


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set at ``NOW``; ``None`` values remove a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
        "org": "acme",
        "role": "responder",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any],
    key: str = "k1",
    kind: str = "RSA",
    *,
    kid: str | None = "k1",
    alg: str | None = None,
) -> str:
    headers = {"kid": kid} if kid is not None else {}
    if kind == "RSA":
        return jwt.encode(payload, rsa_key(key), algorithm=alg or "RS256", headers=headers)
    if kind == "EC":
        return jwt.encode(payload, ec_key(key), algorithm=alg or "ES256", headers=headers)
    return jwt.encode(payload, HMAC_SECRET, algorithm=alg or "HS256", headers=headers)


def jwt_config(**overrides: Any) -> JwtConfig:
    base: dict[str, Any] = {
        "jwks_file": "jwks.json",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256", "ES256"],
    }
    base.update(overrides)
    return JwtConfig(**base)
