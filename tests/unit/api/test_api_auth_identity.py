"""Identities, permissions and organisation scoping (pipeline.application.config.identity)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.auth.errors import BadOrgHeader, Forbidden
from pipeline.application.api.auth.identity import resolve_orgs
from pipeline.application.config.identity import (
    ALL,
    ANONYMOUS,
    PERMISSIONS,
    ROLES,
    Identity,
    highest_role,
)

ONE = Identity("one", frozenset({"acme"}), "viewer")
TWO = Identity("two", frozenset({"acme", "beta"}), "responder")
TWO_UNION = Identity("two-u", frozenset({"acme", "beta"}), "responder", allow_union=True)
EVERY = Identity("ops", ALL, "admin")
EVERY_UNION = Identity("ops-u", ALL, "admin", allow_union=True)


@pytest.mark.parametrize(
    ("identity", "header", "expect"),
    [
        (ONE, None, ["acme"]),
        (ONE, "", ["acme"]),
        (ONE, "acme", ["acme"]),
        (ONE, " acme ", ["acme"]),
        (TWO, "beta", ["beta"]),
        (TWO_UNION, None, ["acme", "beta"]),
        (TWO_UNION, "beta|acme", ["beta", "acme"]),
        (TWO_UNION, "acme|acme", ["acme"]),
        (EVERY, None, ["default"]),
        (EVERY, "anything", ["anything"]),
        (EVERY_UNION, None, ["default"]),
        (EVERY_UNION, "x|y", ["x", "y"]),
        (ANONYMOUS, "gamma", ["gamma"]),
        (ANONYMOUS, None, ["default"]),
    ],
    ids=[
        "one-no-header",
        "one-empty-header",
        "one-own",
        "one-spaces",
        "two-names-one",
        "union-no-header",
        "union-named",
        "union-duplicate",
        "all-no-header",
        "all-any",
        "all-union-no-header",
        "all-union-named",
        "anonymous-any",
        "anonymous-default",
    ],
)
def test_resolve_orgs_allowed(identity: Identity, header: str | None, expect: list[str]) -> None:
    assert resolve_orgs(identity, header, default_org="default") == expect


@pytest.mark.parametrize(
    ("identity", "header", "error", "text"),
    [
        (ONE, "beta", Forbidden, "may not act for organisation 'beta'"),
        (ONE, "acme|beta", Forbidden, "'beta'"),
        (TWO, None, BadOrgHeader, "X-Scope-OrgID is required"),
        (TWO, "acme|beta", Forbidden, "several organisations"),
        (TWO_UNION, "acme|gamma", Forbidden, "'gamma'"),
        (EVERY, "x|y", Forbidden, "several organisations"),
        (ANONYMOUS, "a|b", Forbidden, "several organisations"),
        (EVERY, "*", BadOrgHeader, "not an organisation"),
        (EVERY, "a||b", BadOrgHeader, "empty"),
        (EVERY, "x" * 151, BadOrgHeader, "longer than 150"),
        (EVERY, "bad\x01org", BadOrgHeader, "control character"),
    ],
    ids=[
        "forged-org",
        "forged-in-union",
        "several-must-name",
        "union-refused",
        "union-with-forged",
        "all-union-refused",
        "anonymous-union-refused",
        "star",
        "empty-part",
        "too-long",
        "control-char",
    ],
)
def test_resolve_orgs_refused(identity: Identity, header: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=None) as info:
        resolve_orgs(identity, header)
    assert text in str(info.value)


_orgs = st.text(alphabet="abcxyz-", min_size=1, max_size=5)


@given(
    mine=st.frozensets(_orgs, min_size=1, max_size=4),
    asked=st.lists(_orgs, min_size=1, max_size=4),
    union=st.booleans(),
)
def test_resolved_orgs_are_always_the_identitys_own(
    mine: frozenset[str], asked: list[str], union: bool
) -> None:
    identity = Identity("p", mine, "viewer", allow_union=union)
    try:
        got = resolve_orgs(identity, "|".join(asked))
    except (Forbidden, BadOrgHeader):
        assert not set(asked) <= mine or (len(set(asked)) > 1 and not union)
        return
    assert got and set(got) <= mine and set(got) == set(asked)


EXPECTED_PERMISSIONS = {
    "viewer": {"read"},
    "responder": {"read", "silence", "ack"},
    "admin": {"read", "silence", "ack", "admin"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("push", [False, True], ids=["no-push", "push"])
def test_role_permissions(role: str, push: bool) -> None:
    identity = Identity("x", frozenset({"o"}), role, can_push=push)  # type: ignore[arg-type]
    granted = {p for p in PERMISSIONS if identity.allows(p)}
    assert granted == EXPECTED_PERMISSIONS[role] | ({"push"} if push else set())


def test_denial_messages_name_subject_and_role() -> None:
    assert ONE.denial("silence") == "one (role viewer) may not manage silences"
    assert ONE.denial("push") == "one may not push alerts"
    with pytest.raises(ValueError, match="unknown permission"):
        ONE.allows("delete")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"role": "root"}, "unknown role"),
        ({"orgs": frozenset()}, "no organisation"),
        ({"orgs": frozenset({"a|b"})}, "'|'"),
    ],
    ids=["bad-role", "no-orgs", "bad-org"],
)
def test_identity_validates(kwargs: dict[str, object], text: str) -> None:
    base: dict[str, object] = {"subject": "s", "orgs": frozenset({"o"}), "role": "viewer"}
    with pytest.raises(ValueError, match=None) as info:
        Identity(**{**base, **kwargs})  # type: ignore[arg-type]
    assert text in str(info.value)


@pytest.mark.parametrize(
    ("roles", "expect"),
    [([], None), (["admin", "viewer"], "admin"), (["x", "responder"], "responder"), (["nope"], None)],
    ids=["none", "highest", "ignores-unknown", "only-unknown"],
)
def test_highest_role(roles: list[str], expect: str | None) -> None:
    assert highest_role(roles) == expect


def test_all_contains_every_org_and_is_one_object() -> None:
    assert "whatever" in ALL and 3 not in ALL
    assert type(ALL)() is ALL
