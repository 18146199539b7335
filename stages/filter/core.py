"""The pure core of the filter stage: Alertmanager's inhibitor, silencer, time muting and
notification log (DedupStage), plus Tocsin's acknowledgements, for one partition.

Inputs (``step``):

- ``GroupFlush`` (router): evaluated at its ``flushed_at``. A flush inside a
  ``mute_time_intervals`` entry, or outside all its ``active_time_intervals``, is muted as
  a whole. Otherwise inhibited and silenced alerts are removed (resolutions included, as
  Alertmanager does, unless ``notify_silenced_resolved`` and the integration was told the
  alert fired), and for each integration of the receiver the notification log decides
  (:func:`stages.filter.nflog.needs_update`) whether to send. One ``SendRequest`` per
  integration that must notify, with the remaining alerts (resolved ones only when the
  integration has ``send_resolved``), id and ``Out.msg_id``
  ``<org>/<group_id>/<receiver>/<kind>/<index>/<flush_seq>``, ``Out.subject`` the group id.
  A repeat whose firing alerts are all acknowledged is not sent.
- ``AlertChange`` (rules): keeps the inhibition source index and the firing alerts.
- ``SilenceCommand`` / ``AckCommand`` (API): see :mod:`stages.filter.silences` and
  :mod:`stages.filter.acks`. A group newly acknowledged while its PagerDuty incident is
  open (the integration's last notification had firing alerts) sends that integration a
  ``SendRequest`` with ``acknowledged=True`` and the group's last firing alerts, so the
  notifier sends an ``acknowledge`` event; its id ends in ``/<flush_seq>/ack`` (the
  flush sequence of the group's last notification). PagerDuty sends of a group whose
  firing alerts are all acknowledged carry ``acknowledged=True`` too.

Timers (``fire``): expired silences and notification log entries are deleted after their
retention, acknowledgements at expiry, group records after the notification log
retention, and inhibition sources once their ``ends_at`` passed.

Invalid commands, flushes naming a receiver or time interval the config lacks, and inputs
of other types raise :class:`~pipeline.foundation.runtime.step.Reject`.

Inhibit rules are indexed by a hash of their content: after a config change that adds or
edits rules, :meth:`FilterCore.reindex` rebuilds the index from the firing alerts (until
then a new rule only sees sources that changed since the change).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import msgspec

from contracts.messages import AckCommand, Alert, AlertChange, GroupFlush, Integration, SendRequest, SilenceCommand
from pipeline.foundation.runtime.step import Out, Reject, Step
from stages.filter.acks import AckError, ack_changes_for_alert, apply_ack_command, covered
from stages.filter.config import FilterConfig, IntegrationSpec
from stages.filter.escalation import Decision, Escalation, decide, escalation_send_seq, policy_for, speed_of, start
from stages.filter.inhibit import drop_expired_sources, index_firing, index_resolved, inhibited_by, reindex
from stages.filter.nflog import NotifyReason, entry_life, live_entry, needs_update, new_entry
from stages.filter.silences import SilenceError, apply_silence_command, delete_silence, org_silences, silenced_by
from stages.filter.state import (
    AckValue,
    FiringAlert,
    GroupRecord,
    GroupState,
    InhibitSources,
    NflogEntry,
    SilenceValue,
    StateValue,
    ack_alert_key,
    ack_group_key,
    firing_key,
    group_record,
    group_record_key,
    legacy_nflog_key,
    log_key,
)
from stages.filter.ticks import LastFlush, first_tick_after, first_tick_from, last_flush_key, send_seq

__all__ = ["FilterCore", "send_id"]

Changes = dict[str, StateValue | None]
_replace = msgspec.structs.replace
_ACKNOWLEDGEABLE = ("pagerduty", "opsgenie")  # integrations told when their group is acknowledged


def send_id(org: str, group_id: str, receiver: str, kind: str, index: int, flush_seq: int | str) -> str:
    """The deterministic id of a flush's send to one integration (``flush_seq``: the router's
    flush sequence, ``<seq>.<k>`` for the filter's re-evaluation ``k`` ticks after it)."""
    return f"{org}/{group_id}/{receiver}/{kind}/{index}/{flush_seq}"


class _Unread:
    """(No value read yet: see :meth:`FilterCore._load_group`.)"""


_UNREAD: Final = _Unread()


