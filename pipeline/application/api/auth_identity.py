"""Who is calling and what they may do: identities, roles, permissions, organisation scoping.

Roles are ordered (viewer < responder < admin), each adding permissions to the one below;
pushing alerts is a separate grant (Prometheus pushes with a token that should not be
able to silence). ``resolve_orgs`` turns ``X-Scope-OrgID`` into the organisations a request
acts for, refusing any the identity may not act for. Organisation names are checked by
``contracts.ids.check_org`` (re-exported here as ``check_org_name``), the one validator every
edge uses (header, ``org_id`` label, tokens file, JWT and certificate claims, events rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from contracts.ids import MAX_ORG_LENGTH
from contracts.ids import UNION_SEP as _UNION_SEP
from contracts.ids import check_org as check_org_name
from pipeline.application.api.auth_errors import BadOrgHeader, Forbidden

__all__ = [
    "ALL",
    "ANONYMOUS",
    "MAX_ORG_LENGTH",
    "PERMISSIONS",
    "ROLES",
    "AllOrgs",
    "Identity",
    "Permission",
    "Role",
    "as_role",
    "check_org_name",
    "highest_role",
    "resolve_orgs",
    "role_permissions",
]

Role = Literal["viewer", "responder", "admin"]
Permission = Literal["read", "silence", "ack", "push", "admin"]

ROLES: Final[tuple[Role, ...]] = ("viewer", "responder", "admin")  # lowest first
PERMISSIONS: Final[tuple[Permission, ...]] = ("read", "silence", "ack", "push", "admin")

_ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset({"read"}),
    "responder": frozenset({"read", "silence", "ack"}),
    "admin": frozenset({"read", "silence", "ack", "admin"}),
}

_VERBS: Final[dict[str, str]] = {
    "read": "read alerts",
    "silence": "manage silences",
    "ack": "acknowledge alerts",
    "push": "push alerts",
    "admin": "use administrative endpoints",
}


class AllOrgs:
    """Every organisation (``ALL``): ``org in ALL`` is always true."""

    _instance: AllOrgs | None = None

    def __new__(cls) -> AllOrgs:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __contains__(self, org: object) -> bool:
        return isinstance(org, str)

    def __repr__(self) -> str:
        return "ALL"


ALL: Final = AllOrgs()


def role_permissions(role: str) -> frozenset[str]:
    """The permissions ``role`` grants (``push`` is never among them: it is granted apart)."""
    return _ROLE_PERMISSIONS[role]


def as_role(name: str) -> Role:
    """``name`` as a ``Role``; ``ValueError`` if it is not one."""
    for r in ROLES:
        if r == name:
            return r
    raise ValueError(f"unknown role {name!r} (one of {', '.join(ROLES)})")


def highest_role(roles: list[str]) -> Role | None:
    """The highest of ``roles`` (names that are not roles are ignored), ``None`` if none is."""
    best: Role | None = None
    for r in ROLES:
        if r in roles:
            best = r
    return best


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    ``orgs``: the organisations it may act for, or ``ALL``. ``allow_union``: it may act for
    several of them in one request. ``method``: how it was authenticated (none, static, jwt,
    mtls), for the audit trail.
    """

    subject: str
    orgs: frozenset[str] | AllOrgs
    role: Role
    can_push: bool = False
    allow_union: bool = False
    method: str = "none"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r} (one of {', '.join(ROLES)})")
        if not isinstance(self.orgs, AllOrgs):
            if not self.orgs:
                raise ValueError(f"identity {self.subject!r} may act for no organisation")
            for org in self.orgs:
                problem = check_org_name(org)
                if problem:
                    raise ValueError(f"identity {self.subject!r}: {problem}: {org!r}")

    def allows(self, permission: Permission | str) -> bool:
        if permission == "push":
            return self.can_push
        if permission not in _VERBS:
            raise ValueError(f"unknown permission {permission!r} (one of {', '.join(PERMISSIONS)})")
        return permission in _ROLE_PERMISSIONS[self.role]

    def may_act_for(self, org: str) -> bool:
        return org in self.orgs

    def denial(self, permission: Permission | str) -> str:
        """The message refusing ``permission`` to this identity."""
        if permission == "push":
            return f"{self.subject} may not push alerts"
        return f"{self.subject} (role {self.role}) may not {_VERBS[permission]}"


ANONYMOUS: Final = Identity("anonymous", ALL, "admin", can_push=True, allow_union=False, method="none")


def resolve_orgs(identity: Identity, header_value: str | None, *, default_org: str = "default") -> list[str]:
    """The organisations a request acts for, given its ``X-Scope-OrgID`` header value.

    No header: the identity's only organisation; ``default_org`` for an identity of every
    organisation (Alertmanager clients send none); all of its organisations if it may act
    for several at once, else ``BadOrgHeader``. A header names one organisation, or several
    joined with ``|``; naming one the identity may not act for, or several without
    ``allow_union``, raises ``Forbidden``.
    """
    if header_value is None or not header_value.strip():
        if isinstance(identity.orgs, AllOrgs):
            return [default_org]
        if len(identity.orgs) == 1 or identity.allow_union:
            return sorted(identity.orgs)
        raise BadOrgHeader(
            f"X-Scope-OrgID is required: {identity.subject} may act for several organisations "
            f"({', '.join(sorted(identity.orgs))}); name one"
        )
    names: list[str] = []
    for raw in header_value.split(_UNION_SEP):
        name = raw.strip()
        problem = check_org_name(name)
        if problem:
            shown = header_value if len(header_value) <= 200 else header_value[:200] + "..."
            raise BadOrgHeader(f"invalid X-Scope-OrgID {shown!r}: {problem}")
        if name not in names:
            names.append(name)
    for name in names:
        if not identity.may_act_for(name):
            raise Forbidden(f"{identity.subject} may not act for organisation {name!r}")
    if len(names) > 1 and not identity.allow_union:
        raise Forbidden(f"{identity.subject} may not act for several organisations in one request")
    return names
