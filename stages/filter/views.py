"""Read-only views of the filter's state for the API (pure functions).

The API reads the filter's state subjects of one organisation (by the prefixes named here:
``*_PREFIXES``, each ``<prefix>/<org>/``, or one exact key), decodes them with
:func:`decode_value` and hands the mapping back to these functions, which answer with plain
view objects (``contracts`` messages, the structs below). The state layout (``state.py``)
stays the filter's own: the API never looks inside a value.

They read only keys of the asked organisation: ``silence/<org>/...`` and ``ack/<org>/...``
by prefix, and exact ``inhibit/``/``group/`` keys, so a mapping holding just those keys
(e.g. rebuilt from the state subjects of one organisation) is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import msgspec

from contracts.matchers import Matcher, format_labelset, matchers_match
from contracts.messages import Alert, Silence, SilenceCommand
from pipeline.foundation.amconfig import Config
from stages.filter.acks import is_active
from stages.filter.config import FilterConfig, filter_config, filter_options
from stages.filter.escalation import policy_for
from stages.filter.inhibit import inhibited_by
from stages.filter.silences import SilenceError, SilenceState, plan_upsert, silence_state, silenced_by, validate_silence
from stages.filter.state import (
    AckValue,
    FiringAlert,
    GroupRecord,
    GroupState,
    SilenceValue,
    StateValue,
    firing_key,
    group_record,
    group_record_key,
    silence_key,
)

__all__ = [
    "ACK_PREFIXES",
    "ESCALATION_PREFIXES",
    "FIRING_PREFIXES",
    "SILENCE_PREFIXES",
    "STATUS_PREFIXES",
    "AckStatus",
    "AlertStatus",
    "EscalationPolicyView",
    "EscalationStatus",
    "FilterConfig",
    "FilterValue",
    "SilenceError",
    "SilenceStatus",
    "StatusReader",
    "ack_refusal",
    "acks_view",
    "alert_statuses",
    "decode_value",
    "escalation_policies_view",
    "escalations_view",
    "firing_key",
    "group_muted_by",
    "group_muting",
    "group_mutings",
    "group_record_key",
    "plan_silence",
    "silence_key",
    "silence_matches",
    "silence_status",
    "silence_view",
    "silences_view",
    "status_config",
    "validate_silence",
]

FilterValue = StateValue  # a decoded state value: the API holds it, never looks inside
# The state prefixes (``<prefix>/<org>/``) each read needs
SILENCE_PREFIXES: Final = ("silence", "silences")
STATUS_PREFIXES: Final = ("silence", "inhibit", "group")  # alert_statuses
ACK_PREFIXES: Final = ("ack",)
ESCALATION_PREFIXES: Final = ("group",)
FIRING_PREFIXES: Final = ("firing",)
_decoder = msgspec.json.Decoder(StateValue)

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


class _RecordMuting(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="g"):
    """A :class:`GroupRecord` decoded up to ``muted_by`` only (the fields before it are
    skipped as raw JSON, those after it ignored): a group's last flush holds its alerts."""

    group_key: msgspec.Raw
    group_id: msgspec.Raw
    receiver: msgspec.Raw
    group_labels: msgspec.Raw
    flush_seq: msgspec.Raw
    sent_at: msgspec.Raw
    firing: msgspec.Raw
    alerts: msgspec.Raw
    muted_by: list[str]


class _GroupMuting(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="G"):
    """A :class:`GroupState` decoded up to its record's ``muted_by`` only."""

    record: _RecordMuting | None = None


_muting_decoder = msgspec.json.Decoder(_GroupMuting | _RecordMuting)


def group_muting(data: bytes) -> list[str]:
    """The time intervals that muted a group at its last flush (:func:`group_muted_by`), from
    the raw value at its :func:`group_record_key`. Decodes nothing else of it: 10,000 groups'
    last flushes, decoded in full, cost a groups read a second."""
    try:
        value = _muting_decoder.decode(data)
    except msgspec.DecodeError:  # another value under the prefix: as group_record reads it
        full = _decoder.decode(data)
        record = full.record if isinstance(full, GroupState) else full
        return list(record.muted_by) if isinstance(record, GroupRecord) else []
    muting = value.record if isinstance(value, _GroupMuting) else value
    return list(muting.muted_by) if muting is not None else []


