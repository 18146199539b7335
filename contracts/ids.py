"""Identifiers that arrive from outside and travel inside subjects, keys and headers.

One validator per kind, used at every edge (API header, ``org_id`` label, token, JWT or
certificate claim, events row), so an organisation name or a fingerprint accepted in one
place is accepted everywhere. Each ``check_*`` returns why the value is refused (a message
naming the limit, never echoing a long value back), or ``None`` when it is fine; none of
them raises, whatever the text.

These bounds keep ids small; they are not what keeps NATS subjects valid:
``pipeline.foundation.runtime.subjects`` bounds every token it derives from text by construction.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "FINGERPRINT_LENGTH",
    "KEY_SEP",
    "MAX_GROUP_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_ORG_LENGTH",
    "UNION_SEP",
    "check_fingerprint",
    "check_group_key",
    "check_id",
    "check_org",
]

MAX_ORG_LENGTH: Final = 150  # as Cortex/Mimir tenant ids: the org travels in subjects and headers
MAX_ID_LENGTH: Final = 1024  # silence and ack ids, user names, request ids
# A group key quotes the group_by label values of an alert: bounded like an alert
# (limits.max_alert_bytes' default), far below NATS' max_payload.
MAX_GROUP_KEY_LENGTH: Final = 64 * 1024
FINGERPRINT_LENGTH: Final = 16  # Alertmanager prints fingerprints as 16 lower-case hex digits
UNION_SEP: Final = "|"  # Cortex' multi-tenant header form: "a|b"
# State keys are "<family>/<org>/...": with a "/" in it, organisation "a" would read the keys
# of organisation "a/b" (Cortex refuses "/" in tenant ids too).
KEY_SEP: Final = "/"
_FINGERPRINT: Final = re.compile(r"[0-9a-f]{16}")
# C0 and C1 control characters (Unicode Cc), and lone surrogates (not encodable as UTF-8)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_org(org: str) -> str | None:
    """Why ``org`` cannot name an organisation, or ``None`` when it can.

    The same rules as Cortex' ``X-Scope-OrgID``: 1 to 150 characters, not ``*``, no ``|``
    (the header's union separator), no ``/`` (the state keys' separator), no control
    character; and no white space at either end (the header form strips it, so such a name
    could never be named there)."""
    if not org:
        return "organisation name is empty"
    if len(org) > MAX_ORG_LENGTH:
        return f"organisation name is longer than {MAX_ORG_LENGTH} characters"
    if org == "*":
        return '"*" is not an organisation'
    if UNION_SEP in org:
        return f"organisation name contains {UNION_SEP!r}"
    if KEY_SEP in org:
        return f"organisation name contains {KEY_SEP!r}"
    if _CONTROL.search(org):
        return "organisation name contains a control character"
    if org != org.strip():
        return "organisation name starts or ends with white space"
    return None


def check_fingerprint(fp: str) -> str | None:
    """Why ``fp`` is not an alert fingerprint (16 lower-case hex digits), or ``None``."""
    if not _FINGERPRINT.fullmatch(fp):
        return f"fingerprint must be {FINGERPRINT_LENGTH} lower-case hex digits"
    return None


def check_id(value: str, what: str = "id", *, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` cannot be an identifier (silence id, user name, ...), or ``None``."""
    if not value:
        return f"{what} is empty"
    if len(value) > max_length:
        return f"{what} is longer than {max_length} characters"
    if _CONTROL.search(value):
        return f"{what} contains a control character"
    return None


def check_group_key(group_key: str) -> str | None:
    """Why ``group_key`` cannot be an alert group's key, or ``None``."""
    return check_id(group_key, "groupKey", max_length=MAX_GROUP_KEY_LENGTH)
