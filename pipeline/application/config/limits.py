"""The ``limits:`` settings of the API: request body size (413), per-identity request rate (429), the size of
what a request writes (400).

The checks that use them are ``pipeline.application.api.limits``.

Defaults (0 means unlimited)::

    limits:
      max_body_bytes: 8388608          # 413 beyond (Alertmanager: none)
      rate: 0                          # requests per second per identity (0: unlimited)
      burst: 0                         # bucket size (0: the rate rounded up)
      max_silences: 0                  # per organisation, as Alertmanager's --silences.max-silences
      max_silence_matchers: 100
      max_silence_bytes: 262144        # as --silences.max-silence-size-bytes
      max_silence_regex_length: 16384  # characters of one regex matcher
      max_label_name_length: 1024      # characters, pushed alerts
      max_label_value_length: 16384
      max_labels_per_alert: 128
      max_annotation_bytes: 32768      # UTF-8 bytes of an alert's annotation names and values
      max_alert_bytes: 65536           # an alert as the API publishes it (JSON)
      max_alerts_per_push: 0           # Alertmanager: none
      max_ack_comment_length: 4096
      auth_failure_rate: 10            # failed authentications per second per client address, then 429
      auth_failure_burst: 20

Why these defaults: Alertmanager has none but the silence ones, and a limit that refuses
real alerts is worse than none; but every pushed alert becomes NATS messages (the push, the
rules state, a router group that inlines up to 8 alerts, each flush), and nats-server refuses
a message over ``max_payload`` (1 MiB by default). ``max_alert_bytes`` keeps one alert at
1/16 of that, so the eight a group head inlines still fit in half of it; a 16 KiB label
value is far beyond any real one (Prometheus' own are a few hundred bytes), and 128 labels
more than any rule adds. Silences get the same kind of bound: 100 matchers and 256 KiB, as
the filter keeps each silence in one message and matches every alert against them. The
push itself is split by the API into messages of at most 200 alerts and half the server's
``max_payload`` (``pipeline.application.api.push.split_push``), so the number of alerts per push is
unlimited, as in Alertmanager, bounded only by ``max_body_bytes``.
"""

from __future__ import annotations

import math
from typing import Final, Self

from pipeline.foundation.amconfig.model import Node, Problem

__all__ = [
    "DEFAULT_MAX_ALERT_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "LimitsConfig",
]

DEFAULT_MAX_BODY_BYTES: Final = 8 << 20  # far above any real Alertmanager client's batch
DEFAULT_MAX_SILENCE_MATCHERS: Final = 100
DEFAULT_MAX_SILENCE_BYTES: Final = 256 << 10
DEFAULT_MAX_REGEX_LENGTH: Final = 16 << 10  # ~1,000 host names in one alternation
DEFAULT_MAX_LABEL_NAME_LENGTH: Final = 1024  # as Mimir's max_label_name_length
DEFAULT_MAX_LABEL_VALUE_LENGTH: Final = 16 << 10
DEFAULT_MAX_LABELS: Final = 128
DEFAULT_MAX_ANNOTATION_BYTES: Final = 32 << 10
DEFAULT_MAX_ALERT_BYTES: Final = 64 << 10  # 1/16 of NATS' default max_payload (1 MiB)
DEFAULT_MAX_ACK_COMMENT_LENGTH: Final = 4096

class LimitsConfig(Node, frozen=True, forbid_unknown_fields=True):
    """Zero means unlimited everywhere; the defaults and why: the module's docstring."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate: float = 0.0
    burst: int = 0
    max_silences: int = 0
    max_silence_matchers: int = DEFAULT_MAX_SILENCE_MATCHERS
    max_silence_bytes: int = DEFAULT_MAX_SILENCE_BYTES
    max_silence_regex_length: int = DEFAULT_MAX_REGEX_LENGTH
    max_label_name_length: int = DEFAULT_MAX_LABEL_NAME_LENGTH
    max_label_value_length: int = DEFAULT_MAX_LABEL_VALUE_LENGTH
    max_labels_per_alert: int = DEFAULT_MAX_LABELS
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES
    max_alert_bytes: int = DEFAULT_MAX_ALERT_BYTES
    max_alerts_per_push: int = 0
    max_ack_comment_length: int = DEFAULT_MAX_ACK_COMMENT_LENGTH
    # failed authentications per second per client address, then 429 (0: unlimited); burst = bucket
    auth_failure_rate: float = 10.0
    auth_failure_burst: int = 20

    @property
    def bucket_size(self) -> float:
        return float(self.burst) if self.burst > 0 else float(max(1, math.ceil(self.rate)))

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for name in (
            "max_body_bytes",
            "rate",
            "burst",
            "max_silences",
            "max_silence_matchers",
            "max_silence_bytes",
            "max_silence_regex_length",
            "max_label_name_length",
            "max_label_value_length",
            "max_labels_per_alert",
            "max_annotation_bytes",
            "max_alert_bytes",
            "max_alerts_per_push",
            "max_ack_comment_length",
            "auth_failure_rate",
            "auth_failure_burst",
        ):
            if getattr(self, name) < 0:
                problems.append((name, "must not be negative (0: unlimited)"))
        if self.burst > 0 and self.rate == 0:
            problems.append(("burst", "a burst needs a rate"))
        return self, problems
