"""Settings of the notifier workers: the ``notifier`` key of the ``tocsin:`` config section.

::

    tocsin:
      notifier:
        concurrency: 256           # sends in flight per worker process
        ack_wait: 30s              # JetStream ack wait; in-progress acks extend it while a send lasts
        timeout: 30s               # per attempt, when the integration sets no ``timeout``
        retry: {budget: 5m, max_attempts: 20, backoff_base: 500ms, backoff_cap: 30s}
        breaker: {failures: 5, cooldown: 30s}
        rate_limit: {rate: 0, burst: 1}          # per receiver integration; rate 0: unlimited
        rate_limits: {pager: {rate: 1, burst: 5}}  # per receiver name
        fallbacks: {team-webhook: team-email}      # receiver -> receiver tried after its budget

Durations are numbers of seconds or Prometheus durations (``90s``, ``5m``). Unknown keys are
rejected with their path; :func:`check_fallbacks` checks the fallbacks against the receivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from pipeline.foundation.amconfig.durations import parse_duration

__all__ = [
    "BreakerConfig",
    "NotifierConfig",
    "NotifierConfigError",
    "RateLimitConfig",
    "RetryConfig",
    "check_fallbacks",
    "load_notifier_config",
]


class NotifierConfigError(ValueError):
    """A notifier setting that cannot work; the message names the setting."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def _positive(section: str, values: Mapping[str, float]) -> None:
    for key, value in values.items():
        if not value > 0:
            raise NotifierConfigError(f"notifier.{section}{key}: must be greater than 0, got {value}")


class RetryConfig(_Strict, frozen=True):
    """How long one integration is retried before its fallback: the first of ``budget``
    (seconds spent trying and waiting, not counting waits behind an open circuit) and
    ``max_attempts``. Waits are exponential with full jitter between ``backoff_base`` and
    ``backoff_cap``, or the receiver's ``Retry-After`` up to ``max_retry_after``."""

    budget: float = 300.0
    max_attempts: int = 20
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        _positive("retry.", {"budget": self.budget, "max_attempts": self.max_attempts,
                             "backoff_cap": self.backoff_cap, "max_retry_after": self.max_retry_after})
        if self.backoff_base < 0:
            raise NotifierConfigError(f"notifier.retry.backoff_base: must be >= 0, got {self.backoff_base}")


class BreakerConfig(_Strict, frozen=True):
    """Open an integration's circuit after ``failures`` consecutive retryable failures;
    try one request again after ``cooldown``."""

    failures: int = 5
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        _positive("breaker.", {"failures": self.failures, "cooldown": self.cooldown})


class RateLimitConfig(_Strict, frozen=True):
    """A token bucket: ``rate`` sends per second (0: unlimited), bursts of ``burst``."""

    rate: float = 0.0
    burst: int = 1

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise NotifierConfigError(f"notifier.rate_limit.rate: must be >= 0, got {self.rate}")
        if self.burst < 1:
            raise NotifierConfigError(f"notifier.rate_limit.burst: must be >= 1, got {self.burst}")


class NotifierConfig(_Strict, frozen=True):
    """Everything the notifier workers read from ``tocsin.notifier`` (see the module doc).

    ``max_ack_pending`` bounds the requests the shared consumer hands out unacknowledged
    (over all workers). ``ledger_max_age`` is how long ledger records and attempt logs are
    kept. ``max_wait_in_process``: a wait for the rate limiter up to this long is slept in
    the worker; a longer one (and any wait behind an open circuit) returns the request to
    the stream with a delay, so it holds no worker slot. ``external_url`` is the
    ``externalURL`` of templates and webhooks when the process is not given one.
    """

    concurrency: int = 256  # a send mostly waits (ledger writes, the receiver): in flight, not CPU, bounds it
    ack_wait: float = 30.0  # a dead worker's requests go to another after this; live ones send in-progress acks
    max_ack_pending: int = 1024
    timeout: float = 30.0
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    rate_limit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    rate_limits: dict[str, RateLimitConfig] = {}
    fallbacks: dict[str, str] = {}
    ledger_max_age: float = 7 * 86400.0
    max_wait_in_process: float = 1.0
    external_url: str = ""

    def __post_init__(self) -> None:
        _positive("", {"concurrency": self.concurrency, "ack_wait": self.ack_wait,
                       "max_ack_pending": self.max_ack_pending, "timeout": self.timeout,
                       "ledger_max_age": self.ledger_max_age})
        if self.max_wait_in_process < 0:
            raise NotifierConfigError("notifier.max_wait_in_process: must be >= 0")
        if self.ack_wait < 5:
            raise NotifierConfigError(
                f"notifier.ack_wait: {self.ack_wait}s is too short for in-progress acks; use at least 5s")
        for name, target in self.fallbacks.items():
            if name == target:
                raise NotifierConfigError(f"notifier.fallbacks.{name}: a receiver cannot be its own fallback")

    def rate_limit_for(self, receiver: str) -> RateLimitConfig:
        return self.rate_limits.get(receiver, self.rate_limit)


_DURATIONS = {
    "": ("ack_wait", "timeout", "ledger_max_age", "max_wait_in_process"),
    "retry": ("budget", "backoff_base", "backoff_cap", "max_retry_after"),
    "breaker": ("cooldown",),
}


def _durations(section: dict[str, Any], keys: Iterable[str], where: str) -> None:
    for key in keys:
        value = section.get(key)
        if isinstance(value, str):
            try:
                section[key] = parse_duration(value)
            except ValueError as exc:
                raise NotifierConfigError(f"tocsin.notifier.{where}{key}: {exc}") from None


def load_notifier_config(tocsin_section: Any) -> NotifierConfig:
    """The ``notifier`` settings of a ``tocsin:`` section (a mapping, or ``None``: defaults)."""
    if tocsin_section is None:
        return NotifierConfig()
    if not isinstance(tocsin_section, Mapping):
        raise NotifierConfigError("tocsin: expected a mapping")
    raw = tocsin_section.get("notifier")
    if raw is None:
        return NotifierConfig()
    if not isinstance(raw, Mapping):
        raise NotifierConfigError("tocsin.notifier: expected a mapping")
    data: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for sub, keys in _DURATIONS.items():
        if not sub:
            _durations(data, keys, "")
        elif isinstance(data.get(sub), dict):
            _durations(data[sub], keys, f"{sub}.")
    try:
        return msgspec.convert(data, NotifierConfig, strict=False)
    except NotifierConfigError:
        raise
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Object contains unknown field `x` - at `$.retry`"
        text = str(exc).replace("`$.", "`notifier.").replace("`$`", "`notifier`")
        prefix = "tocsin." if text.startswith("notifier.") else "tocsin.notifier: "
        raise NotifierConfigError(prefix + text) from None


def check_fallbacks(cfg: NotifierConfig, receivers: Iterable[str]) -> list[str]:
    """Problems of ``fallbacks`` against the configured receiver names: unknown names and cycles."""
    names = set(receivers)
    problems = []
    for name, target in sorted(cfg.fallbacks.items()):
        if name not in names:
            problems.append(f"notifier.fallbacks: unknown receiver {name!r}")
        if target not in names:
            problems.append(f"notifier.fallbacks.{name}: unknown fallback receiver {target!r}")
    for start in sorted(cfg.fallbacks):
        seen = [start]
        node = cfg.fallbacks.get(start)
        while node is not None:
            if node in seen:
                if node == start:
                    problems.append(f"notifier.fallbacks: cycle {' -> '.join([*seen, node])}")
                break
            seen.append(node)
            node = cfg.fallbacks.get(node)
    return problems
