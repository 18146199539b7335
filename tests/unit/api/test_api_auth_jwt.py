"""JWT verification (pipeline.application.api.auth.jwt): signature, kid, algorithm, issuer, audience, time, claims."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_auth_keys import (
    HMAC_SECRET,
    NOW,
    claims,
    jwks,
    jwt_config,
    public_jwk,
    rsa_key,
    sign,
)
from cryptography.hazmat.primitives import serialization

from pipeline.application.api.auth.errors import ApiError, Forbidden, Unauthenticated, Unavailable, UnknownKey
from pipeline.application.api.auth.jwt import RemoteJwks, claim, verify_jwt
from pipeline.application.config.identity import ALL
from pipeline.application.config.jwt_keys import keys_from_jwks, keys_from_secret

CONFIG = jwt_config()
KEYS = keys_from_jwks(jwks(public_jwk("k1"), public_jwk("k2"), public_jwk("e1", "EC")), CONFIG.algorithms)


def test_valid_token_gives_the_claimed_identity() -> None:
    token = sign(claims(org=["acme", "beta"], role="admin", push=True, allow_union=True))
    identity = verify_jwt(token, KEYS, CONFIG, NOW)
    assert (identity.subject, identity.orgs, identity.role) == ("alice", frozenset({"acme", "beta"}), "admin")
    assert identity.can_push and identity.allow_union and identity.method == "jwt"


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (sign(claims(), key="k2", kid="k1"), 401, "signature"),  # signed by k2, claims to be k1
        (sign(claims(), key="other", kid=None), 401, "signature"),  # no kid: every RSA key tried, none fits
        (sign(claims(aud="someone-else")), 401, "audience"),
        (sign(claims(aud=None)), 401, "aud"),
        (sign(claims(iss="https://evil.test/")), 401, "issuer"),
        (sign(claims(iss=None)), 401, "iss"),
        (sign(claims(exp=int(NOW) - 31)), 401, "expired"),  # past the 30s leeway
        (sign(claims(exp=None)), 401, "exp"),
        (sign(claims(exp="soon")), 401, "exp"),
        (sign(claims(nbf=int(NOW) + 31)), 401, "not valid yet"),
        (sign(claims(sub=None)), 401, "sub"),
        (sign(claims(org=None)), 403, "no organisation"),
        (sign(claims(org=[])), 403, "no organisation"),
        (sign(claims(org="*")), 403, "every organisation"),
        (sign(claims(org="a|b")), 403, "'|'"),
        (sign(claims(role=None)), 403, "no role"),
        (sign(claims(role="superuser")), 403, "no role"),
        (sign(claims(), kid="nope"), 401, "unknown key id"),
        (sign(claims(), kind="HS", kid=None), 401, "algorithm 'HS256' is not accepted"),
        ("not.a.jwt", 401, "not a JWT"),
        ("garbage", 401, "not a JWT"),
    ],
    ids=[
        "wrong-signature-kid",
        "wrong-signature-no-kid",
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "no-issuer",
        "expired",
        "no-exp",
        "exp-not-number",
        "not-yet-valid",
        "no-subject",
        "no-org-claim",
        "empty-org-claim",
        "wildcard-org-refused",
        "bad-org-name",
        "no-role-claim",
        "unknown-role",
        "unknown-kid",
        "alg-not-configured",
        "malformed",
        "not-three-parts",
    ],
)
def test_bad_tokens_are_refused(token: str, status: int, reason: str) -> None:
    with pytest.raises(ApiError) as info:
        verify_jwt(token, KEYS, CONFIG, NOW)
    assert info.value.status == status
    assert reason in info.value.message
    if status == 401:
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer ")


def test_unknown_kid_is_the_refreshable_error() -> None:
    with pytest.raises(UnknownKey):
        verify_jwt(sign(claims(), kid="k9"), KEYS, CONFIG, NOW)


@pytest.mark.parametrize(
    ("exp_offset", "nbf_offset", "ok"),
    [
        (1, None, True),
        (0, None, False),
        (-29, None, True),
        (-30, None, False),
        (300, 29, True),
        (300, 30, True),
        (300, 31, False),
    ],
    ids=[
        "exp-in-1s",
        "exp-now-no-leeway-0",
        "expired-within-leeway",
        "expired-at-leeway",
        "nbf-within-leeway",
        "nbf-at-leeway",
        "nbf-beyond-leeway",
    ],
)
def test_time_checks_use_the_given_time_and_leeway(exp_offset: int, nbf_offset: int | None, ok: bool) -> None:
    config = jwt_config(leeway=0.0 if exp_offset == 0 else 30.0)
    token = sign(claims(exp=int(NOW) + exp_offset, nbf=None if nbf_offset is None else int(NOW) + nbf_offset))
    if ok:
        assert verify_jwt(token, KEYS, config, NOW).subject == "alice"
    else:
        with pytest.raises(Unauthenticated):
            verify_jwt(token, KEYS, config, NOW)


def test_the_same_token_expires_as_time_passes() -> None:
    token = sign(claims(exp=int(NOW) + 60))
    assert verify_jwt(token, KEYS, CONFIG, NOW + 60 + 29).subject == "alice"
    with pytest.raises(Unauthenticated, match="expired"):
        verify_jwt(token, KEYS, CONFIG, NOW + 60 + 30)


@pytest.mark.parametrize(
    ("key", "kind", "kid"),
    [("k1", "RSA", "k1"), ("k2", "RSA", "k2"), ("e1", "EC", "e1"), ("k2", "RSA", None), ("e1", "EC", None)],
    ids=["rsa-k1", "rsa-k2", "ec-e1", "rsa-no-kid", "ec-no-kid"],
)
def test_the_key_is_selected_by_kid_among_several(key: str, kind: str, kid: str | None) -> None:
    token = sign(claims(sub=f"by-{key}"), key=key, kind=kind, kid=kid)
    assert verify_jwt(token, KEYS, CONFIG, NOW).subject == f"by-{key}"


def test_a_kid_naming_a_key_of_another_algorithm_is_refused() -> None:
    token = sign(claims(), key="e1", kind="EC", kid="k1")  # ES256 token pointing at the RSA key
    with pytest.raises(Unauthenticated, match="no key verifies"):
        verify_jwt(token, KEYS, CONFIG, NOW)


def test_hs256_with_the_rsa_public_key_as_secret_is_refused() -> None:
    """The classic algorithm confusion: HS256 'signed' with the server's public key."""
    pem = (
        rsa_key("k1")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib
    import hmac
    import json
    from base64 import urlsafe_b64encode

    def b64(data: bytes) -> str:
        return urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    sig = b64(hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    config = jwt_config(algorithms=["RS256", "HS256"])
    with pytest.raises(Unauthenticated):
        verify_jwt(f"{header}.{body}.{sig}", KEYS, config, NOW)


def test_hmac_secret_keys() -> None:
    config = jwt_config(jwks_file="", secret_file="secret", algorithms=["HS256"])
    keys = keys_from_secret(HMAC_SECRET, config.algorithms)
    assert verify_jwt(sign(claims(), kind="HS", kid=None), keys, config, NOW).subject == "alice"
    with pytest.raises(Unauthenticated):
        verify_jwt(sign(claims(), kind="RSA", kid=None), keys, jwt_config(algorithms=["HS256", "RS256"]), NOW)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        keys_from_secret(b"short", ["HS256"])


def test_jwks_keeps_only_usable_signing_keys() -> None:
    enc = dict(public_jwk("k3"), use="enc")
    rsa_no_alg = public_jwk("k4", alg=False)
    document = jwks(
        enc, rsa_no_alg, public_jwk("e1", "EC"), {"kty": "RSA", "kid": "broken", "n": "x", "e": "AQAB"}
    )
    keys = keys_from_jwks(document, ["RS256"])
    assert [k.kid for k in keys] == ["k4"]  # enc key, EC key (not allowed) and the broken key skipped
    assert verify_jwt(sign(claims(), key="k4", kid="k4"), keys, jwt_config(algorithms=["RS256"]), NOW)
    with pytest.raises(ValueError, match="no signing key"):
        keys_from_jwks(jwks(enc), ["RS256"])
    with pytest.raises(ValueError, match="keys"):
        keys_from_jwks(["not", "an", "object"], ["RS256"])


@pytest.mark.parametrize(
    ("overrides", "token_claims", "expect"),
    [
        ({}, {"role": ["viewer", "admin"]}, "admin"),
        ({"roles": {"oncall": "responder", "sre": "admin"}}, {"role": ["oncall"]}, "responder"),
        ({"roles": {"oncall": "responder"}}, {"role": ["oncall", "admin"]}, "responder"),  # unmapped ignored
        (
            {"role_claim": "realm_access.roles"},
            {"role": None, "realm_access": {"roles": ["viewer"]}},
            "viewer",
        ),
        (
            {"role_claim": "https://tocsin.test/role"},
            {"role": None, "https://tocsin.test/role": "admin"},
            "admin",
        ),
    ],
    ids=["highest-wins", "mapped", "only-mapped-count", "dotted-path", "namespaced-claim"],
)
def test_role_claims(overrides: dict[str, Any], token_claims: dict[str, Any], expect: str) -> None:
    config = jwt_config(**overrides)
    assert verify_jwt(sign(claims(**token_claims)), KEYS, config, NOW).role == expect


def test_org_claim_name_and_wildcard_are_configurable() -> None:
    config = jwt_config(org_claim="tenant", allow_all_orgs=True)
    assert verify_jwt(sign(claims(org=None, tenant="*")), KEYS, config, NOW).orgs is ALL
    assert verify_jwt(sign(claims(org=None, tenant="t1")), KEYS, config, NOW).orgs == frozenset({"t1"})
    with pytest.raises(Forbidden):
        verify_jwt(sign(claims(tenant=None)), KEYS, config, NOW)  # "org" is not the configured claim


@pytest.mark.parametrize("value", ["true", 1, "yes", None], ids=["string", "one", "yes", "absent"])
def test_push_and_union_need_a_boolean_true(value: object) -> None:
    identity = verify_jwt(sign(claims(push=value, allow_union=value)), KEYS, CONFIG, NOW)
    assert not identity.can_push and not identity.allow_union


@pytest.mark.parametrize(
    ("data", "name", "expect"),
    [
        ({"a": {"b": 1}}, "a.b", 1),
        ({"a.b": 2, "a": {"b": 1}}, "a.b", 2),
        ({"a": 1}, "a.b", None),
        ({}, "x", None),
    ],
    ids=["nested", "exact-name-first", "through-a-scalar", "absent"],
)
def test_claim_lookup(data: dict[str, Any], name: str, expect: object) -> None:
    assert claim(data, name) == expect


# --------------------------------------------------------------------------- remote JWKS


class FakeIdp:
    def __init__(self) -> None:
        self.document: dict[str, Any] | None = jwks(public_jwk("k1"))
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.document is None:
            return httpx.Response(500)
        return httpx.Response(200, json=self.document)

    def source(self) -> RemoteJwks:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return RemoteJwks(
            "https://idp.test/jwks", ["RS256"], refresh=300, min_refresh=30, timeout=5, client=client
        )


async def test_remote_jwks_is_cached_and_refreshed_on_schedule() -> None:
    idp = FakeIdp()
    source = idp.source()
    assert [k.kid for k in await source.keys(NOW)] == ["k1"]
    await source.keys(NOW + 299)
    assert idp.fetches == 1
    idp.document = jwks(public_jwk("k2"))
    assert [k.kid for k in await source.keys(NOW + 300)] == ["k2"]
    assert idp.fetches == 2


async def test_remote_jwks_refresh_on_demand_is_rate_limited() -> None:
    idp = FakeIdp()
    source = idp.source()
    await source.keys(NOW)
    idp.document = jwks(public_jwk("k1"), public_jwk("k2"))
    assert [k.kid for k in await source.keys(NOW + 10, refresh=True)] == ["k1"]  # within min_refresh
    assert idp.fetches == 1
    assert [k.kid for k in await source.keys(NOW + 30, refresh=True)] == ["k1", "k2"]
    assert idp.fetches == 2


async def test_remote_jwks_failure_keeps_old_keys_and_503_without_any() -> None:
    idp = FakeIdp()
    source = idp.source()
    await source.keys(NOW)
    idp.document = None
    assert [k.kid for k in await source.keys(NOW + 400)] == ["k1"]
    fresh = idp.source()
    with pytest.raises(Unavailable):
        await fresh.keys(NOW)
    idp.document = jwks(public_jwk("k1"))
    with pytest.raises(Unavailable):  # no retry before min_refresh
        await fresh.keys(NOW + 1)
    assert [k.kid for k in await fresh.keys(NOW + 30)] == ["k1"]
