"""Integrations beyond the first four, one module per kind (``notify/<kind>/`` in Alertmanager).

Each module defines its sender (an ``HttpSender`` of ``stages.notifier.delivery``) and a
factory; this package maps the kind to it. A factory takes the integration's loaded
configuration, ``client=`` (the HTTP client of its ``http_config``) and the senders' common
keywords (``key``, ``timeout``, ``secrets``, ``templates``, ``external_url``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..delivery import Sender

__all__ = ["INTEGRATIONS", "SenderFactory"]

SenderFactory = Callable[..., Sender]

# kind -> factory; each integration module adds its line here (sorted by kind)
INTEGRATIONS: dict[str, SenderFactory] = {
}

