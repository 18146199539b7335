"""The ``auth:`` and ``limits:`` settings: strict decoding with line-numbered errors."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.application.config.auth import DEFAULT_PUBLIC_PATHS, AuthConfig, JwtConfig, auth_config_problems
from pipeline.application.config.limits import LimitsConfig
from pipeline.foundation.amconfig.decode import Decoder, compose


def decode(text: str, tp: Any = AuthConfig) -> tuple[Any, list[str]]:
    decoder = Decoder("tocsin.yml")
    node = compose(text)
    assert node is not None
    value = decoder.decode(node, tp, "tocsin.auth")
    return value, decoder.errors


def test_defaults_are_alertmanager_compatible() -> None:
    config, errors = decode("mode: none\n")
    assert errors == []
    assert config.methods == frozenset() and config.public_paths == list(DEFAULT_PUBLIC_PATHS)
    assert auth_config_problems(AuthConfig()) == []


def test_a_full_config_decodes() -> None:
    text = """\
mode: static+jwt+mtls
public_paths: [/-/healthy, /ui/*]
static: {tokens_file: tokens.yml}
jwt:
  jwks_url: https://idp.test/jwks
  algorithms: [RS256, ES256]
  issuer: https://idp.test/
  audience: tocsin
  leeway: 1m
  roles: {oncall: responder}
mtls: {header: X-Client-Subject, role: responder}
"""
    config, errors = decode(text)
    assert errors == []
    assert config.methods == frozenset({"static", "jwt", "mtls"})
    assert config.jwt.leeway == 60.0 and config.jwt.roles == {"oncall": "responder"}
    assert config.mtls.header == "X-Client-Subject"


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("mode: basic\n", 'tocsin.yml:1: tocsin.auth.mode: unknown mode "basic"'),
        (
            "mode: jwt+jwt\njwt: {secret_file: s, algorithms: [HS256], issuer: i, audience: a}\n",
            "names a method twice",
        ),
        ("mode: static\n", 'tocsin.yml:1: tocsin.auth.static: mode "static" needs the "static" section'),
        ("static: {tokens_file: t}\n", 'tocsin.yml:1: tocsin.auth.static: section "static" is set but mode'),
        ("mode: static\nstatic: {}\n", 'missing required field "tokens_file"'),
        (
            "mode: none\npublic_paths: [metrics]\n",
            'tocsin.yml:2: tocsin.auth.public_paths: "metrics" must start',
        ),
        ("mode: none\nusers: []\n", 'tocsin.yml:2: tocsin.auth: unknown field "users"'),
        ("mode: jwt\njwt: {issuer: i, audience: a}\n", "exactly one of jwks_file, jwks_url and secret_file"),
        (
            "mode: jwt\njwt: {jwks_file: a, jwks_url: 'https://x/', issuer: i, audience: a}\n",
            "exactly one of",
        ),
        (
            "mode: jwt\njwt: {jwks_url: 'ftp://x/', issuer: i, audience: a}\n",
            "tocsin.auth.jwt.jwks_url: unsupported",
        ),
        ("mode: jwt\njwt:\n  jwks_file: a\n  audience: a\n", "tocsin.yml:3: tocsin.auth.jwt.issuer: missing"),
        ("mode: jwt\njwt: {jwks_file: a, issuer: i}\n", "tocsin.auth.jwt.audience: missing"),
        (
            "mode: jwt\njwt: {jwks_file: a, issuer: i, audience: a, algorithms: [none]}\n",
            'unsupported algorithm "none"',
        ),
        ("mode: jwt\njwt: {secret_file: s, issuer: i, audience: a}\n", "a secret_file verifies HS256"),
        ("mode: jwt\njwt: {jwks_file: a, issuer: i, audience: a, roles: {x: root}}\n", 'unknown role "root"'),
        ("mode: jwt\njwt: {jwks_file: a, issuer: i, audience: a, leeway: 30}\n", "tocsin.auth.jwt.leeway"),
        (
            "mode: jwt\njwt: {jwks_file: a, issuer: i, audience: a, org_claim: ''}\n",
            "org_claim: must not be empty",
        ),
        ("mode: mtls\nmtls: {subject_attribute: XYZ}\n", 'unknown attribute "XYZ"'),
        ("mode: mtls\nmtls: {role: boss}\n", 'tocsin.auth.mtls.role: unknown role "boss"'),
    ],
    ids=[
        "unknown-mode",
        "method-twice",
        "missing-section",
        "unused-section",
        "missing-tokens-file",
        "relative-public-path",
        "unknown-key",
        "no-key-source",
        "two-key-sources",
        "bad-url",
        "no-issuer",
        "no-audience",
        "alg-none",
        "secret-with-rsa",
        "bad-role-map",
        "leeway-not-duration",
        "empty-claim",
        "bad-dn-attribute",
        "bad-mtls-role",
    ],
)
def test_errors_name_line_and_field(text: str, expect: str) -> None:
    _, errors = decode(text)
    assert any(expect in e for e in errors), errors


def test_problems_of_a_config_built_in_code() -> None:
    config = AuthConfig(mode="jwt", jwt=JwtConfig(jwks_file="a", issuer="", audience="x"))
    assert auth_config_problems(config) == ['auth.jwt.issuer: missing required field "issuer"']


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("rate: -1\n", "rate: must not be negative"),
        ("burst: 5\n", "a burst needs a rate"),
        ("max_body: 1\n", 'unknown field "max_body"'),
        ("max_body_bytes: 1k\n", "expected an integer"),
    ],
    ids=["negative", "burst-without-rate", "unknown", "not-int"],
)
def test_limits_errors(text: str, expect: str) -> None:
    _, errors = decode(text, LimitsConfig)
    assert any(expect in e for e in errors), errors


@pytest.mark.parametrize(
    ("rate", "burst", "size"),
    [(0.5, 0, 1.0), (2.5, 0, 3.0), (10, 50, 50.0)],
    ids=["slow", "fractional", "explicit"],
)
def test_bucket_size(rate: float, burst: int, size: float) -> None:
    assert LimitsConfig(rate=rate, burst=burst).bucket_size == size
