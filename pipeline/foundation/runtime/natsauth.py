"""How Tocsin authenticates to NATS: credentials from the URL, TLS from a CA file.

nats-py reads ``user:password@`` from each URL, but servers it learns from the cluster
(``connect_urls``) come without them, so a reconnect to one of those fails authorization.
Hoisting the credentials into connect options makes them apply to every server.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["CA_FILE_ENV", "CERT_FILE_ENV", "KEY_FILE_ENV", "connect_options"]

CA_FILE_ENV = "TOCSIN_NATS_CA_FILE"  # PEM CAs that sign the NATS servers' certificates
CERT_FILE_ENV = "TOCSIN_NATS_CERT_FILE"  # client certificate (PEM), for servers that verify clients
KEY_FILE_ENV = "TOCSIN_NATS_KEY_FILE"  # its private key (PEM)


def connect_options(url: str, environ: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, Any]]:
    """The servers of ``url`` (comma-separated) and the nats-py connect options for them.

    When every URL carries the same ``user:password@`` (or ``token@``), the URLs lose it and
    the options get ``user``/``password`` (or ``token``), percent-decoded. A ``tls://`` URL, or
    ``TOCSIN_NATS_CA_FILE``, makes a TLS context that trusts that CA file (else the system's).
    """
    env = os.environ if environ is None else environ
    parts = [urlsplit(u.strip()) for u in url.split(",") if u.strip()]
    options: dict[str, Any] = {}
    userinfos = {p.netloc.rpartition("@")[0] for p in parts}
    if len(userinfos) == 1 and (userinfo := next(iter(userinfos))):
        user, sep, password = userinfo.partition(":")
        if sep:
            options["user"], options["password"] = unquote(user), unquote(password)
        else:
            options["token"] = unquote(user)
        parts = [p._replace(netloc=p.netloc.rpartition("@")[2]) for p in parts]
    ca, cert, key = env.get(CA_FILE_ENV), env.get(CERT_FILE_ENV), env.get(KEY_FILE_ENV)
    if ca or cert or any(p.scheme == "tls" for p in parts):
        context = ssl.create_default_context(cafile=ca or None)
        if cert:
            context.load_cert_chain(cert, key or None)
        options["tls"] = context
    return [urlunsplit(p) for p in parts], options
