"""The ``auth:`` settings of the API (strict: unknown keys and impossible combinations are errors).

Decoded by ``pipeline.foundation.amconfig.decode.Decoder`` like the rest of the ``tocsin:`` section, so
every problem names its file line; ``auth_config_problems`` runs the same checks on a
config built in code. Secrets never sit in this section: tokens and keys are read from
the files it names.

::

    auth:
      mode: static+jwt          # none (default) | static | jwt | mtls, several joined with "+"
      public_paths: [/-/healthy, /-/ready, /metrics, /, /ui/*]
      static: {tokens_file: tokens.yml}
      jwt:
        jwks_file: jwks.json    # or jwks_url, or secret_file (HS256)
        algorithms: [RS256]
        issuer: https://idp.example.com/
        audience: tocsin
        org_claim: org
        role_claim: role
      mtls: {header: X-Client-Subject, subject_attribute: CN, org_attribute: O, role: viewer}
"""

from __future__ import annotations

from typing import Final, Self

import msgspec

from contracts.matchers import go_quote
from pipeline.application.config.identity import ROLES, check_org_name
from pipeline.foundation.amconfig.model import URL, Node, Problem, PromDuration

_q = go_quote

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_PUBLIC_PATHS",
    "HMAC_ALGORITHMS",
    "METHODS",
    "AuthConfig",
    "JwtConfig",
    "MtlsConfig",
    "StaticConfig",
    "auth_config_problems",
]

METHODS: Final = ("static", "jwt", "mtls")
# "/" and "/ui/*": the web UI's page and assets (pipeline.application.api.ui); its API calls carry credentials
DEFAULT_PUBLIC_PATHS: Final = ("/-/healthy", "/-/ready", "/metrics", "/", "/ui/*")
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_DN_ATTRIBUTES: Final = frozenset(
    {"CN", "O", "OU", "UID", "DC", "L", "ST", "C", "SERIALNUMBER", "EMAILADDRESS"}
)


def _bad_role(role: str) -> str | None:
    return None if role in ROLES else f"unknown role {_q(role)} (one of {', '.join(ROLES)})"


class StaticConfig(Node, frozen=True, forbid_unknown_fields=True):
    """Bearer tokens listed in a file (YAML or JSON list; see ``auth_static``)."""

    tokens_file: str


class JwtConfig(Node, frozen=True, forbid_unknown_fields=True):
    """JWT bearer tokens: signature (one key source), issuer, audience, expiry, claims.

    Claim names may be dotted paths into nested objects (``realm_access.roles``); a claim
    whose full name contains dots (``https://example.com/org``) is found first.
    ``roles`` maps claim values to roles; when empty the values must be role names. The
    highest role found wins. ``push_claim`` / ``union_claim`` must be boolean ``true`` to
    grant pushing / acting for several organisations at once. ``allow_all_orgs``: an org
    claim of ``"*"`` means every organisation (else such a token is refused).
    """

    jwks_file: str = ""
    jwks_url: URL = ""
    secret_file: str = ""
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256"])
    issuer: str = ""
    audience: str = ""
    leeway: PromDuration = 30.0
    subject_claim: str = "sub"
    org_claim: str = "org"
    role_claim: str = "role"
    roles: dict[str, str] = msgspec.field(default_factory=dict)
    push_claim: str = "push"
    union_claim: str = "allow_union"
    allow_all_orgs: bool = False
    jwks_refresh: PromDuration = 300.0
    jwks_min_refresh: PromDuration = 30.0
    jwks_timeout: PromDuration = 10.0

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        sources = [n for n in ("jwks_file", "jwks_url", "secret_file") if getattr(self, n)]
        if len(sources) != 1:
            problems.append(
                (
                    sources[-1] if sources else None,
                    "exactly one of jwks_file, jwks_url and secret_file must be configured",
                )
            )
        if not self.algorithms:
            problems.append(("algorithms", "name at least one algorithm"))
        for alg in self.algorithms:
            if alg not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
                known = ", ".join(sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS))
                problems.append(("algorithms", f"unsupported algorithm {_q(alg)} (one of {known})"))
        if self.secret_file and not set(self.algorithms) <= HMAC_ALGORITHMS:
            problems.append(("algorithms", "a secret_file verifies HS256/HS384/HS512 only"))
        for name in ("issuer", "audience"):  # accepting any issuer or audience is how tokens get replayed
            if not getattr(self, name):
                problems.append((name, f"missing required field {_q(name)}"))
        for name in ("subject_claim", "org_claim", "role_claim", "push_claim", "union_claim"):
            if not getattr(self, name):
                problems.append((name, "must not be empty"))
        for value, role in self.roles.items():
            bad = _bad_role(role)
            if bad:
                problems.append(("roles", f"{_q(value)}: {bad}"))
        if self.leeway < 0:
            problems.append(("leeway", "must not be negative"))
        if self.jwks_refresh <= 0 or self.jwks_min_refresh <= 0 or self.jwks_timeout <= 0:
            problems.append(
                ("jwks_refresh", "jwks_refresh, jwks_min_refresh and jwks_timeout must be positive")
            )
        return self, problems


