"""Who is calling and what they may do: identities, roles and permissions.

Roles are ordered (viewer < responder < admin), each adding permissions to the one below;
pushing alerts is a separate grant (Prometheus pushes with a token that should not be
able to silence). Organisation names are checked by ``contracts.ids.check_org``
(re-exported here as ``check_org_name``), the one validator every edge uses (header,
``org_id`` label, tokens file, JWT and certificate claims, events rows). The model lives
here, below the API, because the tokens file the settings read maps tokens to identities;
the API resolves a request's organisations (``pipeline.application.api.auth.identity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from contracts.ids import MAX_ORG_LENGTH
from contracts.ids import check_org as check_org_name

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
