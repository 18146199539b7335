"""The notifier's senders: one per delivered integration of every receiver.

The four integrations of the first release (webhook, email, Slack, PagerDuty) live in
``delivery``; every other kind registers a factory in :data:`INTEGRATIONS` from its own
module under ``integrations/``. A kind the configuration names but no factory serves is
never dropped in silence: the loader refuses it (``pipeline.foundation.amconfig``), and a sender that
cannot be built is listed in ``problems`` and its sends are dead-lettered.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.foundation.amconfig.model import Config, EmailConfig, SlackConfig, WebhookConfig
from pipeline.foundation.amconfig.receivers import delivered_integrations

from .core import SenderKey
from .delivery import EmailSender, PagerdutySender, Sender, SlackSender, WebhookSender
from .http import Clients
from .integrations import INTEGRATIONS
from .secrets import SecretReader
from .templates import TemplateSet, default_templates

__all__ = ["Senders", "build_senders"]

_BUILT_IN = frozenset({"webhook", "email", "slack", "pagerduty"})


@dataclass
class Senders:
    """Every integration's sender, keyed by ``(receiver, kind, index)``, and what failed to build."""

    by_key: dict[SenderKey, Sender]
    problems: list[str]
    _clients: Clients
    by_org: dict[str, dict[SenderKey, Sender]] = field(default_factory=dict)  # orgs with their own receivers

    def _table(self, org: str | None) -> dict[SenderKey, Sender]:
        return self.by_org.get(org, self.by_key) if org is not None else self.by_key

    def get(self, key: SenderKey, org: str | None = None) -> Sender | None:
        return self._table(org).get(key)

    def for_receiver(self, receiver: str, org: str | None = None) -> list[Sender]:
        return [s for k, s in self._table(org).items() if k[0] == receiver]

    async def aclose(self) -> None:
        for table in (self.by_key, *self.by_org.values()):
            for s in table.values():
                await s.aclose()
        await self._clients.aclose()


def build_senders(config: Config, *, external_url: str, templates: TemplateSet | None = None,
                  default_timeout: float = 30.0, secrets: SecretReader | None = None,
                  orgs: Mapping[str, Config] | None = None) -> Senders:
    """One sender per delivered integration of every receiver of ``config`` (and of each
    organisation's own configuration in ``orgs``).

    An integration whose configuration cannot work at all (no smarthost, a bad TLS file)
    is left out and described in ``problems``; sends to it are dead-lettered.
    """
    secrets = secrets or SecretReader()
    clients = Clients()
    problems: list[str] = []
    by_key = _build_table(config, clients, problems, external_url=external_url,
                          templates=templates or _templates_of(config), default_timeout=default_timeout,
                          secrets=secrets)
    by_org = {org: _build_table(c, clients, problems, external_url=external_url,
                                templates=templates or _templates_of(c), default_timeout=default_timeout,
                                secrets=secrets) for org, c in (orgs or {}).items()}
    return Senders(by_key, problems, clients, by_org)


def _templates_of(config: Config) -> TemplateSet:
    """Alertmanager's defaults plus the config's ``templates:`` files, compiled once per config load."""
    return TemplateSet.from_globs(config.templates) if config.templates else default_templates()


def _build_table(config: Config, clients: Clients, problems: list[str], *, external_url: str,
                 templates: TemplateSet, default_timeout: float, secrets: SecretReader) -> dict[SenderKey, Sender]:
    by_key: dict[SenderKey, Sender] = {}
    for rcv in config.receivers:
        for kind, index, cfg in delivered_integrations(rcv):
            key: SenderKey = (rcv.name, kind, index)
            own = float(getattr(cfg, "timeout", 0.0) or 0.0)
            timeout = own if own > 0 else default_timeout
            common: dict[str, Any] = {"key": key, "timeout": timeout, "secrets": secrets, "templates": templates,
                                      "external_url": external_url}
            try:
                sender: Sender
                if kind not in _BUILT_IN:
                    factory = INTEGRATIONS.get(kind)
                    if factory is None:
                        problems.append(f"receiver {rcv.name!r}: {kind}_configs[{index}]: {kind} has no sender")
                        continue
                    sender = factory(cfg, client=clients.get(cfg.http_config, secrets), **common)
                elif isinstance(cfg, EmailConfig):
                    sender = EmailSender(cfg, **common)
                else:
                    client = clients.get(cfg.http_config, secrets)
                    if isinstance(cfg, WebhookConfig):
                        sender = WebhookSender(cfg, client=client, **common)
                    elif isinstance(cfg, SlackConfig):
                        sender = SlackSender(cfg, client=client, **common)
                    else:
                        sender = PagerdutySender(cfg, client=client, **common)
            except (OSError, ValueError, ssl.SSLError) as exc:
                problems.append(f"receiver {rcv.name!r}: {kind}_configs[{index}]: {type(exc).__name__}: {exc}")
                continue
            by_key[key] = sender
    return by_key