class MtlsConfig(Node, frozen=True, forbid_unknown_fields=True):
    """Client certificates, as the server (ASGI ``tls`` extension) or a trusted proxy reports them.

    ``header``: a request header holding the certificate subject as an RFC 4514 string, set
    by a TLS-terminating proxy that must strip it from client requests; empty: only the
    ASGI ``tls`` extension's ``client_cert_name`` is believed. The subject comes from
    ``subject_attribute``, the organisations from every ``org_attribute`` value (or
    ``orgs`` when given). ``roles`` overrides ``role`` per subject.
    """

    header: str = ""
    subject_attribute: str = "CN"
    org_attribute: str = "O"
    orgs: list[str] = msgspec.field(default_factory=list)
    role: str = "viewer"
    roles: dict[str, str] = msgspec.field(default_factory=dict)
    push: bool = False
    allow_union: bool = False

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for name in ("subject_attribute", "org_attribute"):
            value = getattr(self, name)
            if value.upper() not in _DN_ATTRIBUTES:
                known = ", ".join(sorted(_DN_ATTRIBUTES))
                problems.append((name, f"unknown attribute {_q(value)} (one of {known})"))
        for role_field, role in [("role", self.role), *(("roles", r) for r in self.roles.values())]:
            bad = _bad_role(role)
            if bad:
                problems.append((role_field, bad))
        for org in self.orgs:
            bad = check_org_name(org) if org != "*" else None
            if bad:
                problems.append(("orgs", f"{bad}: {_q(org)}"))
        return self, problems


class AuthConfig(Node, frozen=True, forbid_unknown_fields=True):
    """``mode``: ``none`` (every request is an anonymous admin of any organisation, as
    Alertmanager, which has no authentication) or the methods accepted, joined with ``+``.
    ``public_paths``: answered without credentials (exact paths, or prefixes ending in ``*``).
    """

    mode: str = "none"
    public_paths: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_PUBLIC_PATHS))
    static: StaticConfig | None = None
    jwt: JwtConfig | None = None
    mtls: MtlsConfig | None = None

    @property
    def methods(self) -> frozenset[str]:
        return frozenset() if self.mode == "none" else frozenset(self.mode.split("+"))

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        parts = self.mode.split("+")
        if self.mode != "none":
            for part in parts:
                if part not in METHODS:
                    allowed = f"none, or {', '.join(METHODS)} joined with '+'"
                    problems.append(("mode", f"unknown mode {_q(part)} ({allowed})"))
            if len(set(parts)) != len(parts):
                problems.append(("mode", f"mode {_q(self.mode)} names a method twice"))
        methods = self.methods
        for name in METHODS:
            given = getattr(self, name) is not None
            if name in methods and not given and name != "mtls":
                problems.append((name, f"mode {_q(self.mode)} needs the {_q(name)} section"))
            if given and name not in methods:
                problems.append((name, f"section {_q(name)} is set but mode {_q(self.mode)} does not use it"))
        for path in self.public_paths:
            if not path.startswith("/"):
                problems.append(("public_paths", f"{_q(path)} must start with '/'"))
        return self, problems


def auth_config_problems(config: AuthConfig) -> list[str]:
    """The problems the decoder would report, for a config built in code (no line numbers)."""
    out: list[str] = []
    for prefix, node in (
        ("auth", config),
        ("auth.static", config.static),
        ("auth.jwt", config.jwt),
        ("auth.mtls", config.mtls),
    ):
        if node is None:
            continue
        _, problems = node._finish()
        out.extend(
            f"{prefix}.{name}: {message}" if name else f"{prefix}: {message}" for name, message in problems
        )
    return out
