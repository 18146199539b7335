"""What the incident integrations (Opsgenie, VictorOps, Pushover, WeChat) share.

``request`` sends any method (Opsgenie updates with PUT, WeChat fetches its token with GET)
with any content type (Pushover posts a form) through the integration's client, with its
``http_config`` auth and redirects as :meth:`HttpSender.post` does. ``render_secret`` renders
a templated credential (Alertmanager templates API keys and tokens) without ever quoting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pipeline.foundation.http1 import HttpResponse

from ..http import USER_AGENT, HttpSender, auth_headers
from ..secrets import SecretError
from ..templates import Data

__all__ = ["escape_path", "join_url", "render_secret", "request"]

async def request(sender: HttpSender, method: str, url: str, body: bytes = b"", *,
                  content_type: str = "application/json", extra: Sequence[tuple[str, str]] = (),
                  own_auth: bool = False) -> HttpResponse:
    """One request with the sender's ``http_config``. ``own_auth``: the request sets its own
    ``Authorization`` (in ``extra``), which wins over ``http_config``'s, as in Prometheus' client."""
    auth = auth_headers(sender.http, sender.secrets, sender.what)
    if own_auth:
        auth = [(k, v) for k, v in auth if k.lower() != "authorization"]
    headers = [("User-Agent", USER_AGENT), *extra, *auth]
    if body or method in ("POST", "PUT"):
        headers.insert(0, ("Content-Type", content_type))
    return cast(HttpResponse, await sender.client.request(method, url, headers, body))


def escape_path(segment: str) -> str:
    """Text appended to a URL path, escaped as Go's ``url.URL.String()`` does (``/`` is kept)."""
    return quote(segment, safe="$&+,/:;=@-._~")


def join_url(base: str, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """``base`` (ending in ``/``) with ``path`` appended to its path and ``query`` set in its query."""
    parts = urlsplit(base)
    params = [p for p in parts.query.split("&") if p]
    names = {k for k, _ in query}
    params = [p for p in params if p.split("=", 1)[0] not in names]
    encoded = "&".join([*params, urlencode(sorted(query))] if query else params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + path, encoded, ""))


def render_secret(sender: HttpSender, value: str, data: Data, what: str) -> str:
    """``value`` rendered as a template when it is one (Alertmanager renders its API keys);
    a render error names the field only: the template text is the secret."""
    if "{{" not in value:
        return value
    out, err = sender.templates.render(value, data, "")
    if err is not None:
        raise SecretError(f"{sender.what}: {what} does not render as a template")
    return out
