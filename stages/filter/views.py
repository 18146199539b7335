"""Read-only views of the filter's state for the API (pure functions).

They read only keys of the asked organisation: ``silence/<org>/...`` and ``ack/<org>/...``
by prefix, and exact ``inhibit/``/``group/`` keys, so a mapping holding just those keys
(e.g. rebuilt from the state subjects of one organisation) is enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import msgspec

from contracts.messages import Alert, Silence
from stages.filter.acks import is_active
from stages.filter.config import FilterConfig
from stages.filter.inhibit import inhibited_by
from stages.filter.silences import SilenceState, silence_state, silenced_by
from stages.filter.state import AckValue, SilenceValue, StateValue, group_record, silence_key

__all__ = [
    "AckStatus",
    "AlertStatus",
    "SilenceStatus",
    "acks_view",
    "alert_statuses",
    "group_muted_by",
    "silence_view",
    "silences_view",
]

_STATE_ORDER = {"active": 0, "pending": 1, "expired": 2}


class SilenceStatus(msgspec.Struct, frozen=True, kw_only=True):
    silence: Silence
    state: SilenceState


class AlertStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Alertmanager's ``status`` of an alert in API v2 (``state`` never "unprocessed")."""

    fingerprint: str
    state: Literal["active", "suppressed"]
    silenced_by: list[str]
    inhibited_by: list[str]
    muted_by: list[str]


class AckStatus(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["group", "alert"]
    target: str  # group key or fingerprint
    at: float
    by: str
    comment: str
    expires_at: float | None
    active: bool


def _prefixed(state: Mapping[str, StateValue], prefix: str) -> Iterable[StateValue]:
    return (value for key, value in state.items() if key.startswith(prefix))


def _org_silences(state: Mapping[str, StateValue], org: str) -> list[Silence]:
    return [v.silence for v in _prefixed(state, f"silence/{org}/") if isinstance(v, SilenceValue)]


def _sort_key(st: SilenceStatus) -> tuple[int, float, str]:
    s = st.silence
    # Alertmanager's API order: active by soonest end, pending by soonest start,
    # expired by most recent end.
    when = {"active": s.ends_at, "pending": s.starts_at, "expired": -s.ends_at}[st.state]
    return _STATE_ORDER[st.state], when, s.id


def silences_view(state: Mapping[str, StateValue], org: str, now: float) -> list[SilenceStatus]:
    """The organisation's silences with their state at ``now``, in Alertmanager's API order."""
    out = [SilenceStatus(silence=s, state=silence_state(s, now)) for s in _org_silences(state, org)]
    return sorted(out, key=_sort_key)


def silence_view(state: Mapping[str, StateValue], org: str, silence_id: str, now: float) -> SilenceStatus | None:
    value = state.get(silence_key(org, silence_id))
    if not isinstance(value, SilenceValue):
        return None
    return SilenceStatus(silence=value.silence, state=silence_state(value.silence, now))


def group_muted_by(state: Mapping[str, StateValue], org: str, group_key: str) -> list[str]:
    """The time intervals that muted the group at its last flush."""
    record = group_record(state, org, group_key)
    return list(record.muted_by) if record is not None else []


def alert_statuses(state: Mapping[str, StateValue], config: FilterConfig, org: str, alerts: Sequence[Alert],
                   now: float, group_keys: Mapping[str, Sequence[str]] | None = None) -> list[AlertStatus]:
    """Each alert's status at ``now``: the active silences matching it, the sources
    inhibiting it, and (when ``group_keys`` maps its fingerprint to the keys of the groups
    it is in) the time intervals muting those groups."""
    silences = _org_silences(state, org)
    out = []
    for a in alerts:
        silenced = silenced_by(silences, a.labels, now)
        inhibited = inhibited_by(state, config, org, a.labels, now)
        muted = sorted({name for gk in (group_keys or {}).get(a.fingerprint, ())
                        for name in group_muted_by(state, org, gk)})
        suppressed = bool(silenced or inhibited or muted)
        out.append(AlertStatus(fingerprint=a.fingerprint, state="suppressed" if suppressed else "active",
                               silenced_by=silenced, inhibited_by=inhibited, muted_by=muted))
    return out


def acks_view(state: Mapping[str, StateValue], org: str, now: float) -> list[AckStatus]:
    """The organisation's acknowledgements, groups first, then by time."""
    out = [
        AckStatus(kind=v.kind, target=v.target, at=v.at, by=v.by, comment=v.comment, expires_at=v.expires_at,
                  active=is_active(v, now))
        for v in _prefixed(state, f"ack/{org}/") if isinstance(v, AckValue)
    ]
    return sorted(out, key=lambda s: (s.kind != "group", s.at, s.target))
