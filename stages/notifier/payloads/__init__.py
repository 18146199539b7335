"""The exact request bodies of each integration, built from a send request (pure).

Typical use by a notifier worker, for one integration of one receiver::

    req = select_alerts(req, cfg.send_resolved)       # None: nothing to send, count as done
    data = build_data(req, external_url)              # stages.notifier.templates
    body = slack_payload(req, cfg, data, errors=errs)  # errs: template errors, to log

Webhooks build their own data (``max_alerts`` truncation changes it).
"""

from .common import Fields, idempotency_key, select_alerts, truncate_runes
from .config import (
    EmailConfig,
    PagerdutyConfig,
    PagerdutyImage,
    PagerdutyLink,
    SlackAction,
    SlackConfig,
    SlackConfirm,
    SlackField,
    WebhookConfig,
)
from .email import email_envelope, email_message, message_id_for
from .pagerduty import (
    PAGERDUTY_V1_URL,
    PAGERDUTY_V2_URL,
    event_action,
    pagerduty_dedup_key,
    pagerduty_payload,
)
from .slack import slack_payload
from .webhook import WEBHOOK_VERSION, webhook_body, webhook_payload

__all__ = [
    "PAGERDUTY_V1_URL",
    "PAGERDUTY_V2_URL",
    "WEBHOOK_VERSION",
    "EmailConfig",
    "Fields",
    "PagerdutyConfig",
    "PagerdutyImage",
    "PagerdutyLink",
    "SlackAction",
    "SlackConfig",
    "SlackConfirm",
    "SlackField",
    "WebhookConfig",
    "email_envelope",
    "email_message",
    "event_action",
    "idempotency_key",
    "message_id_for",
    "pagerduty_dedup_key",
    "pagerduty_payload",
    "select_alerts",
    "slack_payload",
    "truncate_runes",
    "webhook_body",
    "webhook_payload",
]
