"""JWT bearer tokens: verification against a key set, and the key sources (files, URL).

Key files are read by ``pipeline.application.config.jwt_keys`` (at configuration load); a
JWKS URL is fetched here, on first use.

``verify_jwt`` is pure: the time is an argument and the keys are given, so every check
(signature, algorithm, ``kid``, issuer, audience, expiry with leeway, claims) is testable.
PyJWT checks the signature, issuer and audience; the time checks are done here against
the given ``now`` instead of PyJWT's clock.

The algorithm must be configured *and* fit the key that verifies it (a key's own ``alg``,
else its type), so a token cannot choose to be checked as HS256 with an RSA public key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
import httpx
import jwt

from pipeline.application.api.auth.errors import Forbidden, Unauthenticated, Unavailable, UnknownKey
from pipeline.application.config.auth import JwtConfig
from pipeline.application.config.identity import ALL, AllOrgs, Identity, check_org_name, highest_role
from pipeline.application.config.jwt_keys import KeySource, VerifyKey, keys_from_jwks, load_key_files

__all__ = ["RemoteJwks", "claim", "load_key_source", "verify_jwt"]

log = logging.getLogger(__name__)


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """Claim ``name``: a top-level claim of that exact name, else a dotted path into objects."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


_PYJWT_REASONS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.MissingRequiredClaimError, "missing claim"),
)


def _check_signature(token: str, alg: str, candidates: list[VerifyKey], config: JwtConfig) -> dict[str, Any]:
    options: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"]}
    for candidate in candidates:
        try:
            return jwt.decode(
                token,
                candidate.key,
                algorithms=[alg],
                audience=config.audience,
                issuer=config.issuer,
                options=options,
            )
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            continue
        except jwt.PyJWTError as exc:
            for kind, reason in _PYJWT_REASONS:
                if isinstance(exc, kind):
                    raise Unauthenticated(f"invalid token: {reason} ({exc})") from None
            raise Unauthenticated(f"invalid token: {exc}") from None
    raise Unauthenticated("invalid token: signature does not verify")


def verify_jwt(token: str, keys: Sequence[VerifyKey], config: JwtConfig, now: float) -> Identity:
    """The identity a JWT grants at time ``now``.

    ``Unauthenticated`` (401) when the token does not check out, ``UnknownKey`` (a 401
    worth a key refresh) when its ``kid`` is not in ``keys``, ``Forbidden`` (403) when it
    checks out but grants no organisation or no role.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token: not a JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in config.algorithms:
        raise Unauthenticated(f"invalid token: algorithm {alg!r} is not accepted")
    kid = header.get("kid")
    if kid is not None:
        by_kid = [k for k in keys if k.kid == kid]
        if not by_kid:
            raise UnknownKey(f"invalid token: unknown key id {kid!r}")
        candidates = [k for k in by_kid if alg in k.algorithms]
    else:  # no kid: any key that may verify this algorithm
        candidates = [k for k in keys if alg in k.algorithms]
    if not candidates:
        raise Unauthenticated(f"invalid token: no key verifies algorithm {alg!r}")
    claims = _check_signature(token, alg, candidates, config)

    exp = _number(claims.get("exp"))
    if exp is None:
        raise Unauthenticated("invalid token: exp is not a number")
    if now >= exp + config.leeway:
        raise Unauthenticated("invalid token: expired")
    if "nbf" in claims:
        nbf = _number(claims["nbf"])
        if nbf is None:
            raise Unauthenticated("invalid token: nbf is not a number")
        if now + config.leeway < nbf:
            raise Unauthenticated("invalid token: not valid yet")

    subject = claim(claims, config.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated(f"invalid token: no {config.subject_claim!r} claim")

    org_values = _strings(claim(claims, config.org_claim))
    if not org_values:
        raise Forbidden(f"{subject}: the token names no organisation ({config.org_claim!r} claim)")
    orgs: frozenset[str] | AllOrgs
    if "*" in org_values:
        if not config.allow_all_orgs:
            raise Forbidden(f"{subject}: the token claims every organisation, which is not allowed")
        orgs = ALL
    else:
        for org in org_values:
            bad = check_org_name(org)
            if bad:
                raise Forbidden(f"{subject}: {bad}: {org!r} ({config.org_claim!r} claim)")
        orgs = frozenset(org_values)

    role_values = _strings(claim(claims, config.role_claim)) or []
    mapped = [config.roles[v] for v in role_values if v in config.roles] if config.roles else role_values
    role = highest_role(mapped)
    if role is None:
        raise Forbidden(f"{subject}: the token grants no role ({config.role_claim!r} claim)")

    return Identity(
        subject,
        orgs,
        role,
        can_push=claim(claims, config.push_claim) is True,
        allow_union=claim(claims, config.union_claim) is True,
        method="jwt",
    )


# --------------------------------------------------------------------------- key sources


class RemoteJwks:
    """A JWKS fetched from a URL, kept ``refresh`` seconds, reloaded early (at most every
    ``min_refresh`` seconds) when a token names an unknown key. A failed fetch keeps the
    previous keys; with none at all, requests get 503.
    """

    def __init__(
        self,
        url: str,
        algorithms: Sequence[str],
        *,
        refresh: float,
        min_refresh: float,
        timeout: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.algorithms = list(algorithms)
        self.refresh = refresh
        self.min_refresh = min_refresh
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._keys: list[VerifyKey] = []
        self._fetched_at: float | None = None  # last success
        self._tried_at: float | None = None  # last attempt
        self._lock = anyio.Lock()

    def _due(self, now: float, refresh: bool) -> bool:
        if self._tried_at is not None and now - self._tried_at < self.min_refresh:
            return False  # never hammer the identity provider, whatever tokens arrive
        return self._fetched_at is None or now - self._fetched_at >= self.refresh or refresh

    async def keys(self, now: float, *, refresh: bool = False) -> Sequence[VerifyKey]:
        if self._due(now, refresh):
            async with self._lock:
                if self._due(now, refresh):  # another request may have fetched meanwhile
                    await self._fetch(now)
        if not self._keys:
            raise Unavailable("authentication keys are unavailable")
        return self._keys

    async def _fetch(self, now: float) -> None:
        self._tried_at = now
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            self._keys = keys_from_jwks(response.json(), self.algorithms)
            self._fetched_at = now
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("fetching JWKS from %s failed: %s", self.url, exc)

    async def aclose(self) -> None:
        await self._client.aclose()


def load_key_source(
    config: JwtConfig, *, base_dir: str = ".", client: httpx.AsyncClient | None = None
) -> KeySource:
    """The key source ``config`` names (files are read now; a URL on first use)."""
    if config.jwks_url:
        return RemoteJwks(
            config.jwks_url,
            config.algorithms,
            refresh=config.jwks_refresh,
            min_refresh=config.jwks_min_refresh,
            timeout=config.jwks_timeout,
            client=client,
        )
    return load_key_files(config, base_dir=base_dir)
