"""Integrations beyond the first four, one module per kind (``notify/<kind>/`` in Alertmanager).

Each module defines its sender (an ``HttpSender`` of ``stages.notifier.http``) and a
factory; this package maps the kind to it. A factory takes the integration's loaded
configuration, ``client=`` (the HTTP client of its ``http_config``) and the senders' common
keywords (``key``, ``timeout``, ``secrets``, ``templates``, ``external_url``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..delivery import Sender
from .discord import build as _discord
from .incidentio import build as _incidentio
from .jira import build as _jira
from .mattermost import build as _mattermost
from .msteams import build as _msteams
from .msteamsv2 import build as _msteamsv2
from .opsgenie import build as _opsgenie
from .pushover import build as _pushover
from .rocketchat import build as _rocketchat
from .sns import build as _sns
from .telegram import build as _telegram
from .victorops import build as _victorops
from .webex import build as _webex
from .wechat import build as _wechat

__all__ = ["INTEGRATIONS", "SenderFactory"]

SenderFactory = Callable[..., Sender]

# kind -> factory; each integration module adds its line here (sorted by kind)
INTEGRATIONS: dict[str, SenderFactory] = {
    "discord": _discord,
    "incidentio": _incidentio,
    "jira": _jira,
    "mattermost": _mattermost,
    "msteams": _msteams,
    "msteamsv2": _msteamsv2,
    "opsgenie": _opsgenie,
    "pushover": _pushover,
    "rocketchat": _rocketchat,
    "sns": _sns,
    "telegram": _telegram,
    "victorops": _victorops,
    "webex": _webex,
    "wechat": _wechat,
}

