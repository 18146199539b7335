"""Client certificate subjects (pipeline.application.api.auth.mtls): DN parsing and identity mapping."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.auth.errors import Forbidden, Unauthenticated
from pipeline.application.api.auth.mtls import identity_from_client_cert, parse_dn
from pipeline.application.config.auth import MtlsConfig
from pipeline.application.config.identity import ALL


@pytest.mark.parametrize(
    ("dn", "expect"),
    [
        ("CN=alice,O=acme,C=NL", [("CN", "alice"), ("O", "acme"), ("C", "NL")]),
        ("cn=alice, o=acme", [("CN", "alice"), ("O", "acme")]),
        (r"CN=Smith\, John,O=acme", [("CN", "Smith, John"), ("O", "acme")]),
        (r"CN=a\2Cb", [("CN", "a,b")]),
        (r"CN=J\C3\BCrgen", [("CN", "Jürgen")]),
        ("CN=alice+UID=42,O=acme", [("CN", "alice"), ("UID", "42"), ("O", "acme")]),
        ("2.5.4.3=alice,2.5.4.10=acme", [("CN", "alice"), ("O", "acme")]),
        ("1.2.840.113549.1.9.1=a@b.test", [("EMAILADDRESS", "a@b.test")]),
        (r"CN=\ padded\ ", [("CN", " padded ")]),
        ("CN=  trimmed  ,O=x", [("CN", "trimmed"), ("O", "x")]),
        ("CN=alice;O=acme", [("CN", "alice"), ("O", "acme")]),
        ("/C=NL/O=acme/CN=alice", [("C", "NL"), ("O", "acme"), ("CN", "alice")]),
        ("", []),
    ],
    ids=[
        "plain",
        "lower-case-spaces",
        "escaped-comma",
        "hex-escape",
        "utf8-hex",
        "multi-valued-rdn",
        "oids",
        "email-oid",
        "escaped-spaces",
        "unescaped-spaces",
        "semicolon",
        "openssl-legacy",
        "empty",
    ],
)
def test_parse_dn(dn: str, expect: list[tuple[str, str]]) -> None:
    assert parse_dn(dn) == expect


@pytest.mark.parametrize(
    "dn",
    ["CN", "CN=a,", "CN=a\\", r"CN=\FF", "=x", "/CN"],
    ids=["no-equals", "trailing-comma", "dangling-escape", "bad-utf8", "no-type", "legacy-no-eq"],
)
def test_parse_dn_rejects(dn: str) -> None:
    with pytest.raises(ValueError):
        parse_dn(dn)


_value = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=16)  # CN: at most 64 bytes


@given(cn=_value, orgs=st.lists(_value, min_size=1, max_size=3))
def test_parse_dn_reads_what_cryptography_writes(cn: str, orgs: list[str]) -> None:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    name = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    # RFC 4514 strings list the RDNs from the last (most specific) to the first
    assert parse_dn(name.rfc4514_string()) == [("CN", cn), *(("O", o) for o in reversed(orgs))]


@pytest.mark.parametrize(
    ("dn", "config", "expect"),
    [
        ("CN=alice,O=acme", MtlsConfig(), ("alice", frozenset({"acme"}), "viewer")),
        (
            "CN=alice,O=acme,O=beta",
            MtlsConfig(role="responder"),
            ("alice", frozenset({"acme", "beta"}), "responder"),
        ),
        ("CN=alice,OU=team,O=acme", MtlsConfig(org_attribute="OU"), ("alice", frozenset({"team"}), "viewer")),
        ("CN=bob,O=acme", MtlsConfig(roles={"bob": "admin"}), ("bob", frozenset({"acme"}), "admin")),
        ("UID=u1,CN=x,O=acme", MtlsConfig(subject_attribute="uid"), ("u1", frozenset({"acme"}), "viewer")),
        ("CN=svc", MtlsConfig(orgs=["*"]), ("svc", ALL, "viewer")),
        ("CN=svc,O=ignored", MtlsConfig(orgs=["a", "b"]), ("svc", frozenset({"a", "b"}), "viewer")),
        ("CN=leaf,CN=parent,O=acme", MtlsConfig(), ("leaf", frozenset({"acme"}), "viewer")),
    ],
    ids=[
        "cn-o",
        "several-o",
        "ou-as-org",
        "role-per-subject",
        "uid-subject",
        "fixed-all",
        "fixed-orgs",
        "first-cn-wins",
    ],
)
def test_identity_from_client_cert(dn: str, config: MtlsConfig, expect: tuple[str, object, str]) -> None:
    identity = identity_from_client_cert(dn, config)
    assert (identity.subject, identity.orgs, identity.role) == expect
    assert identity.method == "mtls"


@pytest.mark.parametrize(
    ("dn", "error"),
    [
        ("O=acme", Unauthenticated),
        ("CN=alice", Forbidden),
        ("CN=alice,O=a|b", Forbidden),
        ("garbage", Unauthenticated),
    ],
    ids=["no-cn", "no-org", "bad-org", "unparsable"],
)
def test_identity_from_client_cert_refuses(dn: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        identity_from_client_cert(dn, MtlsConfig())


def test_push_and_union_come_from_config() -> None:
    identity = identity_from_client_cert("CN=a,O=o", MtlsConfig(push=True, allow_union=True))
    assert identity.can_push and identity.allow_union
