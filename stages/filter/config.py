"""The filter stage's configuration: what it needs of alertmanager.yml plus Tocsin's options.

``filter_config(config, options)`` compiles a loaded Alertmanager ``Config``: inhibit rules
(legacy ``source_match``/``source_match_re`` and ``matchers`` forms together), named time
intervals, and each receiver's delivered integrations with their ``send_resolved``.
``filter_options(mapping)`` validates Tocsin's own ``filter`` options (unknown keys are
errors); every option has a default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.matchers import Matcher, matchers_match
from pipeline.foundation.amconfig import (
    Config,
    InhibitRule,
    TimeIntervals,
    compile_time_intervals,
    delivered_integrations,
)
from pipeline.foundation.amconfig.durations import parse_duration
from stages.filter.escalation import EscalationPolicy, escalation_policies

__all__ = [
    "DEFAULT_NFLOG_RETENTION",
    "DEFAULT_SILENCE_RETENTION",
    "CompiledInhibitRule",
    "FilterConfig",
    "FilterOptions",
    "IntegrationSpec",
    "compile_inhibit_rule",
    "filter_config",
    "filter_options",
]

DEFAULT_SILENCE_RETENTION = 5 * 24 * 3600.0  # Alertmanager's --data.retention (120h)
DEFAULT_NFLOG_RETENTION = 120 * 3600.0  # likewise, for notification log entries

_json = msgspec.json.Encoder()


class FilterOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Tocsin's own filter settings (times in seconds)."""

    silence_retention: float = DEFAULT_SILENCE_RETENTION  # expired silences are kept this long
    nflog_retention: float = DEFAULT_NFLOG_RETENTION  # upper bound of a notification log entry's life
    notify_acked_resolved: bool = True  # an acknowledged alert's resolution is still notified
    notify_silenced_resolved: bool = False  # Alertmanager drops a silenced alert's resolution


_DURATIONS = ("silence_retention", "nflog_retention")
_FLAGS = ("notify_acked_resolved", "notify_silenced_resolved")


def filter_options(raw: Mapping[str, Any] | None) -> FilterOptions:
    """Validate the ``filter`` options mapping: durations as ``"5d"``-style strings or
    seconds, flags as booleans. Raises ``ValueError`` naming the offending key."""
    if raw is None:
        return FilterOptions()
    if not isinstance(raw, Mapping):
        raise ValueError(f"filter options must be a mapping, got {type(raw).__name__}")
    known = (*_DURATIONS, *_FLAGS)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ValueError(f"filter: unknown option {key!r} (known: {', '.join(known)})")
        if key in _DURATIONS:
            seconds = _duration(key, value)
            if seconds <= 0:
                raise ValueError(f"filter.{key}: must be positive, got {value!r}")
            values[key] = seconds
        elif not isinstance(value, bool):
            raise ValueError(f"filter.{key}: expected true or false, got {value!r}")
        else:
            values[key] = value
    return FilterOptions(**values)


def _duration(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"filter.{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"filter.{key}: {exc}") from None
    raise ValueError(f"filter.{key}: expected a duration, got {value!r}")


@dataclass(frozen=True, slots=True)
class CompiledInhibitRule:
    """An inhibit rule ready to evaluate; ``id`` is a hash of its content, so a changed rule
    never reads the source index of the rule it replaced."""

    id: str
    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]  # sorted, unique

    def source_matches(self, labels: Mapping[str, str]) -> bool:
        return matchers_match(self.source, labels)

    def target_matches(self, labels: Mapping[str, str]) -> bool:
        return matchers_match(self.target, labels)

    def equal_hash(self, labels: Mapping[str, str]) -> str:
        """A hash of the ``equal`` label values (a missing label counts as empty, as in
        Alertmanager), naming the index bucket of sources a target must look in."""
        values = [labels.get(name, "") for name in self.equal]
        return hashlib.sha256(_json.encode(values)).hexdigest()[:24]


def compile_inhibit_rule(rule: InhibitRule) -> CompiledInhibitRule:
    source = tuple(rule.all_source_matchers())
    target = tuple(rule.all_target_matchers())
    equal = tuple(sorted(set(rule.equal)))
    content = _json.encode([[str(m) for m in source], [str(m) for m in target], list(equal)])
    return CompiledInhibitRule(hashlib.sha256(content).hexdigest()[:12], rule.name, source, target, equal)


@dataclass(frozen=True, slots=True)
class IntegrationSpec:
    """One delivered integration of a receiver: ``<kind>_configs[index]``."""

    kind: str
    index: int
    send_resolved: bool


@dataclass(frozen=True, slots=True)
class FilterConfig:
    inhibit_rules: tuple[CompiledInhibitRule, ...] = ()
    time_intervals: TimeIntervals = field(default_factory=lambda: TimeIntervals({}))
    receivers: Mapping[str, tuple[IntegrationSpec, ...]] = field(default_factory=dict)
    options: FilterOptions = field(default_factory=FilterOptions)
    escalation: tuple[EscalationPolicy, ...] = ()  # tocsin: escalation: policies, in order


def filter_config(config: Config, options: FilterOptions | None = None,
                  escalation: tuple[EscalationPolicy, ...] | None = None) -> FilterConfig:
    """Compile what the filter needs from a loaded Alertmanager config.

    Integrations come in :func:`pipeline.foundation.amconfig.delivered_integrations` order
    (Alertmanager's: webhook, email, pagerduty, slack); kinds Tocsin does not deliver are left out.
    Escalation policies: ``escalation``, else the ``escalation`` of the config's own ``tocsin:``
    section (validated at load by :mod:`pipeline.application.settings`).
    """
    receivers = {
        rcv.name: tuple(IntegrationSpec(kind, index, bool(getattr(cfg, "send_resolved", False)))
                        for kind, index, cfg in delivered_integrations(rcv))
        for rcv in config.receivers
    }
    return FilterConfig(
        inhibit_rules=tuple(compile_inhibit_rule(r) for r in config.inhibit_rules),
        time_intervals=compile_time_intervals(config),
        receivers=receivers,
        options=options or FilterOptions(),
        escalation=escalation if escalation is not None else _escalation_of(config),
    )


def _escalation_of(config: Config) -> tuple[EscalationPolicy, ...]:
    section = config.tocsin if isinstance(config.tocsin, Mapping) else {}
    return escalation_policies(section.get("escalation"), {r.name for r in config.receivers})
