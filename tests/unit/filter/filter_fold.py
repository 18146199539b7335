"""A small fold that drives the filter core as the runtime does, shared by the filter tests.

``Fold.step`` first fires every timer due by the input's time (earliest first, each with
``now`` equal to its deadline), then steps the input; both apply ``Step.changes`` to a plain
dict. Every call checks that the core did not mutate the state it was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.labels import fingerprint
from contracts.messages import (
    AckCommand,
    Alert,
    AlertChange,
    Cause,
    GroupFlush,
    SendRequest,
    Silence,
    SilenceCommand,
    SilenceMatcher,
)
from pipeline.foundation.amconfig import load_config_text
from pipeline.foundation.runtime.step import Out
from stages.filter.config import FilterConfig, FilterOptions, filter_config
from stages.filter.core import FilterCore
from stages.filter.state import GroupState, NflogEntry, StateValue, group_record_key
from stages.filter.ticks import LastFlush
from tests.core_fold import CoreFold

_seq = itertools.count(1)

CONFIG_YAML = """
route:
  receiver: team
receivers:
  - name: team
    webhook_configs:
      - url: http://hook.example/team
  - name: quiet
    webhook_configs:
      - url: http://hook.example/quiet
        send_resolved: false
  - name: pager
    pagerduty_configs:
      - routing_key: pd-key
    webhook_configs:
      - url: http://hook.example/pager
  - name: multi
    slack_configs:
      - api_url: https://hooks.slack.example/x
        channel: '#a'
        send_resolved: true
    pagerduty_configs:
      - routing_key: pd-key
    email_configs:
      - to: ops@example.org
        from: am@example.org
        smarthost: smtp.example.org:25
    webhook_configs:
      - url: http://hook.example/m0
      - url: http://hook.example/m1
        send_resolved: false
  - name: nobody
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [cluster]
  - source_match: {alertname: NodeDown}
    target_match_re: {alertname: "App.*"}
    equal: [node]
  - source_matchers: [alertname="Src"]
    target_matchers: [severity="page"]
time_intervals:
  - name: weekends
    time_intervals:
      - weekdays: ['saturday', 'sunday']
  - name: paris-office
    time_intervals:
      - weekdays: ['monday:friday']
        times:
          - start_time: '09:00'
            end_time: '17:00'
        location: Europe/Paris
"""


def config(**options: Any) -> FilterConfig:
    return filter_config(load_config_text(CONFIG_YAML), FilterOptions(**options))


def core(**options: Any) -> FilterCore:
    return FilterCore(config(**options))



class Fold(CoreFold[StateValue]):
    def step(self, inp: Any, now: float | None = None) -> list[Out]:
        """Fire due timers, then step ``inp`` at ``now`` (default: the input's own time)."""
        if now is None:
            now = _time_of(inp)
        timers = self.advance(now)
        return timers + self._apply(self._call(self.core.step, inp, now))

    def sends(self, inp: Any, now: float | None = None) -> list[SendRequest]:
        return sends(self.step(inp, now))


def _time_of(inp: Any) -> float:
    if isinstance(inp, GroupFlush):
        return inp.flushed_at
    if isinstance(inp, SilenceCommand | AckCommand):
        return inp.at
    if isinstance(inp, AlertChange):
        return inp.cause.at
    raise TypeError(inp)


def group_of(state: Mapping[str, StateValue], group_key: str = "{}:{}", org: str = "o1") -> GroupState:
    """A group's state (an empty one when the filter keeps nothing of it)."""
    value = state.get(group_record_key(org, group_key))
    assert value is None or isinstance(value, GroupState), value
    return value or GroupState()


def last_of(state: Mapping[str, StateValue], group_key: str = "{}:{}", org: str = "o1") -> LastFlush | None:
    return group_of(state, group_key, org).last


def log_entries(state: Mapping[str, StateValue]) -> dict[str, NflogEntry]:
    """Every notification log entry of the state, by ``<group key's hash>/<receiver>/<kind>/<i>``."""
    return {f"{key.split('/')[2]}/{k}": e for key, v in state.items() if isinstance(v, GroupState)
            for k, e in v.log.items()}


def sends(outs: Sequence[Out]) -> list[SendRequest]:
    result = []
    for o in outs:
        assert isinstance(o.payload, SendRequest)
        result.append(o.payload)
    return result


def alert(labels: Mapping[str, str], *, starts: float = 0.0, ends: float | None = None, org: str = "o1") -> Alert:
    return Alert(fingerprint=fingerprint(labels), org=org, labels=dict(labels), starts_at=starts, ends_at=ends)


def fp(labels: Mapping[str, str]) -> str:
    return fingerprint(labels)


def change(kind: str, a: Alert, at: float) -> AlertChange:
    return AlertChange(change=kind, alert=a, cause=Cause(kind="push", id=f"c{next(_seq)}", at=at))  # type: ignore[arg-type]


def flush(alerts: Sequence[Alert], at: float, *, seq: int = 1, receiver: str = "team", group_key: str = "{}:{}",
          group_id: str = "g1", org: str = "o1", repeat: float = 3600.0, interval: float = 300.0,
          mute: Sequence[str] = (), active: Sequence[str] = (), trace: Mapping[str, str] | None = None) -> GroupFlush:
    return GroupFlush(
        org=org, group_key=group_key, group_id=group_id, route_id="0", receiver=receiver,
        group_labels={}, alerts=list(alerts), flush_seq=seq, flushed_at=at, group_interval=interval,
        repeat_interval=repeat, mute_time_intervals=list(mute), active_time_intervals=list(active),
        trace=dict(trace or {"traceparent": "00-flush-01"}),
    )


def matcher(name: str, value: str, *, regex: bool = False, equal: bool = True) -> SilenceMatcher:
    return SilenceMatcher(name=name, value=value, is_regex=regex, is_equal=equal)


def silence(sid: str, matchers: Sequence[SilenceMatcher], starts: float, ends: float, *, org: str = "o1",
            by: str = "alice", comment: str = "maintenance") -> Silence:
    return Silence(id=sid, org=org, matchers=list(matchers), starts_at=starts, ends_at=ends, created_by=by,
                   comment=comment)


def upsert(s: Silence, at: float, *, cmd_id: str | None = None) -> SilenceCommand:
    return SilenceCommand(action="upsert", org=s.org, id=s.id if cmd_id is None else cmd_id, at=at, silence=s)


def expire(sid: str, at: float, *, org: str = "o1") -> SilenceCommand:
    return SilenceCommand(action="expire", org=org, id=sid, at=at)


def ack(at: float, *, group_key: str = "", fingerprint: str = "", expires: float | None = None, org: str = "o1",
        action: str = "ack") -> AckCommand:
    return AckCommand(action=action, org=org, at=at, group_key=group_key, fingerprint=fingerprint,  # type: ignore[arg-type]
                      by="bob", comment="on it", expires_at=expires)


def sent_fps(reqs: Sequence[SendRequest]) -> list[list[str]]:
    """The fingerprints of each send, in order."""
    return [[a.fingerprint for a in r.alerts] for r in reqs]
