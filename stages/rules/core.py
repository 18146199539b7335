"""The pure core of the rules stage: per-organisation alert state from events and pushes.

Inputs are ``contracts.Event`` (event rules: templates and rules, :mod:`stages.rules.effective`),
``contracts.PushedAlerts`` (Alertmanager's merge semantics, :mod:`stages.rules.alerts`) and
``contracts.RuleCommand`` (an organisation's templates and rules changed through the API).
Every announced change of an alert is one ``AlertChange`` output: ``fired`` (it became
active), ``resolved`` (it ended), ``updated`` (something visible changed: startsAt, endsAt,
annotations, generatorURL). A pending alert (``for``) is not visible; an identical re-push
changes nothing and outputs nothing.

State keys (many organisations share a partition; every key starts with the org's token):

- ``alert/<org>/<fingerprint>`` -> :class:`~stages.rules.state.AlertState`, one per alert;
  its changes go out on the subject suffix ``<org token>.<fingerprint>`` (:func:`alert_subject`);
- ``res/<org>/<kind>/<name>`` -> :class:`~stages.rules.state.ResourceIndex`, the event
  alerts of one resource by rule group.
- ``rules/<org>`` -> :class:`~stages.rules.state.RuleDefs`, the organisation's own templates and
  rules (the ``api`` layer of :mod:`stages.rules.effective`), changed by ``RuleCommand`` inputs:
  every event after a command in the input stream is judged by the rules it left, none before.

Timers: a value's ``deadline`` (pending ``for`` ends, an alert's end or ``keep_firing_for``
ends, the retention of a resolved alert ends). The runtime calls :meth:`RulesCore.fire`
when one falls due; before the core reads any alert it also applies that alert's due
timers itself (with the timer's own time and id), so an input whose time is past a
deadline the runtime has not fired yet sees exactly what it would have seen had it fired.

Message ids are deterministic in the cause: ``rules:<event id or request id>:<fingerprint>:
<change>`` for inputs, ``rules:t:<org token>.<fingerprint>:<deadline>`` for timers (the org
token is there because pushed alerts of two organisations can share a fingerprint). In the
rare case that one input changes the same alert the same way twice (a push repeating an
alert with different annotations), later ids get ``:2``, ``:3``... so none is deduplicated.

Times: ``now`` is the input's event time (a row's commit time, a push's stream time); event
alerts start at the event's ``occurred_at`` and a resolving event ends them at its own
``occurred_at``. An event older than the alert state it would change (``since``/``ends_at``)
is stale and ignored, so a late commit never resolves a newer alert nor re-fires a newer
resolution. Firing pushed alerts carry their expected end (explicit, or ``now +
resolve_timeout``) in ``Alert.ends_at``, as Alertmanager keeps it; consumers hide it when
presenting a firing alert. Event alerts carry None until resolved.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from contracts.labels import fingerprint
from contracts.messages import AlertChange, Cause, Event, PushedAlerts, RuleCommand
from pipeline.foundation.runtime.step import Out, Reject, Step
from pipeline.foundation.runtime.subjects import token
from stages.rules.alerts import InvalidAlert, Posted, is_resolved, prepare, put
from stages.rules.defs import DefinitionError, Rule, Template, convert_definition
from stages.rules.effective import Catalog, FireAction, Params, ResolveAction, RuleBook, match_labels
from stages.rules.rules import Layer, RuleSet, event_value
from stages.rules.state import (
    FIRING,
    PENDING,
    RESOLVED,
    AlertState,
    ResourceIndex,
    RuleDefs,
    StateValue,
    Status,
    to_alert,
)

__all__ = ["RulesCore", "alert_key", "alert_subject", "defs_key", "resource_key"]

Change = Literal["fired", "updated", "resolved"]
_replace = msgspec.structs.replace
_token = functools.lru_cache(maxsize=1 << 12)(token)  # organisations repeat; the regex check need not


def alert_key(org: str, fp: str) -> str:
    """State key of an alert: ``alert/<org>/<fingerprint>`` (the API lists an org by this prefix)."""
    return f"alert/{org}/{fp}"


def alert_subject(org: str, fp: str) -> str:
    """Output subject suffix of an alert's changes: its history is ``out.*.<org token>.<fp>``."""
    return f"{_token(org)}.{fp}"


