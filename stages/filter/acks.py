"""Acknowledgements (Tocsin's own; Alertmanager has none).

An ``AckCommand`` acknowledges a group (by group key), one alert (by fingerprint) or the
firing alerts matching some matchers (each by its fingerprint), with
who, a comment and an optional expiry. An acknowledgement covers the occurrences that were
known when it was made: for a group, the firing alerts of its last notification; for an
alert, its current occurrence (its ``starts_at``). When nothing was known, it covers the
occurrences that started at or before the acknowledgement. A covered alert is not
notified again on repeat; a new alert, a new occurrence (a new ``starts_at``) or changed
labels (a new fingerprint) is not covered, so it notifies as usual. Expiry ends it.

Garbage collection: an expired acknowledgement is deleted by its timer; an alert's
acknowledgement is deleted when a new occurrence of the alert fires, or a retention period
after the alert resolved; a group's is deleted at the first flush with nothing it covers
(and with the group's record).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from contracts.matchers import Matcher, MatcherError, matchers_match, parse_matcher
from contracts.messages import AckCommand, Alert, AlertChange
from stages.filter.state import (
    AckValue,
    FiringAlert,
    StateValue,
    ack_alert_key,
    ack_group_key,
    firing_key,
    group_record,
)

__all__ = ["AckError", "ack_changes_for_alert", "apply_ack_command", "covered", "is_active",
           "matching_fingerprints", "parse_ack_matchers"]

Changes = dict[str, StateValue | None]


class AckError(ValueError):
    """An acknowledgement command that can never be applied."""


def is_active(ack: AckValue, t: float) -> bool:
    return ack.expires_at is None or ack.expires_at > t


def covered(ack: AckValue, alert: Alert, t: float) -> bool:
    """Whether ``ack`` (active at ``t``) covers this occurrence of ``alert``."""
    if not is_active(ack, t):
        return False
    if ack.covers is None:
        return alert.starts_at <= ack.at
    return ack.covers.get(alert.fingerprint) == alert.starts_at


def apply_ack_command(state: Mapping[str, StateValue], cmd: AckCommand) -> tuple[Changes, bool]:
    """The state changes of an ack/unack, and whether a group became newly acknowledged by
    its group key. ``matchers`` acknowledge each firing alert they match by its fingerprint."""
    if sum(map(bool, (cmd.group_key, cmd.fingerprint, cmd.matchers))) != 1:
        raise AckError("exactly one of group_key, fingerprint and matchers must be given")
    if cmd.matchers:
        changes: Changes = {}
        for fp in matching_fingerprints(state, cmd.org, cmd.matchers):
            changes.update(apply_ack_command(state, msgspec.structs.replace(cmd, matchers=[], fingerprint=fp))[0])
        return changes, False
    if cmd.group_key:
        key = ack_group_key(cmd.org, cmd.group_key)
    else:
        key = ack_alert_key(cmd.org, cmd.fingerprint)
    old = state.get(key)
    if cmd.action == "unack":
        return ({key: None} if old is not None else {}), False
    if cmd.expires_at is not None and cmd.expires_at <= cmd.at:
        raise AckError("the acknowledgement would expire before it is made")
    covers: dict[str, float] | None = None
    if cmd.group_key:
        record = group_record(state, cmd.org, cmd.group_key)
        if record is not None and record.firing:
            covers = dict(record.firing)
    else:
        firing = state.get(firing_key(cmd.org, cmd.fingerprint))
        if isinstance(firing, FiringAlert):
            covers = {cmd.fingerprint: firing.starts_at}
    value = AckValue(
        kind="group" if cmd.group_key else "alert",
        target=cmd.group_key or cmd.fingerprint,
        at=cmd.at,
        by=cmd.by,
        comment=cmd.comment,
        expires_at=cmd.expires_at,
        covers=covers,
    )
    was_active = isinstance(old, AckValue) and is_active(old, cmd.at)
    return {key: value}, bool(cmd.group_key) and not was_active


def parse_ack_matchers(texts: list[str]) -> list[Matcher]:
    try:
        return [parse_matcher(t) for t in texts]
    except MatcherError as exc:
        raise AckError(f"invalid matcher: {exc}") from None


def matching_fingerprints(state: Mapping[str, StateValue], org: str, texts: list[str]) -> list[str]:
    """The firing alerts of ``org`` (in this partition's state) matching every matcher, sorted."""
    matchers = parse_ack_matchers(texts)
    prefix = f"firing/{org}/"
    return sorted(key[len(prefix):] for key, v in state.items()
                  if key.startswith(prefix) and isinstance(v, FiringAlert) and matchers_match(matchers, v.labels))


def ack_changes_for_alert(state: Mapping[str, StateValue], change: AlertChange, now: float,
                          retention: float) -> Changes:
    """Garbage-collect an alert's acknowledgement as the alert changes."""
    alert = change.alert
    key = ack_alert_key(alert.org, alert.fingerprint)
    ack = state.get(key)
    if not isinstance(ack, AckValue):
        return {}
    if change.change == "resolved":
        if ack.gc_at is None:
            end = alert.ends_at if alert.ends_at is not None else now
            return {key: msgspec.structs.replace(ack, gc_at=max(now, end) + retention)}
        return {}
    if not covered(msgspec.structs.replace(ack, expires_at=None), alert, now):
        return {key: None}  # a new occurrence: the acknowledgement was for an earlier one
    if ack.gc_at is not None:
        return {key: msgspec.structs.replace(ack, gc_at=None)}
    return {}
