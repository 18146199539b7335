"""The filter stage's state: one value type per key family, and the key formats.

Every key is ``<family>/<org>/...`` so the API can list one organisation's silences or
acknowledgements with a key prefix (``silence/<org>/``, ``ack/<org>/``):

=================================================  ==========================================
``silence/<org>/<id>``                             :class:`SilenceValue`, one per silence
``silences/<org>``                                 :class:`SilenceIndex`, the org's silence ids
``ack/<org>/group/<group hash>``                   :class:`AckValue` of an alert group
``ack/<org>/alert/<fingerprint>``                  :class:`AckValue` of one alert
``group/<org>/<group hash>``                       :class:`GroupState`: a group's record (what it
                                                   last sent), its notification log entries and
                                                   its last flush, written together
``firing/<org>/<fingerprint>``                     :class:`FiringAlert`, every firing alert
``inhibit/<org>/<rule id>/<equal hash>``           :class:`InhibitSources`, firing sources of a
                                                   rule with equal values of its ``equal`` labels
=================================================  ==========================================

A group's three parts share one key because a flush that notifies changes all three: one
state write per flush instead of three (each write is a rollup, the dearest thing a stage
asks of JetStream). Builds before 2026-11-22 kept them under keys of their own
(``nflog/<org>/<group_id>/<receiver>/<kind>/<i>``, ``flush/<org>/<group_id>``, and a bare
:class:`GroupRecord` at the group key); the core still reads those and moves them to the
group's key when it next writes it (:func:`legacy_nflog_key`).

``<group hash>`` is :func:`group_hash` of the group key (acknowledgements name groups by
key, flushes carry both). Values are ``array_like`` tagged Structs (compact on the wire,
``StateValue`` decodes any of them); ``due_at`` is each value's timer (``None``: no timer).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Literal

import msgspec

from contracts.messages import Alert, Silence
from stages.filter.escalation import Escalation
from stages.filter.ticks import LastFlush, send_seq

__all__ = [
    "AckValue",
    "FiringAlert",
    "GroupRecord",
    "GroupState",
    "InhibitSources",
    "NflogEntry",
    "SilenceIndex",
    "SilenceValue",
    "SourceRef",
    "StateValue",
    "ack_alert_key",
    "ack_group_key",
    "firing_key",
    "group_hash",
    "group_record",
    "group_record_key",
    "inhibit_key",
    "legacy_nflog_key",
    "log_key",
    "silence_index_key",
    "silence_key",
]


@functools.lru_cache(maxsize=1 << 12)  # a flush names its group three times (state, log, acknowledgement)
def group_hash(group_key: str) -> str:
    """A short stable name for a group key, safe inside state keys."""
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


def silence_key(org: str, silence_id: str) -> str:
    return f"silence/{org}/{silence_id}"


def silence_index_key(org: str) -> str:
    return f"silences/{org}"


def ack_group_key(org: str, group_key: str) -> str:
    return f"ack/{org}/group/{group_hash(group_key)}"


def ack_alert_key(org: str, fingerprint: str) -> str:
    return f"ack/{org}/alert/{fingerprint}"


def legacy_nflog_key(org: str, group_id: str, receiver: str, kind: str, index: int) -> str:
    """Where a notification log entry was kept by older builds (read, moved, deleted)."""
    return f"nflog/{org}/{group_id}/{receiver}/{kind}/{index}"


def log_key(receiver: str, kind: str, index: int) -> str:
    """An integration's entry in :attr:`GroupState.log`."""
    return f"{receiver}/{kind}/{index}"


def group_record_key(org: str, group_key: str) -> str:
    return f"group/{org}/{group_hash(group_key)}"


def firing_key(org: str, fingerprint: str) -> str:
    return f"firing/{org}/{fingerprint}"


def inhibit_key(org: str, rule_id: str, equal_hash: str) -> str:
    return f"inhibit/{org}/{rule_id}/{equal_hash}"


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


class SilenceValue(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="s"):
    """A silence and when it is deleted (``ends_at`` + retention, as Alertmanager's ExpiresAt)."""

    silence: Silence
    expires_at: float

    @property
    def due_at(self) -> float | None:
        return self.expires_at


class SilenceIndex(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="si"):
    """The ids of an organisation's silences (sorted), so a flush need not scan the state."""

    ids: list[str]

    @property
    def due_at(self) -> float | None:
        return None


