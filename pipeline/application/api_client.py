"""The CLI's client of a running Tocsin's API (``tocsin alerts``, ``tocsin rules``).

``--url`` is the API (as amtool's ``--alertmanager.url``; default ``$TOCSIN_URL`` or
http://127.0.0.1:9093); the bearer token comes from ``--token-file`` or ``$TOCSIN_TOKEN``;
``--org`` sets ``X-Scope-OrgID``. A failure is a :class:`CliError` saying what to check.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiClient", "CliError", "add_connection_arguments", "error_message"]


class CliError(Exception):
    """A failure to report in one line (exit status 1)."""


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("TOCSIN_URL", "http://127.0.0.1:9093"),
                   help="the Tocsin API (default: $TOCSIN_URL or http://127.0.0.1:9093)")
    p.add_argument("--token-file", default=os.environ.get("TOCSIN_TOKEN_FILE"),
                   help="a file holding the bearer token (default: $TOCSIN_TOKEN)")
    p.add_argument("--org", default=os.environ.get("TOCSIN_ORG", ""), help="the organisation (X-Scope-OrgID)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per request")


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"cannot read --token-file {args.token_file}: {exc.strerror or exc}") from None
    return os.environ.get("TOCSIN_TOKEN", "").strip()


def error_message(r: httpx.Response) -> str:
    """What an error answer says (Alertmanager's shape is a JSON string; Tocsin's may be an object)."""
    try:
        doc = r.json()
    except ValueError:
        return r.text.strip()
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or doc)
    return str(doc)


class ApiClient:
    """One API, one identity (the connection arguments); close ``client`` when done."""

    def __init__(self, args: argparse.Namespace) -> None:
        headers = {}
        token = _token(args)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if args.org:
            headers["X-Scope-OrgID"] = args.org
        self.url = args.url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=args.timeout)

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kw: Any) -> httpx.Response:
        """The answer; an error status not in ``ok`` raises :class:`CliError`."""
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach Tocsin at {self.url}: {exc} (is it running? set --url or $TOCSIN_URL)") \
                from None
        if r.status_code in ok:
            return r
        if r.status_code in (401, 403):
            raise CliError(f"{method} {path}: {r.status_code} {error_message(r)} (check --token-file / "
                           "$TOCSIN_TOKEN and --org)")
        if r.status_code >= 400:
            raise CliError(f"{method} {path}: {r.status_code} {error_message(r)}")
        return r

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """The answer's JSON (None when empty)."""
        r = self.request(method, path, **kw)
        return r.json() if r.content else None
