"""The organisations a request acts for: ``X-Scope-OrgID`` against the caller's identity.

The identity model (roles, permissions, ``Identity``) is ``pipeline.application.config.identity``.
"""

from __future__ import annotations

from contracts.ids import UNION_SEP as _UNION_SEP
from pipeline.application.api.auth.errors import BadOrgHeader, Forbidden
from pipeline.application.config.identity import AllOrgs, Identity, check_org_name

__all__ = ["resolve_orgs"]


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