class AckValue(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="k"):
    """An acknowledgement of a group (``group_key``) or of one alert (``fingerprint``).

    ``covers`` maps the fingerprints it acknowledged to their ``starts_at`` (the occurrence
    seen); ``None`` when nothing was known at acknowledgement time: then it covers the
    occurrences that started at or before ``at``. ``gc_at`` deletes an alert's ack once
    the alert has resolved and every flush had time to see the resolution.
    """

    kind: Literal["group", "alert"]
    target: str  # the group key, or the fingerprint
    at: float
    by: str = ""
    comment: str = ""
    expires_at: float | None = None
    covers: dict[str, float] | None = None
    gc_at: float | None = None

    @property
    def due_at(self) -> float | None:
        return _earliest(self.expires_at, self.gc_at)


class NflogEntry(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="n"):
    """What was last notified to one integration of one group (Alertmanager's nflog entry)."""

    firing: list[str]  # sorted fingerprints
    resolved: list[str]
    at: float  # the flush time of the notification
    expires_at: float

    @property
    def due_at(self) -> float | None:
        return self.expires_at


class GroupRecord(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="g"):
    """A group as last sent, for acknowledgements (PagerDuty ``acknowledge``) and views.

    Written when a flush sends, when its time muting changes, and to keep it alive; a flush
    that sends nothing writes nothing. ``alerts`` is kept only for receivers with PagerDuty
    integrations (an acknowledge event needs the alerts to render).
    """

    group_key: str
    group_id: str
    receiver: str
    group_labels: dict[str, str]
    flush_seq: int  # of the last send
    sent_at: float
    firing: dict[str, float]  # fingerprint -> starts_at of the firing alerts last sent
    alerts: list[Alert]
    muted_by: list[str]  # time intervals muting the group at its last flush
    seen_at: float  # last flush (refreshed coarsely, to keep writes rare)
    expires_at: float
    trace: dict[str, str] = {}
    tick: int = 0  # of the last send: 0 for the router's flush, k for a re-evaluation k ticks later

    @property
    def due_at(self) -> float | None:
        return self.expires_at

    @property
    def send_seq(self) -> str:
        """The flush sequence part of the last send's id."""
        return send_seq(self.flush_seq, self.tick)


class GroupState(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="G"):
    """Everything the filter keeps per group (key: the group key's hash).

    Its timer is the earliest of its parts': the next re-evaluation of the last flush, the
    expiry of a log entry, the expiry of the record, the next step of its escalation.
    """

    record: GroupRecord | None = None
    log: dict[str, NflogEntry] = {}  # log_key(receiver, kind, index) -> entry
    last: LastFlush | None = None
    esc: Escalation | None = None  # its running escalation (stages.filter.escalation)

    @property
    def due_at(self) -> float | None:
        # (_earliest of the parts' times, unrolled: every flush of every group asks this)
        due = None if self.last is None else self.last.due_at
        if self.record is not None and (due is None or self.record.expires_at < due):
            due = self.record.expires_at
        if self.esc is not None:
            esc = self.esc.due_at
            if esc is not None and (due is None or esc < due):
                due = esc
        for e in self.log.values():
            if due is None or e.expires_at < due:
                due = e.expires_at
        return due

    @property
    def empty(self) -> bool:
        return self.record is None and not self.log and self.last is None and self.esc is None


def group_record(state: Mapping[str, StateValue], org: str, group_key: str) -> GroupRecord | None:
    """What a group last sent (from its :class:`GroupState`, or a bare record of an older build)."""
    value = state.get(group_record_key(org, group_key))
    record = value.record if isinstance(value, GroupState) else value
    return record if isinstance(record, GroupRecord) else None


class FiringAlert(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="f"):
    """A firing alert of the partition (from AlertChange): what inhibition re-indexing and
    alert acknowledgements need. Rewritten only when a new occurrence starts."""

    labels: dict[str, str]
    starts_at: float

    @property
    def due_at(self) -> float | None:
        return None


class SourceRef(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One firing source alert of an inhibit rule."""

    ends_at: float | None  # Alertmanager's EndsAt: resolved once it has passed
    both: bool  # the source matches the rule's target side too


class InhibitSources(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="i"):
    """The firing sources of one rule sharing the values of the rule's ``equal`` labels."""

    sources: dict[str, SourceRef]  # fingerprint -> ref

    @property
    def due_at(self) -> float | None:
        # Drop sources whose end passed (Alertmanager's source cache GC): unobservable
        # otherwise, since lookups skip them.
        return _earliest(*(ref.ends_at for ref in self.sources.values()))


StateValue = (SilenceValue | SilenceIndex | AckValue | GroupState | FiringAlert | InhibitSources
              # older builds (see the module's docstring)
              | NflogEntry | GroupRecord | LastFlush)
