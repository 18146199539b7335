"""Shared pieces of the payload builders: which alerts to send, ids, rendering of fields."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import msgspec
import yaml
from prometheus_client import REGISTRY, Counter

from contracts.messages import SendRequest

from ..templates import Data, TemplateSet, default_templates
from ..templates.data import alert_status

__all__ = [
    "RENDER_ERRORS",
    "TEMPLATE_ERRORS",
    "Fields",
    "idempotency_key",
    "select_alerts",
    "sha256_hex",
    "sorted_maps",
    "truncate_runes",
]

# A field whose template failed was sent with its default: the notification went out, but
# not as configured. Counted so it can be alerted on; the error itself is logged.
#: The template errors of the attempt being made (set by the notifier worker around each
#: attempt, so they are recorded with it; ``None`` outside an attempt).
RENDER_ERRORS: ContextVar[list[str] | None] = ContextVar("tocsin_render_errors", default=None)
TEMPLATE_ERRORS = Counter("tocsin_notifier_template_errors", "Template fields that failed to render and were sent "
                          "with the integration's default", ["integration"], registry=REGISTRY)

_TRUNCATION_MARKER = "…"
_SAFE_KEY = re.compile(r"[A-Za-z0-9._:/@+=-]{1,200}")


def select_alerts(req: SendRequest, send_resolved: bool) -> SendRequest | None:
    """The request to send to an integration, or ``None`` when there is nothing to send.

    As Alertmanager's retry stage: an integration with ``send_resolved: false`` gets only
    the firing alerts, and nothing at all when none fires (the send then counts as done).
    Call this before building the data and the payload.
    """
    if not req.alerts:
        return None
    if send_resolved:
        return req
    firing = [a for a in req.alerts if alert_status(a.ends_at, req.created_at) == "firing"]
    if not firing:
        return None
    if len(firing) == len(req.alerts):
        return req
    return msgspec.structs.replace(req, alerts=firing, status="firing")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key(req: SendRequest) -> str:
    """The send's id as an ``Idempotency-Key`` header value.

    The id itself when it is short printable ASCII without spaces (readable in receiver
    logs), otherwise ``sha256-`` and its hash; either way the same for every retry.
    """
    if _SAFE_KEY.fullmatch(req.id):
        return req.id
    return "sha256-" + sha256_hex(req.id)


def truncate_runes(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters, ending with ``…`` when cut (Alertmanager's rule)."""
    if len(text) <= limit:
        return text, False
    if limit <= 3:
        return text[:limit], True
    return text[: limit - 1] + _TRUNCATION_MARKER, True


def sorted_maps(value: Any) -> Any:
    """Mappings at any depth with sorted keys, as Go's encoding/json writes them."""
    if isinstance(value, Mapping):
        return {k: sorted_maps(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_maps(v) for v in value]
    return value


class _GoYamlLoader(yaml.SafeLoader):
    """YAML as Go's yaml.v2 reads it into ``interface{}``: timestamps stay strings."""


_GoYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _normalize(value: Any) -> Any:
    # Go drops non-string keys when it turns decoded YAML into JSON objects
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


class Fields:
    """Renders one integration's configured fields against one data, collecting errors.

    A field left unset (``None`` or ``""``) renders its default named template; a field
    whose template fails renders the default too, and the error is appended to ``errors``
    as ``"<integration> <field>: <message>"``.
    """

    def __init__(
        self,
        integration: str,
        data: Data,
        templates: TemplateSet | None = None,
        errors: list[str] | None = None,
    ) -> None:
        self.integration = integration
        self.data = data
        self.templates = templates or default_templates()
        self.errors: list[str] = errors if errors is not None else []

    def _error(self, field: str, message: str) -> None:
        error = f"{self.integration} {field}: {message}"
        self.errors.append(error)
        TEMPLATE_ERRORS.labels(self.integration).inc()
        attempt_errors = RENDER_ERRORS.get()
        if attempt_errors is not None:  # the worker records them on the delivery attempt
            attempt_errors.append(error)

    def default(self, field: str, name: str | None, *, html: bool = False) -> str:
        if name is None:
            return ""
        try:
            return self.templates.render_named(name, self.data, html=html)
        except Exception as exc:  # a configured override of a default can be broken too
            self._error(field, f"default template {name!r}: {type(exc).__name__}: {exc}")
            return ""

    def text(self, field: str, value: str | None, default: str | None = None, *, html: bool = False) -> str:
        """Render ``value`` (text, or HTML-escaped), falling back to the named ``default``."""
        if not value:
            return self.default(field, default, html=html)
        render = self.templates.render_html if html else self.templates.render
        out, err = render(value, self.data, "")
        if err is None:
            return out
        self._error(field, err)
        return self.default(field, default, html=html)

    def value(self, field: str, value: Any) -> Any:
        """A structured config value with every string rendered (Alertmanager's details).

        A rendered string that reads as YAML data (a number, a list, a mapping) becomes that
        data, as in Alertmanager; a string that fails to render is kept as written.
        """
        if isinstance(value, str):
            out, err = self.templates.render(value, self.data, value)
            if err is not None:
                self._error(field, err)
                return out
            try:
                parsed = yaml.load(out, Loader=_GoYamlLoader)
            except Exception:  # not YAML data: Go keeps the string
                return out
            return out if isinstance(parsed, str) else _normalize(parsed)
        if isinstance(value, Mapping):
            rendered: dict[str, Any] = {}
            for k, v in value.items():
                if isinstance(k, str):
                    key, err = self.templates.render(k, self.data, k)
                    if err is not None:
                        self._error(f"{field} key {k!r}", err)
                    rendered[key] = self.value(f"{field}.{k}", v)
            return rendered
        if isinstance(value, list | tuple):
            return [self.value(field, v) for v in value]
        return value