def group_mutings(entries: Iterable[tuple[str, bytes]]) -> dict[str, list[str]]:
    """:func:`group_muting` of each (state key, raw value) under the ``group`` prefix, by key."""
    return {key: group_muting(data) for key, data in entries}


class StatusReader:
    """:func:`alert_statuses` for many alerts of one organisation at one ``now``, the state
    scanned once: a read of 10,000 groups asks once per group, and gathering the silences
    from the whole state on each ask made it quadratic (seconds).

    ``mutings`` (from :func:`group_mutings`): the groups' time intervals, when ``state``
    was read without the ``group`` prefix."""

    __slots__ = ("_config", "_muted", "_mutings", "_now", "_org", "_silences", "_state")

    def __init__(self, state: Mapping[str, StateValue], config: FilterConfig, org: str, now: float,
                 mutings: Mapping[str, list[str]] | None = None) -> None:
        self._state, self._config, self._org, self._now = state, config, org, now
        self._mutings = mutings
        # only the silences active at ``now`` can silence (silenced_by checks again: same answer)
        self._silences = [s for s in _org_silences(state, org) if silence_state(s, now) == "active"]
        self._muted: dict[str, list[str]] = {}

    def _muted_by(self, group_key: str) -> list[str]:
        names = self._muted.get(group_key)
        if names is None:
            if self._mutings is None:
                names = group_muted_by(self._state, self._org, group_key)
            else:
                names = list(self._mutings.get(group_record_key(self._org, group_key), ()))
            self._muted[group_key] = names
        return names

    def status(self, alert: Alert, group_keys: Sequence[str] = ()) -> AlertStatus:
        """The alert's status; ``group_keys``: the groups it is in (their time intervals mute it)."""
        silenced = silenced_by(self._silences, alert.labels, self._now) if self._silences else []
        inhibited = inhibited_by(self._state, self._config, self._org, alert.labels, self._now)
        muted = sorted({name for gk in group_keys for name in self._muted_by(gk)})
        suppressed = bool(silenced or inhibited or muted)
        return AlertStatus(fingerprint=alert.fingerprint, state="suppressed" if suppressed else "active",
                           silenced_by=silenced, inhibited_by=inhibited, muted_by=muted)


def alert_statuses(state: Mapping[str, StateValue], config: FilterConfig, org: str, alerts: Sequence[Alert],
                   now: float, group_keys: Mapping[str, Sequence[str]] | None = None) -> list[AlertStatus]:
    """Each alert's status at ``now``: the active silences matching it, the sources
    inhibiting it, and (when ``group_keys`` maps its fingerprint to the keys of the groups
    it is in) the time intervals muting those groups. Many calls on one state: use a
    :class:`StatusReader`."""
    reader = StatusReader(state, config, org, now)
    keys = group_keys or {}
    return [reader.status(a, keys.get(a.fingerprint, ())) for a in alerts]


def acks_view(state: Mapping[str, StateValue], org: str, now: float) -> list[AckStatus]:
    """The organisation's acknowledgements, groups first, then by time."""
    out = [
        AckStatus(kind=v.kind, target=v.target, at=v.at, by=v.by, comment=v.comment, expires_at=v.expires_at,
                  active=is_active(v, now))
        for v in _prefixed(state, f"ack/{org}/") if isinstance(v, AckValue)
    ]
    return sorted(out, key=lambda s: (s.kind != "group", s.at, s.target))


def decode_value(data: bytes) -> FilterValue:
    """A state value as the filter wrote it (``msgspec.DecodeError`` if it is not one)."""
    return _decoder.decode(data)


def status_config(config: Config, section: Mapping[str, Any] | None) -> FilterConfig:
    """What :func:`alert_statuses` needs of an organisation's configuration (inhibit rules, time
    intervals, escalation policies), compiled as the filter compiles it."""
    return filter_config(config, filter_options(section))


