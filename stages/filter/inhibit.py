"""Inhibition as Alertmanager's inhibitor, over an index kept in state.

A target alert is muted while a *source* alert of the same organisation fires, for a rule
whose target matchers match the target and whose source matchers match the source, when
both have equal values of the rule's ``equal`` labels (a missing label counts as empty).
A target that also matches the rule's source side is not muted by sources that also match
the target side (Alertmanager's two-sided exception: such alerts never inhibit each other).

The index: for each rule, the firing sources bucketed by the hash of their ``equal``
values (``inhibit/<org>/<rule id>/<equal hash>``), kept from AlertChange inputs. A target
looks in exactly one bucket per rule. A source counts while its ``ends_at`` is unknown or
after the flush time, as Alertmanager's ``ResolvedAt(now)`` check.

Alertmanager (0.28+) indexes one source per bucket and may miss a one-sided source behind
a two-sided one; Tocsin checks every source of the bucket, as Alertmanager did before.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.messages import Alert
from stages.filter.config import CompiledInhibitRule, FilterConfig
from stages.filter.state import FiringAlert, InhibitSources, SourceRef, StateValue, inhibit_key

__all__ = [
    "drop_expired_sources",
    "index_firing",
    "index_resolved",
    "inhibited_by",
    "reindex",
]

Changes = dict[str, StateValue | None]


def _get(state: Mapping[str, StateValue], changes: Changes, key: str) -> StateValue | None:
    return changes[key] if key in changes else state.get(key)


def index_firing(state: Mapping[str, StateValue], cfg: FilterConfig, alert: Alert, changes: Changes) -> None:
    """Record a firing (new or updated) alert as a source of every rule whose source side it matches."""
    for rule in cfg.inhibit_rules:
        if not rule.source_matches(alert.labels):
            continue
        key = inhibit_key(alert.org, rule.id, rule.equal_hash(alert.labels))
        ref = SourceRef(ends_at=alert.ends_at, both=rule.target_matches(alert.labels))
        old = _get(state, changes, key)
        sources = dict(old.sources) if isinstance(old, InhibitSources) else {}
        if sources.get(alert.fingerprint) != ref:
            sources[alert.fingerprint] = ref
            changes[key] = InhibitSources(sources=sources)


def index_resolved(state: Mapping[str, StateValue], cfg: FilterConfig, alert: Alert, changes: Changes) -> None:
    """Remove a resolved alert from every bucket it was a source in."""
    for rule in cfg.inhibit_rules:
        if not rule.source_matches(alert.labels):
            continue
        key = inhibit_key(alert.org, rule.id, rule.equal_hash(alert.labels))
        old = _get(state, changes, key)
        if isinstance(old, InhibitSources) and alert.fingerprint in old.sources:
            sources = {fp: ref for fp, ref in old.sources.items() if fp != alert.fingerprint}
            changes[key] = InhibitSources(sources=sources) if sources else None


def drop_expired_sources(value: InhibitSources, now: float) -> InhibitSources | None:
    """The bucket without sources ended at or before ``now`` (None when empty)."""
    sources = {fp: ref for fp, ref in value.sources.items() if ref.ends_at is None or ref.ends_at > now}
    return InhibitSources(sources=sources) if sources else None


def _rule_sources(state: Mapping[str, StateValue], rule: CompiledInhibitRule, org: str,
                  labels: Mapping[str, str], t: float) -> list[str]:
    bucket = state.get(inhibit_key(org, rule.id, rule.equal_hash(labels)))
    if not isinstance(bucket, InhibitSources):
        return []
    two_sided = rule.source_matches(labels)
    return sorted(
        fp for fp, ref in bucket.sources.items()
        if (ref.ends_at is None or ref.ends_at > t) and not (two_sided and ref.both)
    )


def inhibited_by(state: Mapping[str, StateValue], cfg: FilterConfig, org: str, labels: Mapping[str, str],
                 t: float) -> list[str]:
    """Fingerprints of the sources inhibiting ``labels`` at ``t`` under the first rule that
    inhibits it (empty: not inhibited)."""
    for rule in cfg.inhibit_rules:
        if rule.target_matches(labels):
            found = _rule_sources(state, rule, org, labels, t)
            if found:
                return found
    return []


def reindex(state: Mapping[str, StateValue], cfg: FilterConfig, max_changes: int = 500) -> list[Changes]:
    """Rebuild the source index from the firing alerts for the current rules (after a config
    change), as change sets of at most ``max_changes`` keys to commit in order.

    Sources already indexed keep their ``ends_at``; sources found only through their
    firing record get ``None`` (their next AlertChange sets it). Buckets of rules that no
    longer exist are deleted.
    """
    wanted: dict[str, dict[str, SourceRef]] = {}
    for key, value in state.items():
        if not key.startswith("firing/") or not isinstance(value, FiringAlert):
            continue
        _, org, fp = key.split("/", 2)
        for rule in cfg.inhibit_rules:
            if rule.source_matches(value.labels):
                bucket_key = inhibit_key(org, rule.id, rule.equal_hash(value.labels))
                old = state.get(bucket_key)
                ends_at = old.sources[fp].ends_at if isinstance(old, InhibitSources) and fp in old.sources else None
                wanted.setdefault(bucket_key, {})[fp] = SourceRef(ends_at=ends_at,
                                                                 both=rule.target_matches(value.labels))
    all_changes: Changes = {}
    for key in state:
        if key.startswith("inhibit/") and key not in wanted:
            all_changes[key] = None
    for key in sorted(wanted):
        new = InhibitSources(sources=wanted[key])
        if state.get(key) != new:
            all_changes[key] = new
    items = list(all_changes.items())
    return [dict(items[i:i + max_changes]) for i in range(0, len(items), max(1, max_changes))]
