"""An email notification as a MIME message, with deterministic headers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from contracts.messages import SendRequest

from ..templates import Data, TemplateSet
from .common import Fields, sha256_hex
from .config import EmailConfig

__all__ = ["email_envelope", "email_message", "message_id_for"]

# Headers the message structure owns; configured values for them are ignored.
_RESERVED = frozenset({"message-id", "date", "mime-version", "content-type", "content-transfer-encoding"})
_FIRST = ("From", "To", "Subject")


def _canonical(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``message-id`` -> ``Message-Id``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _one_line(value: str) -> str:
    # a rendered value must not start new header lines
    return " ".join(value.splitlines()).strip()


def message_id_for(req: SendRequest, domain: str) -> str:
    """A Message-ID that is the same for every retry of ``req`` (its id, hashed)."""
    return f"<tocsin.{sha256_hex(req.id)[:40]}@{domain}>"


def email_message(
    req: SendRequest,
    cfg: EmailConfig,
    data: Data,
    message_id: str,
    *,
    templates: TemplateSet | None = None,
    errors: list[str] | None = None,
) -> EmailMessage:
    """The message for ``req``: rendered headers, a text part and an HTML part.

    Headers are Alertmanager's: the configured ``headers`` rendered as templates, with
    ``Subject`` defaulting to ``email.default.subject`` and ``To``/``From`` to the ``to`` and
    ``from`` fields. ``Date`` is the send request's creation time, ``Message-ID`` the given
    one and the MIME boundary derives from it, so a retried send is the same message. The
    body is multipart/alternative: ``text`` (default ``email.default.text``; Alertmanager sends no text part by default)
    and ``html`` (default ``email.default.html``, values HTML-escaped).
    """
    f = Fields("email", data, templates, errors)
    configured = {_canonical(k): v for k, v in (cfg.headers or {}).items()}
    configured.setdefault("Subject", "")
    configured.setdefault("To", cfg.to or "")
    configured.setdefault("From", cfg.from_ or "")
    defaults = {"Subject": "email.default.subject"}

    msg = EmailMessage()
    order = [*_FIRST, *sorted(k for k in configured if k not in _FIRST)]
    for name in order:
        if name.lower() in _RESERVED:
            continue
        value = _one_line(f.text(f"headers.{name}", configured[name], defaults.get(name)))
        if value or name in _FIRST:
            msg[name] = value
    msg["Message-ID"] = message_id if message_id.startswith("<") else f"<{message_id}>"
    msg["Date"] = format_datetime(datetime.fromtimestamp(req.created_at, UTC))

    text = f.text("text", cfg.text, "email.default.text")
    html = f.text("html", cfg.html, "email.default.html", html=True)
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # the generator would pick a random boundary; derive it so a retry sends the same bytes
    msg.set_boundary("=_tocsin_" + sha256_hex(msg["Message-ID"])[:32])
    return msg


def email_envelope(cfg: EmailConfig, data: Data, *, templates: TemplateSet | None = None) -> tuple[str, list[str]]:
    """The SMTP envelope: the one sender and the recipients of ``from`` and ``to``.

    Raises ``ValueError`` when they do not render to usable addresses (a permanent failure).
    """
    f = Fields("email", data, templates)
    sender = [addr for _, addr in getaddresses([f.text("from", cfg.from_)]) if addr]
    if len(sender) != 1:
        raise ValueError(f"must be exactly one 'from' address (got {len(sender)})")
    recipients = [addr for _, addr in getaddresses([f.text("to", cfg.to)]) if addr]
    if not recipients:
        raise ValueError("no 'to' address")
    bad = [a for a in [*sender, *recipients] if "@" not in a or "{" in a]
    if bad or f.errors:
        raise ValueError("; ".join([*f.errors, *(f"invalid address {a!r}" for a in bad)]))
    return sender[0], recipients
