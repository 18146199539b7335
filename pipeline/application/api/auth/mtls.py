"""Identities from client certificates: the subject DN (RFC 4514 string) mapped per config.

The TLS handshake itself is the server's (or a proxy's) job; this module only reads the
subject it reports: ``CN=alice,O=acme,C=NL`` (RFC 4514, as the ASGI ``tls`` extension and
nginx' ``$ssl_client_s_dn`` give it) or OpenSSL's ``/C=NL/O=acme/CN=alice``.
"""

from __future__ import annotations

from typing import Final

from pipeline.application.api.auth.errors import Forbidden, Unauthenticated
from pipeline.application.config.auth import MtlsConfig
from pipeline.application.config.identity import ALL, AllOrgs, Identity, as_role, check_org_name

__all__ = ["identity_from_client_cert", "parse_dn"]

# The OIDs a DN string may spell instead of the short names (RFC 4514 3, cryptography's output).
_OID_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.6": "C",
    "2.5.4.5": "SERIALNUMBER",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
}
_SEPARATORS: Final = ",+;"  # ";" is RFC 2253's old RDN separator, still emitted by some tools
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _attribute_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("empty attribute type")
    if name.upper().startswith("OID."):
        name = name[4:]
    return _OID_NAMES.get(name, name.upper())


def _legacy(dn: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for part in dn[1:].split("/"):
        attr, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"expected type=value, got {part!r}")
        out.append((_attribute_name(attr), value))
    return out


def parse_dn(dn: str) -> list[tuple[str, str]]:
    """The ``(attribute, value)`` pairs of a distinguished name, in the order written.

    Attribute types are upper-cased short names (OIDs of common ones are translated);
    escapes (``\\,``, ``\\2C``, UTF-8 hex pairs) are undone. ``ValueError`` if malformed.
    """
    if dn.startswith("/"):
        return _legacy(dn)
    out: list[tuple[str, str]] = []
    i, n = 0, len(dn)
    while i < n:
        eq = dn.find("=", i)
        if eq < 0:
            raise ValueError(f"expected type=value at offset {i}")
        attr = _attribute_name(dn[i:eq])
        i = eq + 1
        while i < n and dn[i] == " ":  # unescaped leading spaces are not part of the value
            i += 1
        buf = bytearray()
        keep = 0  # length of buf up to its last significant character
        while i < n and dn[i] not in _SEPARATORS:
            c = dn[i]
            if c == "\\":
                if i + 1 >= n:
                    raise ValueError("dangling escape at the end")
                if i + 2 < n and dn[i + 1] in _HEX and dn[i + 2] in _HEX:
                    buf.append(int(dn[i + 1 : i + 3], 16))
                    i += 3
                else:
                    buf += dn[i + 1].encode("utf-8")
                    i += 2
                keep = len(buf)
            else:
                buf += c.encode("utf-8")
                i += 1
                if c != " ":
                    keep = len(buf)
        try:
            value = bytes(buf[:keep]).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"value of {attr} is not UTF-8") from None
        out.append((attr, value))
        if i < n:
            i += 1
            if i == n:
                raise ValueError("separator at the end")
    return out


def identity_from_client_cert(subject_dn: str, config: MtlsConfig) -> Identity:
    """The identity of a client certificate whose subject is ``subject_dn``.

    The subject is the first ``subject_attribute`` value (the most specific RDN comes
    first in RFC 4514 strings); the organisations are ``config.orgs`` when set, else every
    ``org_attribute`` value. ``Unauthenticated`` if the subject cannot be read or names
    no subject, ``Forbidden`` if it names no usable organisation.
    """
    try:
        attrs = parse_dn(subject_dn)
    except ValueError as exc:
        raise Unauthenticated(f"invalid client certificate subject: {exc}", token_given=False) from None
    want_subject = config.subject_attribute.upper()
    subjects = [v for a, v in attrs if a == want_subject and v]
    if not subjects:
        raise Unauthenticated(f"client certificate subject has no {want_subject}", token_given=False)
    subject = subjects[0]
    orgs: frozenset[str] | AllOrgs
    if config.orgs:
        orgs = ALL if "*" in config.orgs else frozenset(config.orgs)
    else:
        want_org = config.org_attribute.upper()
        values = [v for a, v in attrs if a == want_org]
        if not values:
            raise Forbidden(f"{subject}: client certificate subject has no {want_org} (organisation)")
        for org in values:
            bad = check_org_name(org)
            if bad:
                raise Forbidden(f"{subject}: {bad}: {org!r} ({want_org} of the client certificate)")
        orgs = frozenset(values)
    role = as_role(config.roles.get(subject, config.role))
    return Identity(
        subject,
        orgs,
        role,
        can_push=config.push,
        allow_union=config.allow_union,
        method="mtls",
    )