class _Fate(enum.Enum):
    KEEP = 1
    DROP = 2
    SILENCED_RESOLVED = 3  # kept for integrations that were told the alert fired


class FilterCore:
    """StageCore of the filter stage (state values: :data:`stages.filter.state.StateValue`)."""

    value_type = StateValue

    def __init__(self, config: FilterConfig | None = None, orgs: Mapping[str, FilterConfig] | None = None) -> None:
        self.config = config or FilterConfig()
        self.orgs = dict(orgs or {})  # organisations with a configuration of their own

    def config_for(self, org: str) -> FilterConfig:
        return self.orgs.get(org, self.config)

    # ------------------------------------------------------------------ protocol

    def step(self, state: Mapping[str, StateValue], inp: object, now: float) -> Step[StateValue]:
        if isinstance(inp, GroupFlush):
            return self._flush(state, inp)
        if isinstance(inp, AlertChange):
            return self._alert_change(state, inp, now)
        if isinstance(inp, SilenceCommand):
            try:
                retention = self.config_for(inp.org).options.silence_retention
                return Step(changes=apply_silence_command(state, inp, retention))
            except SilenceError as exc:
                raise Reject(f"invalid silence: {exc}") from None
        if isinstance(inp, AckCommand):
            return self._ack(state, inp)
        raise Reject(f"the filter does not take {type(inp).__name__}")

    def fire(self, state: Mapping[str, StateValue], key: str, now: float) -> Step[StateValue]:
        value = state.get(key)
        if value is None:
            return Step()
        due = value.due_at
        if due is None or due > now:
            return Step()  # the timer moved since it was scheduled
        if isinstance(value, SilenceValue):
            return Step(changes=delete_silence(state, value.silence.org, value.silence.id))
        if isinstance(value, InhibitSources):
            return Step(changes={key: drop_expired_sources(value, now)})
        if isinstance(value, GroupState):
            return self._fire_group(state, key, value, value, [], now)
        if isinstance(value, LastFlush):  # kept under its old key: move it to its group's key
            f = value.flush
            gkey = group_record_key(f.org, f.group_key)
            if isinstance(state.get(gkey), GroupState):
                return Step(changes={key: None})  # superseded
            gs, stale = self._load_group(state, f.org, f.group_key, f.group_id, f.receiver)
            return self._fire_group(state, gkey, state.get(gkey), gs, stale, now)
        if isinstance(value, GroupRecord):  # kept by an older build
            changes: Changes = {key: None}
            self._forget_group_ack(state, changes, key, value)
            return Step(changes=changes)
        changes = {key: None}
        if isinstance(value, AckValue):  # an acknowledgement expired: paused escalations go on
            self._resume(state, changes, key.split("/", 2)[1], value.kind, value.target)
        return Step(changes=changes)  # acknowledgements, and log entries of an older build

    def deadline(self, key: str, value: StateValue) -> float | None:
        return value.due_at

    def reindex(self, state: Mapping[str, StateValue], max_changes: int = 500) -> list[Step[StateValue]]:
        """Rebuild the inhibition index for this core's rules (call once after a config
        change, committing the steps in order); see :func:`stages.filter.inhibit.reindex`."""
        return [Step(changes=c) for c in reindex(state, self.config, max_changes)]

    # ------------------------------------------------------------------ inputs

    def _fire_group(self, state: Mapping[str, StateValue], key: str, old: StateValue | None, gs: GroupState,
                    stale: list[str], now: float) -> Step[StateValue]:
        """A group's timer (``old``: its stored value, ``gs`` that read as a group's state):
        its re-evaluation tick, then whatever of it expired by ``now``."""
        changes: Changes = {}
        outputs: list[Out] = []
        last = gs.last
        if last is not None and last.due_at is not None and last.due_at <= now:
            gs, outputs = self._tick(state, gs, last, changes)
        if gs.esc is not None and ((gs.esc.due_at is not None and gs.esc.due_at <= now) or gs.last is None):
            gs, esc_outputs = self._escalate(state, gs, gs.esc, now)
            outputs += esc_outputs
        log = {k: e for k, e in gs.log.items() if e.expires_at > now}
        record = gs.record
        if record is not None and record.expires_at <= now:
            record = None
            self._forget_group_ack(state, changes, key, gs.record)
        if record is not gs.record or len(log) != len(gs.log):
            gs = GroupState(record=record, log=log, last=gs.last, esc=gs.esc)
        _put_group(changes, key, old, gs, stale)
        return Step(changes=changes, outputs=outputs)

    @staticmethod
    def _forget_group_ack(state: Mapping[str, StateValue], changes: Changes, key: str,
                          record: GroupRecord | None) -> None:
        """A group's record expired: so does its acknowledgement."""
        if record is None:
            return
        ack_key = ack_group_key(key.split("/", 2)[1], record.group_key)  # key: group/<org>/...
        if ack_key in state:
            changes[ack_key] = None

    def _load_group(self, state: Mapping[str, StateValue], org: str, group_key: str, group_id: str,
                    receiver: str, value: StateValue | _Unread | None = _UNREAD) -> tuple[GroupState, list[str]]:
        """A group's state, and the keys of an older build it was read from (to delete when it is written).
        ``value``: what its key holds, when the caller read it already."""
        if isinstance(value, _Unread):
            value = state.get(group_record_key(org, group_key))
        if isinstance(value, GroupState):
            return value, []
        stale: list[str] = []
        log: dict[str, NflogEntry] = {}
        for spec in self.config_for(org).receivers.get(receiver, ()):
            okey = legacy_nflog_key(org, group_id, receiver, spec.kind, spec.index)
            entry = state.get(okey)
            if entry is not None:
                stale.append(okey)
                if isinstance(entry, NflogEntry):
                    log[log_key(receiver, spec.kind, spec.index)] = entry
        fkey = last_flush_key(org, group_id)
        last = state.get(fkey)
        if last is not None:
            stale.append(fkey)
        return GroupState(record=value if isinstance(value, GroupRecord) else None, log=log,
                          last=last if isinstance(last, LastFlush) else None), stale

    def _alert_change(self, state: Mapping[str, StateValue], ch: AlertChange, now: float) -> Step[StateValue]:
        alert = ch.alert
        cfg = self.config_for(alert.org)
        changes: Changes = {}
        fkey = firing_key(alert.org, alert.fingerprint)
        if ch.change == "resolved":
            index_resolved(state, cfg, alert, changes)
            if fkey in state:
                changes[fkey] = None
        else:
            index_firing(state, cfg, alert, changes)
            old = state.get(fkey)
            if not isinstance(old, FiringAlert) or old.starts_at != alert.starts_at:
                changes[fkey] = FiringAlert(labels=dict(alert.labels), starts_at=alert.starts_at)
        changes.update(ack_changes_for_alert(state, ch, now, cfg.options.nflog_retention))
        return Step(changes=changes)

    def _ack(self, state: Mapping[str, StateValue], cmd: AckCommand) -> Step[StateValue]:
        try:
            changes, _ = apply_ack_command(state, cmd)
        except AckError as exc:
            raise Reject(f"invalid acknowledgement: {exc}") from None
        outputs: list[Out] = []
        after = _Overlay(state, changes)
        if cmd.action == "ack":
            # PagerDuty / Opsgenie: acknowledge each group that became fully acknowledged,
            # whatever the acknowledgement was keyed by.
            for _key, gs in self._groups_touched(state, cmd, changes):
                record = gs.record
                if record is None or not record.firing:
                    continue
                if _fully_acked(after, cmd.org, record, cmd.at) and not _fully_acked(state, cmd.org, record, cmd.at):
                    outputs += self._pagerduty_acks(cmd, record, gs)
        else:
            for key in [k for k in changes if k.startswith("ack/")]:
                old = state.get(key)
                if isinstance(old, AckValue):
                    self._resume(after, changes, cmd.org, old.kind, old.target)
        return Step(changes=changes, outputs=outputs)

    def _groups_touched(self, state: Mapping[str, StateValue], cmd: AckCommand,
                        changes: Changes) -> list[tuple[str, GroupState]]:
        """The groups an ack command may have changed: the named group, or those whose last
        notification had one of the acknowledged alerts firing."""
        if cmd.group_key:
            key = group_record_key(cmd.org, cmd.group_key)
            record = group_record(state, cmd.org, cmd.group_key)
            if record is None:
                return []
            gs, _ = self._load_group(state, cmd.org, cmd.group_key, record.group_id, record.receiver)
            return [(key, gs)]
        fps = {k.rsplit("/", 1)[1] for k in changes if k.startswith(f"ack/{cmd.org}/alert/")}
        return [(k, v) for k, v in _org_groups(state, cmd.org)
                if v.record is not None and fps & v.record.firing.keys()]

    def _resume(self, state: Mapping[str, StateValue], changes: Changes, org: str, kind: str, target: str) -> None:
        """An acknowledgement ended: the escalations it paused go on (an overdue step at once)."""
        if kind == "group":
            key = group_record_key(org, target)
            value = state.get(key)
            groups = [(key, value)] if isinstance(value, GroupState) else []
        else:
            groups = [(k, v) for k, v in _org_groups(state, org)
                      if v.last is not None and any(a.fingerprint == target for a in v.last.flush.alerts)]
        for key, gs in groups:
            if gs.esc is not None and gs.esc.paused:
                changes[key] = _replace(gs, esc=_replace(gs.esc, paused=False))

    def _escalate(self, state: Mapping[str, StateValue], gs: GroupState, esc: Escalation,
                  now: float) -> tuple[GroupState, list[Out]]:
        """A step of the group's escalation fell due: notify its receivers, or pause, skip, end."""
        f = gs.last.flush if gs.last is not None else None
        firing = [] if f is None else [a for a in f.alerts if not a.resolved_at(now)]
        if f is None or not firing:
            return _replace(gs, esc=None), []
        org = f.org
        group_ack = _ack(state, ack_group_key(org, f.group_key))

        def acked(a: Alert) -> bool:
            alert_ack = _ack(state, ack_alert_key(org, a.fingerprint))
            return ((group_ack is not None and covered(group_ack, a, now))
                    or (alert_ack is not None and covered(alert_ack, a, now)))

        at_now = _replace(f, alerts=firing, flushed_at=now)
        kept = [a for a, fate in zip(firing, self._fates(state, at_now, acked), strict=True) if fate is _Fate.KEEP]
        decision = decide(esc, now, firing=True, notifiable=bool(kept), acked=all(acked(a) for a in firing))
        if decision is Decision.WAIT:
            return gs, []
        if decision is Decision.END:
            return _replace(gs, esc=None), []
        if decision is Decision.PAUSE:
            return _replace(gs, esc=_replace(esc, paused=True)), []
        n = esc.next
        gs = _replace(gs, esc=_replace(esc, next=n + 1))
        if decision is Decision.SKIP:
            return gs, []
        cfg = self.config_for(org)
        outputs = []
        level = esc.level_of(n)
        for receiver in esc.steps[n % len(esc.steps)][1]:
            for spec in cfg.receivers.get(receiver, ()):  # a receiver since removed: nothing to send
                sid = send_id(org, f.group_id, receiver, spec.kind, spec.index, escalation_send_seq(esc, n))
                req = SendRequest(
                    id=sid, org=org, group_key=f.group_key, group_id=f.group_id, receiver=receiver,
                    integration=Integration(kind=spec.kind, index=spec.index), flush_seq=f.flush_seq,
                    status="firing", group_labels=dict(f.group_labels), alerts=list(kept), created_at=now,
                    trace=dict(f.trace), escalation_level=level, escalation_policy=esc.policy,
                )
                outputs.append(Out(payload=req, msg_id=sid, subject=f.group_id))
        return gs, outputs

    def _escalation_resolved(self, esc: Escalation, f: GroupFlush) -> list[Out]:
        """The group resolved: every receiver an escalation step paged hears it too, as the
        route's own receiver does (a PagerDuty incident opened at level 2 is resolved), on
        its integrations that send resolutions; once, with an id of its own."""
        cfg = self.config_for(f.org)
        paged: list[str] = []
        for n in range(min(esc.next, len(esc.steps))):
            paged += [r for r in esc.steps[n][1] if r not in paged and r != f.receiver]
        seq = escalation_send_seq(esc, esc.total) + "/resolved"
        outputs = []
        for receiver in paged:
            for spec in cfg.receivers.get(receiver, ()):
                if not spec.send_resolved:
                    continue
                sid = send_id(f.org, f.group_id, receiver, spec.kind, spec.index, seq)
                req = SendRequest(
                    id=sid, org=f.org, group_key=f.group_key, group_id=f.group_id, receiver=receiver,
                    integration=Integration(kind=spec.kind, index=spec.index), flush_seq=f.flush_seq,
                    status="resolved", group_labels=dict(f.group_labels), alerts=list(f.alerts),
                    created_at=f.flushed_at, trace=dict(f.trace), escalation_policy=esc.policy,
                )
                outputs.append(Out(payload=req, msg_id=sid, subject=f.group_id))
        return outputs

    def _pagerduty_acks(self, cmd: AckCommand, record: GroupRecord, gs: GroupState) -> list[Out]:
        firing = [a for a in record.alerts if a.fingerprint in record.firing and not a.resolved_at(cmd.at)]
        outputs = []
        for spec in self.config_for(cmd.org).receivers.get(record.receiver, ()):
            if spec.kind not in _ACKNOWLEDGEABLE:
                continue
            entry = live_entry(gs.log.get(log_key(record.receiver, spec.kind, spec.index)), cmd.at)
            alerts = [a for a in firing if entry is not None and a.fingerprint in entry.firing]
            if not alerts:
                continue  # no open incident to acknowledge
            sid = send_id(cmd.org, record.group_id, record.receiver, spec.kind, spec.index, record.send_seq) + "/ack"
            req = SendRequest(
                id=sid, org=cmd.org, group_key=record.group_key, group_id=record.group_id, receiver=record.receiver,
                integration=Integration(kind=spec.kind, index=spec.index), flush_seq=record.flush_seq,
                status="firing", group_labels=dict(record.group_labels), alerts=alerts, created_at=cmd.at,
                acknowledged=True, trace=dict(cmd.trace or record.trace),
            )
            outputs.append(Out(payload=req, msg_id=sid, subject=record.group_id))
        return outputs

    def _flush(self, state: Mapping[str, StateValue], f: GroupFlush) -> Step[StateValue]:
        """The router's flush: evaluate it, and keep it for re-evaluations on later ticks."""
        key = group_record_key(f.org, f.group_key)
        old = state.get(key)
        gs, stale = self._load_group(state, f.org, f.group_key, f.group_id, f.receiver, old)
        changes: Changes = {}
        outputs: list[Out] = []
        if not f.alerts:  # the router retired the group without a flush (its route is gone)
            if gs.last is not None and gs.last.flush.group_id == f.group_id:
                gs = _replace(gs, last=None)
        else:
            gs, outputs, next_tick = self._evaluate(state, gs, f, 0, changes)
            if next_tick is not None:
                firing = [a for a in f.alerts if not a.resolved_at(f.flushed_at)]
                kept = f if len(firing) == len(f.alerts) else _replace(f, alerts=firing)
                gs = _replace(gs, last=LastFlush(flush=kept, next=next_tick))
            elif gs.last is not None:
                gs = _replace(gs, last=None)  # all resolved (the router retires the group), or no integration
        _put_group(changes, key, old, gs, stale)
        return Step(changes=changes, outputs=outputs)

    def _tick(self, state: Mapping[str, StateValue], gs: GroupState, last: LastFlush,
              changes: Changes) -> tuple[GroupState, list[Out]]:
        """Re-evaluate a quiet group at its tick ``last.next`` (see :mod:`stages.filter.ticks`)."""
        f, t = last.flush, last.next
        assert t is not None  # (due_at is None otherwise)
        if any(a.ends_at is not None and a.ends_at <= t for a in f.alerts):
            # an alert resolved by time: the router flushes the group at this tick itself
            return _replace(gs, last=_replace(last, next=None)), []
        tick = round((t - f.flushed_at) / f.group_interval)
        try:
            gs, outputs, next_tick = self._evaluate(state, gs, _replace(f, flushed_at=t), tick, changes)
        except Reject:  # its receiver or time interval left the configuration: stop ticking it
            return _replace(gs, last=_replace(last, next=None)), []
        return _replace(gs, last=_replace(last, next=next_tick)), outputs

    def _evaluate(self, state: Mapping[str, StateValue], gs: GroupState, f: GroupFlush, tick: int,
                  changes: Changes) -> tuple[GroupState, list[Out], float | None]:
        """Alertmanager's notification pipeline for one flush at ``f.flushed_at``: the group's
        new state, the sends, and the tick at which the group must be evaluated again if it
        stays unchanged (other state changes go to ``changes``)."""
        cfg = self.config_for(f.org)
        opts = cfg.options
        t, org = f.flushed_at, f.org
        integrations = cfg.receivers.get(f.receiver)
        if integrations is None:
            raise Reject(f"receiver {f.receiver!r} is not in the configuration")
        try:
            muted_by = self._time_muted_by(f)
        except KeyError as exc:
            raise Reject(f"time interval {exc.args[0]!r} is not in the configuration") from None
        record = gs.record
        if muted_by:
            # Alertmanager mutes the whole flush: nothing sent, nothing logged.
            kept = record if record is not None else _empty_record(f, opts.nflog_retention)
            return (_replace(gs, record=self._keep_record(org, record, _replace(kept, muted_by=muted_by), t)), [],
                    _next_tick(f, None))

        group_ack = _ack(state, ack_group_key(org, f.group_key))

        def acked(a: Alert) -> bool:
            alert_ack = _ack(state, ack_alert_key(org, a.fingerprint))
            return ((group_ack is not None and covered(group_ack, a, t))
                    or (alert_ack is not None and covered(alert_ack, a, t)))

        fates = self._fates(state, f, acked)
        outputs: list[Out] = []
        sent_firing: list[Alert] | None = None
        log = dict(gs.log)
        for spec in integrations:
            lkey = log_key(f.receiver, spec.kind, spec.index)
            entry = live_entry(log.get(lkey), t)
            alerts = [a for a, fate in zip(f.alerts, fates, strict=True)
                      if fate is _Fate.KEEP or (fate is _Fate.SILENCED_RESOLVED and entry is not None
                                                and a.fingerprint in entry.firing)]
            if not alerts:
                continue  # Alertmanager's pipeline stops when nothing is left
            firing_alerts = [a for a in alerts if not a.resolved_at(t)]
            firing = {a.fingerprint for a in firing_alerts}
            resolved = {a.fingerprint for a in alerts} - firing
            reason = needs_update(entry, firing, resolved, send_resolved=spec.send_resolved,
                                  repeat_interval=f.repeat_interval, t=t)
            if not reason:
                continue
            # (asked only where it decides something: each alert's acknowledgement is a state read)
            ackable = spec.kind in _ACKNOWLEDGEABLE
            all_acked = ((ackable or (reason is NotifyReason.REPEAT and entry is not None)) and bool(firing_alerts)
                         and all(acked(a) for a in firing_alerts))
            if reason is NotifyReason.REPEAT and all_acked and entry is not None:
                self._hold_entry(log, lkey, entry, f, t)  # acknowledged: no repeat
                continue
            log[lkey] = new_entry(firing, resolved, t, repeat_interval=f.repeat_interval,
                                  group_interval=f.group_interval, retention=opts.nflog_retention)
            sent_firing = firing_alerts
            to_send = alerts if spec.send_resolved else firing_alerts
            if to_send:
                outputs.append(self._send(f, spec, to_send, tick, firing=bool(firing_alerts),
                                          acknowledged=ackable and all_acked))

        if sent_firing is not None:
            has_pagerduty = any(s.kind in _ACKNOWLEDGEABLE for s in integrations)
            new_record = GroupRecord(
                group_key=f.group_key, group_id=f.group_id, receiver=f.receiver, group_labels=dict(f.group_labels),
                flush_seq=f.flush_seq, sent_at=t, firing={a.fingerprint: a.starts_at for a in sent_firing},
                alerts=list(sent_firing) if has_pagerduty else [], muted_by=[], seen_at=t,
                expires_at=t + opts.nflog_retention, trace=dict(f.trace), tick=tick,
            )
            record = new_record
        elif record is not None:
            record = self._keep_record(org, record, _replace(record, muted_by=[]), t)
        if group_ack is not None and not any(covered(_replace(group_ack, expires_at=None), a, t) for a in f.alerts):
            changes[ack_group_key(org, f.group_key)] = None  # it covers nothing any more
        group_firing = [a for a in f.alerts if not a.resolved_at(t)]
        esc = self._escalation(gs, f, tick, sent_firing, acked, group_firing)
        if gs.esc is not None and esc is None and not group_firing:
            outputs += self._escalation_resolved(gs.esc, f)
        entries = [live_entry(log.get(log_key(f.receiver, spec.kind, spec.index)), t) for spec in integrations]
        if record is not gs.record or log != gs.log or esc is not gs.esc:
            gs = GroupState(record=record, log=log, last=gs.last, esc=esc)
        return gs, outputs, _next_tick(f, entries, group_firing)

    # ------------------------------------------------------------------ helpers

    def _escalation(self, gs: GroupState, f: GroupFlush, tick: int, sent_firing: list[Alert] | None,
                    acked: Callable[[Alert], bool], firing: list[Alert]) -> Escalation | None:
        """The group's escalation after this evaluation: started by its first notification,
        restarted at level 0 when a new alert joins it while it is acknowledged, ended once
        all its alerts resolved; otherwise unchanged (a configuration change never restarts it).
        ``firing``: the flush's alerts firing at its time."""
        t = f.flushed_at
        esc = gs.esc
        if not firing:
            return None
        if sent_firing is None:
            return esc  # nothing notified at level 0: nothing starts
        policy = policy_for(self.config_for(f.org).escalation, (a.labels for a in firing))
        if esc is None and policy is None:
            return None
        seq = send_seq(f.flush_seq, tick)
        speed = speed_of(a.labels for a in firing)
        if esc is None:
            return start(policy, t, seq, speed) if policy is not None else None
        before = gs.record.firing if gs.record is not None else {}
        joined = [a for a in firing if a.fingerprint not in before]
        old = [a for a in firing if a.fingerprint in before]
        was_acked = esc.paused or (bool(old) and all(acked(a) for a in old))
        if joined and was_acked and esc.ack == "allowed" and not all(acked(a) for a in joined):
            if policy is not None:
                return start(policy, t, seq, speed)
            return _replace(esc, started_at=t, start_seq=seq, next=0, paused=False)
        return esc

    def _time_muted_by(self, f: GroupFlush) -> list[str]:
        """The intervals muting the flush, named as Alertmanager's group marker names them:
        its TimeActiveStage runs first and, outside every active interval, reports them all;
        otherwise the TimeMuteStage reports the mute intervals the time falls in."""
        if not f.active_time_intervals and not f.mute_time_intervals:
            return []  # (what the rest says of a route without time intervals)
        intervals, t = self.config_for(f.org).time_intervals, f.flushed_at
        if f.active_time_intervals and not intervals.active(f.active_time_intervals, t):
            return list(f.active_time_intervals)
        return intervals.active(f.mute_time_intervals, t)

    def _fates(self, state: Mapping[str, StateValue], f: GroupFlush, acked: Callable[[Alert], bool]) -> list[_Fate]:
        cfg = self.config_for(f.org)
        opts, t = cfg.options, f.flushed_at
        silences = org_silences(state, f.org)
        fates = []
        for a in f.alerts:
            resolved = a.resolved_at(t)
            if inhibited_by(state, cfg, f.org, a.labels, t):
                fates.append(_Fate.DROP)
            elif silences and silenced_by(silences, a.labels, t):
                fates.append(_Fate.SILENCED_RESOLVED if resolved and opts.notify_silenced_resolved else _Fate.DROP)
            elif resolved and not opts.notify_acked_resolved and acked(a):
                fates.append(_Fate.DROP)
            else:
                fates.append(_Fate.KEEP)
        return fates

    def _send(self, f: GroupFlush, spec: IntegrationSpec, alerts: list[Alert], tick: int, *, firing: bool,
              acknowledged: bool) -> Out:
        """A send of ``alerts`` (``firing``: some of them are)."""
        sid = send_id(f.org, f.group_id, f.receiver, spec.kind, spec.index, send_seq(f.flush_seq, tick))
        req = SendRequest(
            id=sid, org=f.org, group_key=f.group_key, group_id=f.group_id, receiver=f.receiver,
            integration=Integration(kind=spec.kind, index=spec.index), flush_seq=f.flush_seq,
            status="firing" if firing else "resolved", group_labels=dict(f.group_labels), alerts=list(alerts),
            created_at=f.flushed_at, acknowledged=acknowledged, trace=dict(f.trace),
        )
        return Out(payload=req, msg_id=sid, subject=f.group_id)

    def _hold_entry(self, log: dict[str, NflogEntry], lkey: str, entry: NflogEntry, f: GroupFlush, t: float) -> None:
        """Keep an acknowledged group's entry alive without notifying: were it to expire,
        the next flush would notify as a first notification, and a resolution would not be
        sent. Its time is kept, so the repeat is due as soon as the acknowledgement ends.
        Renewed coarsely (when half its life is left), but always before it could expire
        ahead of the next tick's re-evaluation (the tick plus its grace)."""
        opts = self.config_for(f.org).options
        life = entry_life(f.repeat_interval, f.group_interval, opts.nflog_retention)
        if entry.expires_at - t < max(life / 2, 2 * f.group_interval):
            log[lkey] = _replace(entry, expires_at=t + life)

    def _keep_record(self, org: str, old: GroupRecord | None, new: GroupRecord, t: float) -> GroupRecord:
        """A group record, its expiry pushed back coarsely (so that most flushes of a
        group that sends nothing leave the record as it was)."""
        retention = self.config_for(org).options.nflog_retention
        if old is not None and t - old.seen_at > retention / 8:
            new = _replace(new, seen_at=t, expires_at=t + retention)
        return old if old is not None and new == old else new