def silence_status(value: FilterValue | None, now: float) -> SilenceStatus | None:
    """The silence a value read alone (its key :func:`silence_key`) holds, with its state at ``now``."""
    if not isinstance(value, SilenceValue):
        return None
    return SilenceStatus(silence=value.silence, state=silence_state(value.silence, now))


def plan_silence(previous: FilterValue | None, org: str, silence: Silence, now: float,
                 new_id: Callable[[], str]) -> SilenceCommand:
    """The command that creates or replaces a silence (Alertmanager's ``Set``), given the value
    at :func:`silence_key` of ``silence.id`` (None: a new silence); ``SilenceError`` if it cannot be."""
    state: dict[str, StateValue] = {}
    if isinstance(previous, SilenceValue):
        state[silence_key(org, silence.id)] = previous
    return plan_upsert(state, org, silence, now, new_id)


def silence_matches(silence: Silence, labels: Mapping[str, str], at: float) -> bool:
    """``silence`` is active at ``at`` and matches ``labels``."""
    return bool(silenced_by([silence], labels, at))


class EscalationStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A running escalation of a group, as the API lists it."""

    group_key: str
    receiver: str
    group_labels: dict[str, str]
    policy: str
    ack: str
    started_at: float
    level: int  # the last level notified
    steps_done: int
    steps: int
    paused: bool
    next_step_at: float | None
    fingerprints: list[str]  # the group's alerts unresolved at ``now``


def escalations_view(state: Mapping[str, StateValue], org: str, now: float) -> list[EscalationStatus]:
    """The running escalations of the organisation's groups (state read by ``ESCALATION_PREFIXES``)."""
    out = []
    for key, gs in state.items():
        if not key.startswith(f"group/{org}/") or not isinstance(gs, GroupState):
            continue
        esc, last = gs.esc, gs.last
        if esc is None or last is None:
            continue
        f = last.flush
        out.append(EscalationStatus(
            group_key=f.group_key, receiver=f.receiver, group_labels=f.group_labels, policy=esc.policy,
            ack=esc.ack, started_at=esc.started_at, level=esc.level_of(esc.next - 1) if esc.next else 0,
            steps_done=esc.next, steps=esc.total, paused=esc.paused, next_step_at=esc.due_at,
            fingerprints=[a.fingerprint for a in f.alerts if not a.resolved_at(now)]))
    return out


class EscalationPolicyView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    matchers: list[str]
    ack: str
    repeat: int
    steps: list[tuple[float, list[str]]]  # (after, receivers)


def escalation_policies_view(config: FilterConfig) -> list[EscalationPolicyView]:
    """The configured escalation policies, in order."""
    return [EscalationPolicyView(name=p.name, matchers=[str(m) for m in p.matchers], ack=p.ack, repeat=p.repeat,
                                 steps=[(s.after, list(s.receivers)) for s in p.steps])
            for p in config.escalation]


def ack_refusal(config: FilterConfig, *, group: FilterValue | None = None,
                firing: Mapping[str, StateValue] | None = None,
                matchers: Sequence[Matcher] | None = None) -> str | None:
    """Why an acknowledgement is refused (``ack: forbidden``), or None.

    For a group: ``group`` is the value at its :func:`group_record_key`. For alerts: ``firing``
    holds the firing alerts it names (the value at a :func:`firing_key`, or the organisation's
    ``FIRING_PREFIXES`` state with the ack's ``matchers``)."""
    if firing is None:
        esc = group.esc if isinstance(group, GroupState) else None
        if esc is not None and esc.ack == "forbidden":
            return (f"the escalation policy {esc.policy!r} of this group forbids acknowledgements "
                    "(ack: forbidden): it escalates until the alerts resolve")
        return None
    if not config.escalation:
        return None
    labelsets = [v.labels for v in firing.values()
                 if isinstance(v, FiringAlert) and (matchers is None or matchers_match(matchers, v.labels))]
    for labels in labelsets:
        policy = policy_for(config.escalation, [labels])
        if policy is not None and policy.ack == "forbidden":
            return (f"the escalation policy {policy.name!r} of alert {format_labelset(labels)} forbids "
                    "acknowledgements (ack: forbidden): it escalates until the alert resolves")
    return None