def defs_key(org: str) -> str:
    """State key of an organisation's own templates and rules (:class:`~stages.rules.state.RuleDefs`)."""
    return f"rules/{org}"


def resource_key(org: str, kind: str, name: str) -> str:
    """State key of a resource's index of event alerts."""
    return f"res/{org}/{kind}/{name}"


def _content(s: AlertState) -> tuple[object, ...]:
    """What downstream sees of an alert besides its status (labels are its identity)."""
    return (s.starts_at, s.ends_at, s.annotations, s.generator_url)


class _Txn:
    """The state as seen through the changes of one step, and the step's outputs."""

    __slots__ = ("changes", "ids", "outputs", "state", "trace")

    def __init__(self, state: Mapping[str, StateValue], trace: dict[str, str]) -> None:
        self.state = state
        self.trace = trace
        self.changes: dict[str, StateValue | None] = {}
        self.outputs: list[Out] = []
        self.ids: dict[str, int] = {}

    def get(self, key: str) -> StateValue | None:
        if key in self.changes:
            return self.changes[key]
        return self.state.get(key)

    def alert(self, key: str) -> AlertState | None:
        v = self.get(key)
        return v if isinstance(v, AlertState) else None

    def index(self, key: str) -> ResourceIndex:
        v = self.get(key)
        return v if isinstance(v, ResourceIndex) else ResourceIndex()

    def set(self, key: str, value: StateValue | None) -> None:
        if self.get(key) == value:
            return
        self.changes[key] = value

    def set_index(self, key: str, active: dict[str, str], pending: dict[str, str]) -> None:
        # sorted: the same index whatever order its entries were made in
        value = ResourceIndex(active=dict(sorted(active.items())), pending=dict(sorted(pending.items())))
        self.set(key, value if active or pending else None)

    def emit(self, change: Change, s: AlertState, cause: Cause) -> None:
        if cause.kind == "timer":
            msg_id, trace = f"rules:t:{alert_subject(s.org, s.fingerprint)}:{cause.at!r}", {}
        else:
            msg_id, trace = f"rules:{cause.id}:{s.fingerprint}:{change}", self.trace
        n = self.ids.get(msg_id, 0) + 1
        self.ids[msg_id] = n
        if n > 1:
            msg_id = f"{msg_id}:{n}"
        payload = AlertChange(change=change, alert=to_alert(s), cause=cause, trace=trace)
        self.outputs.append(Out(payload=payload, msg_id=msg_id, subject=alert_subject(s.org, s.fingerprint)))

    def step(self) -> Step[StateValue]:
        return Step(changes=self.changes, outputs=self.outputs)