def _next_tick(f: GroupFlush, entries: list[NflogEntry | None] | None,
               firing_alerts: list[Alert] | None = None) -> float | None:
    """When an unchanged group must be evaluated again (None: not before the router flushes
    it). ``entries``: each integration's notification log entry after this evaluation; None
    when the flush was time-muted as a whole. ``firing_alerts``: the flush's alerts firing at
    its time, when known."""
    t, interval = f.flushed_at, f.group_interval
    if firing_alerts is None:
        firing_alerts = [a for a in f.alerts if not a.resolved_at(t)]
    firing = {a.fingerprint for a in firing_alerts}
    if interval <= 0 or not firing:
        return None
    if entries is None:
        return t + interval  # time-muted: the interval may end by the next tick
    repeat = f.repeat_interval if f.repeat_interval > 0 else interval
    ticks = []
    for entry in entries:
        if entry is None or not firing.issubset(entry.firing):
            return t + interval  # an alert is muted (or never notified): an unmute notifies
        ticks.append(min(first_tick_after(t, interval, entry.at + repeat),
                         first_tick_from(t, interval, entry.expires_at)))
    return min(ticks, default=None)


def _put_group(changes: Changes, key: str, old: StateValue | None, new: GroupState, stale: list[str]) -> None:
    """Write a group's state if it changed (delete it once empty), and drop its keys of an older build."""
    for k in stale:
        changes[k] = None
    if new.empty:
        if old is not None:
            changes[key] = None
    elif new != old:
        changes[key] = new


def _org_groups(state: Mapping[str, StateValue], org: str) -> list[tuple[str, GroupState]]:
    """Every group state of ``org`` in the partition (a scan: only for rare commands)."""
    prefix = f"group/{org}/"
    return [(k, v) for k, v in state.items() if k.startswith(prefix) and isinstance(v, GroupState)]


def _fully_acked(state: Mapping[str, StateValue], org: str, record: GroupRecord, t: float) -> bool:
    """Whether every alert the group last notified as firing is acknowledged at ``t``."""
    group_ack = _ack(state, ack_group_key(org, record.group_key))
    for fp, starts_at in record.firing.items():
        a = Alert(fingerprint=fp, org=org, labels={}, starts_at=starts_at)
        alert_ack = _ack(state, ack_alert_key(org, fp))
        if not ((group_ack is not None and covered(group_ack, a, t))
                or (alert_ack is not None and covered(alert_ack, a, t))):
            return False
    return True


class _Overlay(Mapping[str, StateValue]):
    """``state`` with ``changes`` applied (a read-only view, for decisions after a command)."""

    def __init__(self, state: Mapping[str, StateValue], changes: Changes) -> None:
        self._state, self._changes = state, changes

    def __getitem__(self, key: str) -> StateValue:
        if key in self._changes:
            value = self._changes[key]
            if value is None:
                raise KeyError(key)
            return value
        return self._state[key]

    def __iter__(self) -> Iterator[str]:
        yield from (k for k, v in self._changes.items() if v is not None)
        yield from (k for k in self._state if k not in self._changes)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _ack(state: Mapping[str, StateValue], key: str) -> AckValue | None:
    value = state.get(key)
    return value if isinstance(value, AckValue) else None


def _empty_record(f: GroupFlush, retention: float) -> GroupRecord:
    """The record of a group that never sent (it keeps the group's time muting for views)."""
    return GroupRecord(
        group_key=f.group_key, group_id=f.group_id, receiver=f.receiver, group_labels=dict(f.group_labels),
        flush_seq=0, sent_at=0.0, firing={}, alerts=[], muted_by=[], seen_at=f.flushed_at,
        expires_at=f.flushed_at + retention, trace=dict(f.trace),
    )