class RulesCore:
    """StageCore of the rules stage.

    ``rules``: the file's event rules (``tocsin.rules``), which extend the built-in ones
    (:mod:`stages.rules.effective`); each organisation's own come in as ``RuleCommand`` inputs;
    ``resolve_timeout``: seconds a pushed alert without endsAt stays firing (Alertmanager's
    ``global.resolve_timeout``); ``retention``: seconds a resolved alert stays in state.
    """

    value_type = StateValue

    def __init__(
        self, rules: RuleSet | None = None, *, resolve_timeout: float = 300.0, retention: float = 3600.0
    ) -> None:
        if not (math.isfinite(resolve_timeout) and resolve_timeout >= 0):
            raise ValueError("resolve_timeout must be a non-negative number of seconds")
        if not (math.isfinite(retention) and retention >= 0):
            raise ValueError("retention must be a non-negative number of seconds")
        self.catalog = Catalog(rules)
        self.resolve_timeout = resolve_timeout
        self.retention = retention

    # ------------------------------------------------------------------ protocol

    def step(self, state: Mapping[str, StateValue], inp: object, now: float) -> Step[StateValue]:
        if isinstance(inp, Event):
            return self._event(state, inp, now)
        if isinstance(inp, PushedAlerts):
            return self._push(state, inp, now)
        if isinstance(inp, RuleCommand):
            return self._rule_command(state, inp)
        raise Reject(f"the rules stage takes events, pushed alerts and rule commands, not {type(inp).__name__}")

    def book(self, state: Mapping[str, StateValue], org: str) -> RuleBook:
        """The event rules ``org`` sees now: built-in, file, and its own (from ``state``)."""
        defs = state.get(defs_key(org))
        if not isinstance(defs, RuleDefs):
            return self.catalog.base
        return self.catalog.book(org, Layer(source="api", templates=defs.templates, rules=defs.rules), defs)

    # ------------------------------------------------------------------ rule changes

    def _rule_command(self, state: Mapping[str, StateValue], cmd: RuleCommand) -> Step[StateValue]:
        """A template or rule of the organisation put or deleted: in force from the next input on.

        The API validated it against the organisation's set; a command that another one
        (a concurrent write) made inconsistent is still stored, and the book ignores what it
        cannot use (an unknown template, a reason fired twice) deterministically."""
        key = defs_key(cmd.org)
        cur = state.get(key)
        defs = cur if isinstance(cur, RuleDefs) else RuleDefs()
        templates, rules, applied = dict(defs.templates), dict(defs.rules), dict(defs.applied)
        target: dict[str, Template] | dict[str, Rule] = templates if cmd.kind == "template" else rules
        ref = f"{cmd.kind}/{cmd.name}"
        if cmd.action == "delete":
            target.pop(cmd.name, None)
            applied.pop(ref, None)
        else:
            try:
                value = convert_definition(cmd.kind, cmd.spec)
            except DefinitionError as exc:
                raise Reject(f"rule command {cmd.request_id or cmd.name}: {cmd.kind} {cmd.name}: {exc}") from None
            if value.name != cmd.name:
                raise Reject(f"rule command {cmd.request_id}: names {cmd.name} but its {cmd.kind} is {value.name}")
            target[cmd.name] = value  # type: ignore[assignment]
            applied[ref] = cmd.request_id
        new = RuleDefs(templates=dict(sorted(templates.items())), rules=dict(sorted(rules.items())),
                       applied=dict(sorted(applied.items())))
        return Step(changes={key: new if (templates or rules) else None})

    def fire(self, state: Mapping[str, StateValue], key: str, now: float) -> Step[StateValue]:
        txn = _Txn(state, {})
        self._settle(txn, [key], now)
        return txn.step()

    def deadline(self, key: str, value: StateValue) -> float | None:
        return value.deadline if isinstance(value, AlertState) else None

    # ------------------------------------------------------------------ timers

    def _settle(self, txn: _Txn, keys: Iterable[str], now: float, *, expand: bool = True) -> None:
        """Apply the due timers of ``keys`` in deadline order, as the runtime would have.

        Timers interact only within one rule group of one resource (a pending alert that
        fires resolves the group's active one), so the group slots of event alerts among
        ``keys`` are settled with them.
        """
        keys = list(dict.fromkeys(keys))
        for k in list(keys) if expand else []:
            v = txn.alert(k)
            if v is not None and v.group:
                keys.extend(f for f in self._slot_keys(txn, v.org, _rkey(v), v.group) if f not in keys)
        while True:
            due: tuple[float, str] | None = None
            for k in keys:
                v = txn.alert(k)
                if v is not None and v.deadline is not None and v.deadline <= now:
                    if due is None or (v.deadline, k) < due:
                        due = (v.deadline, k)
            if due is None:
                return
            self._timer(txn, due[1], due[0])

    def _timer(self, txn: _Txn, key: str, t: float) -> None:
        v = txn.alert(key)
        assert v is not None
        cause = Cause(kind="timer", id=key, at=t)
        if v.status == PENDING:
            self._promote(txn, key, v, t, cause)
        elif v.status == FIRING:
            self._resolve(txn, key, v, t if v.ends_at is None else v.ends_at, t, cause)
        else:
            txn.set(key, None)  # retention is over
            _unslot(txn, v)

    def _promote(self, txn: _Txn, key: str, v: AlertState, t: float, cause: Cause) -> None:
        """A pending alert's ``for`` elapsed: it replaces its group's active alert and fires."""
        rkey = _rkey(v)
        other = txn.index(rkey).active.get(v.group)
        if other and other != v.fingerprint:
            okey = alert_key(v.org, other)
            self._settle(txn, [okey], t, expand=False)  # its own earlier timer (the pending one is this)
            o = txn.alert(okey)
            if o is not None and o.status == FIRING and o.group == v.group:
                self._resolve(txn, okey, o, t, t, cause)
        new = _replace(v, status=FIRING, starts_at=t, deadline=None, updated_at=t)
        txn.set(key, new)
        txn.emit("fired", new, cause)
        idx = txn.index(rkey)
        pending = {g: f for g, f in idx.pending.items() if f != v.fingerprint}
        txn.set_index(rkey, {**idx.active, v.group: v.fingerprint}, pending)

    def _resolve(self, txn: _Txn, key: str, v: AlertState, ends_at: float, now: float, cause: Cause) -> None:
        new = _replace(
            v,
            status=RESOLVED,
            ends_at=max(ends_at, v.starts_at),
            deadline=now + self.retention,
            updated_at=now,
        )
        txn.set(key, new)
        txn.emit("resolved", new, cause)
        # An event alert keeps its entry in the resource's index until its retention ends:
        # the entry is stale (not firing) and ignored, but an alert that flaps back fires
        # under the same fingerprint and finds the index already right, so neither its
        # resolve nor its next fire writes the index.

    # ------------------------------------------------------------------ events

    def _event(self, state: Mapping[str, StateValue], ev: Event, now: float) -> Step[StateValue]:
        book = self.book(state, ev.org)
        if ev.op not in book.ops:
            return Step()
        action = book.action(ev.reason)
        if action is None:
            return Step()
        if not math.isfinite(ev.occurred_at):
            raise Reject(f"event {ev.id}: occurred_at is not a finite time")
        txn = _Txn(state, ev.trace)
        cause = Cause(kind="event", id=ev.id, at=ev.occurred_at)
        rkey = resource_key(ev.org, ev.resource_kind, ev.resource_name)
        if isinstance(action, FireAction):
            entry = action.entry
            base = match_labels(ev, book.field_labels)
            rules = book.applying(entry, ev.org, base, ev.fields)
            if not rules:
                return Step()  # no rule applies the template to this resource
            params = book.params(entry, rules)
            value = None
            if params.value_field and params.threshold is not None:
                try:
                    value = event_value(ev, params.value_field)
                except ValueError as exc:
                    raise Reject(str(exc)) from None
                if not params.fires(value):
                    self._resolve_groups(txn, ev.org, rkey, [action.group], ev.occurred_at, now, cause, False)
                    return txn.step()
            labels, annotations = book.render(entry, ev, base, params, value)
            self._fire_event(txn, ev, action.group, rkey, labels, annotations, params, now, cause)
        elif isinstance(action, ResolveAction):
            self._resolve_groups(txn, ev.org, rkey, action.groups, ev.occurred_at, now, cause, False)
        else:
            idx = txn.index(rkey)
            groups = sorted(set(idx.active) | set(idx.pending))
            self._resolve_groups(txn, ev.org, rkey, groups, ev.occurred_at, now, cause, True)
        return txn.step()

    def _slot(self, txn: _Txn, org: str, rkey: str, group: str) -> tuple[AlertState | None, AlertState | None]:
        """The group's live active and pending alerts (index entries that went stale are ignored)."""
        idx = txn.index(rkey)
        a = idx.active.get(group)
        p = idx.pending.get(group)
        active = txn.alert(alert_key(org, a)) if a else None
        pending = txn.alert(alert_key(org, p)) if p else None
        return (
            active if active is not None and active.status == FIRING and active.group == group else None,
            pending if pending is not None and pending.status == PENDING else None,
        )

    def _slot_keys(self, txn: _Txn, org: str, rkey: str, group: str) -> list[str]:
        idx = txn.index(rkey)
        return [alert_key(org, f) for f in (idx.active.get(group), idx.pending.get(group)) if f]

    def _fire_event(
        self,
        txn: _Txn,
        ev: Event,
        group: str,
        rkey: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        params: Params,
        now: float,
        cause: Cause,
    ) -> None:
        org, t = ev.org, ev.occurred_at
        fp = fingerprint(labels)
        key = alert_key(org, fp)
        self._settle(txn, [key, *self._slot_keys(txn, org, rkey, group)], now)
        cur = txn.alert(key)
        active, pending = self._slot(txn, org, rkey, group)
        other_active = active if active is not None and active.fingerprint != fp else None
        other_pending = pending if pending is not None and pending.fingerprint != fp else None

        if cur is not None and cur.status == FIRING:  # fired again: the same occurrence
            self._replace_others(txn, other_active, other_pending, t, now, cause)
            new = _replace(
                cur,
                annotations=annotations,
                ends_at=None,
                deadline=None,  # cancels a keep_firing_for resolve
                timeout=False,
                group=group,
                keep_firing_for=params.keep_firing_for,
            )
            if new != cur:
                new = _replace(new, updated_at=now)
                txn.set(key, new)
                if _content(new) != _content(cur):
                    txn.emit("updated", new, cause)
            idx = txn.index(rkey)
            txn.set_index(rkey, {**idx.active, group: fp}, _without(idx.pending, group))
            return
        if cur is not None and cur.status == PENDING:  # still waiting out `for`
            new = _replace(cur, annotations=annotations, keep_firing_for=params.keep_firing_for)
            if new != cur:
                txn.set(key, _replace(new, updated_at=now))
            return
        if cur is not None and cur.ends_at is not None and t < cur.ends_at:
            return  # stale: the alert resolved after this event happened
        if any(s is not None and s.since > t for s in (other_active, other_pending)):
            return  # stale: the group's current alert began after this event happened

        base = AlertState(
            org=org,
            fingerprint=fp,
            labels=labels,
            annotations=annotations,
            starts_at=t,
            ends_at=None,
            generator_url="",
            updated_at=now,
            status=PENDING,
            deadline=t + params.for_,
            group=group,
            keep_firing_for=params.keep_firing_for,
            since=t,
        )
        if params.for_ > 0:
            self._replace_others(txn, None, other_pending, t, now, cause)
            txn.set(key, base)
            idx = txn.index(rkey)
            txn.set_index(rkey, dict(idx.active), {**idx.pending, group: fp})
            self._settle(txn, [key], now)  # `for` may already be over (a late event)
            return
        self._replace_others(txn, other_active, other_pending, t, now, cause)
        new = _replace(base, status=FIRING, deadline=None)
        txn.set(key, new)
        txn.emit("fired", new, cause)
        idx = txn.index(rkey)
        txn.set_index(rkey, {**idx.active, group: fp}, _without(idx.pending, group))

    def _replace_others(
        self,
        txn: _Txn,
        active: AlertState | None,
        pending: AlertState | None,
        t: float,
        now: float,
        cause: Cause,
    ) -> None:
        """Make room in a group: cancel the other pending alert, resolve the other active one."""
        if pending is not None:
            txn.set(alert_key(pending.org, pending.fingerprint), None)  # never visible: no output
            _unslot(txn, pending)
        if active is not None:
            self._resolve(txn, alert_key(active.org, active.fingerprint), active, t, now, cause)

    def _resolve_groups(
        self,
        txn: _Txn,
        org: str,
        rkey: str,
        groups: Iterable[str],
        t: float,
        now: float,
        cause: Cause,
        immediate: bool,
    ) -> None:
        """Resolve the groups' alerts of a resource at event time ``t``.

        Pending alerts are cancelled; active ones resolve at ``t``, or ``keep_firing_for``
        later unless ``immediate`` (the resource is gone).
        """
        for group in groups:
            self._settle(txn, self._slot_keys(txn, org, rkey, group), now)
            active, pending = self._slot(txn, org, rkey, group)
            if pending is not None and pending.since <= t:
                txn.set(alert_key(org, pending.fingerprint), None)
                _unslot(txn, pending)
            if active is None or active.since > t:
                continue  # nothing to resolve, or stale: it began after this event
            akey = alert_key(org, active.fingerprint)
            if immediate or active.keep_firing_for <= 0:
                self._resolve(txn, akey, active, t, now, cause)
            elif active.deadline is None:
                txn.set(akey, _replace(active, deadline=t + active.keep_firing_for, updated_at=now))
                self._settle(txn, [akey], now)  # keep_firing_for may already be over
        # drop index entries whose alerts are gone (a resource that is gone keeps none)
        idx = txn.index(rkey)
        kept = (FIRING,) if immediate else (FIRING, RESOLVED)
        live_active = {g: f for g, f in idx.active.items() if _status(txn, org, f) in kept}
        live_pending = {g: f for g, f in idx.pending.items() if _status(txn, org, f) == PENDING}
        txn.set_index(rkey, live_active, live_pending)

    # ------------------------------------------------------------------ pushes

    def _push(self, state: Mapping[str, StateValue], inp: PushedAlerts, now: float) -> Step[StateValue]:
        items: list[tuple[str, Posted]] = []
        for i, pushed in enumerate(inp.alerts):
            try:
                posted = prepare(pushed, now, self.resolve_timeout)
            except InvalidAlert as exc:
                raise Reject(f"push {inp.request_id}: alert {i}: {exc}") from None
            # The push's org, never the org_id label: the edge (parse_push) split the request
            # by that label and published each part to its org's partition, where the history
            # and audit reads look for it; an alert keyed under another org would be stranded.
            items.append((inp.org, posted))
        txn = _Txn(state, inp.trace)
        cause = Cause(kind="push", id=inp.request_id, at=inp.received_at)
        for org, posted in items:
            self._put(txn, org, posted, now, cause)
        return txn.step()

    def _put(self, txn: _Txn, org: str, posted: Posted, now: float, cause: Cause) -> None:
        fp = fingerprint(posted.labels)
        key = alert_key(org, fp)
        cur = txn.alert(key)
        if cur is not None and (cur.group or (cur.deadline is not None and cur.deadline <= now)):
            # (what _settle would do: nothing unless its timer is due or it holds a rule group's slot)
            self._settle(txn, [key], now)
            cur = txn.alert(key)
        if cur is not None and cur.status == PENDING:
            # A pending event alert was never visible: the push takes its place.
            txn.set(key, None)
            _unslot(txn, cur)
            cur = None
        old = None
        if cur is not None:
            old = Posted(
                labels=cur.labels,
                annotations=cur.annotations,
                starts_at=cur.starts_at,
                ends_at=cur.ends_at,
                generator_url=cur.generator_url,
                timeout=cur.timeout,
                updated_at=cur.updated_at,
            )
        res = put(old, posted, now)
        status: Status = RESOLVED if is_resolved(res.ends_at, now) else FIRING
        new = AlertState(
            org=org,
            fingerprint=fp,
            labels=cur.labels if cur is not None else dict(res.labels),
            annotations=dict(res.annotations),
            starts_at=res.starts_at,
            ends_at=res.ends_at,
            generator_url=res.generator_url,
            updated_at=now,
            status=status,
            deadline=res.ends_at if status == FIRING else now + self.retention,
            timeout=res.timeout,
            # an event alert stays in its group's slot only while it keeps firing
            group=cur.group if cur is not None and cur.status == FIRING else "",
            keep_firing_for=cur.keep_firing_for if cur is not None and cur.status == FIRING else 0.0,
            since=cur.since if cur is not None else res.starts_at,
        )
        if cur is None:
            txn.changes[key] = new  # (txn.set: nothing stored there equals it)
            txn.emit("fired" if status == FIRING else "resolved", new, cause)
            return
        visible = _content(new) != _content(cur)
        if not visible and status == cur.status:
            if new.timeout != cur.timeout:  # invisible, but it changes how later pushes merge
                txn.set(key, _replace(cur, timeout=new.timeout, updated_at=now))
            return
        if status == cur.status == RESOLVED and cur.ends_at == new.ends_at:
            new = _replace(new, deadline=cur.deadline)
        txn.set(key, new)
        if status != cur.status:
            txn.emit("fired" if status == FIRING else "resolved", new, cause)
        else:
            txn.emit("updated", new, cause)


def _rkey(v: AlertState) -> str:
    return resource_key(v.org, v.labels.get("resource_kind", ""), v.labels.get("resource", ""))


def _status(txn: _Txn, org: str, fp: str) -> str | None:
    v = txn.alert(alert_key(org, fp))
    return None if v is None else v.status


def _without(d: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in d.items() if k != key}


def _unslot(txn: _Txn, v: AlertState) -> None:
    """Remove an event alert from its resource's index."""
    rkey = _rkey(v)
    idx = txn.index(rkey)
    active = {g: f for g, f in idx.active.items() if f != v.fingerprint}
    pending = {g: f for g, f in idx.pending.items() if f != v.fingerprint}
    if active != idx.active or pending != idx.pending:
        txn.set_index(rkey, active, pending)
