"""Escalation policies (Tocsin's own; Alertmanager has none): configuration, state, decisions.

A policy (``tocsin: escalation: policies:``) attaches to an aggregation group when the
group first notifies: the first policy whose matchers match one of the group's firing
alerts wins. Level 0 is the route's own receiver, notified as usual. Step ``i`` (level
``i + 1``) notifies its receivers ``after`` the group's first notification, unless the group
was acknowledged (and the policy allows acks) or resolved by then. ``repeat: n`` runs the
steps ``n`` more times, each run starting when the previous one's last step was due.

The running escalation is kept in the group's state (:class:`Escalation`, with a copy of the
policy's steps: a configuration change never restarts or reshapes an escalation already
running); its timer is the next step's time. The decisions are pure functions of the
escalation and what is true of the group at the step's time (:func:`decide`).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from contracts.matchers import Matcher, MatcherError, matchers_match, parse_matcher
from pipeline.foundation.amconfig.durations import parse_duration

__all__ = [
    "Decision",
    "TEST_SPEED_LABEL",
    "Escalation",
    "EscalationPolicy",
    "EscalationStep",
    "decide",
    "escalation_policies",
    "escalation_send_seq",
    "policy_for",
    "start",
    "speed_of",
]

AckMode = Literal["allowed", "forbidden"]
_POLICY_KEYS = ("name", "matchers", "ack", "steps", "repeat")
_STEP_KEYS = ("after", "receivers")


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after: float  # seconds after the group's first notification
    receivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    name: str
    matchers: tuple[Matcher, ...]
    ack: AckMode
    steps: tuple[EscalationStep, ...]
    repeat: int = 0

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matchers_match(self.matchers, labels)


def _duration(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: expected a duration such as 5m, got {value!r}")
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return float(value)


def escalation_policies(raw: Mapping[str, Any] | None,
                        receivers: Collection[str] | None = None) -> tuple[EscalationPolicy, ...]:
    """Validate ``tocsin: escalation:`` (``ValueError`` naming the offending field). With
    ``receivers``, every step's receivers must be among them."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError("must be a mapping with a policies: list")
    unknown = [k for k in raw if k != "policies"]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: policies)")
    items = raw.get("policies") or []
    if not isinstance(items, list):
        raise ValueError("policies: expected a list of policies")
    out: list[EscalationPolicy] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        out.append(_policy(f"policies[{i}]", item, receivers))
        if out[-1].name in names:
            raise ValueError(f"policies[{i}].name: {out[-1].name!r} is used twice; give each policy its own name")
        names.add(out[-1].name)
    return tuple(out)


def _policy(where: str, item: Any, receivers: Collection[str] | None) -> EscalationPolicy:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a mapping (name, matchers, ack, steps, repeat)")
    for key in item:
        if key not in _POLICY_KEYS:
            raise ValueError(f"{where}: unknown field {key!r} (known: {', '.join(_POLICY_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name: a policy needs a name")
    where = f"{where} ({name})"
    raw_matchers = item.get("matchers") or []
    if not isinstance(raw_matchers, list) or not all(isinstance(m, str) for m in raw_matchers):
        raise ValueError(f"{where}.matchers: expected a list of matchers such as 'severity=\"critical\"'")
    try:
        matchers = tuple(parse_matcher(m) for m in raw_matchers)
    except MatcherError as exc:
        raise ValueError(f"{where}.matchers: {exc}") from None
    ack = item.get("ack", "allowed")
    if ack not in ("allowed", "forbidden"):
        raise ValueError(f"{where}.ack: expected allowed or forbidden, got {ack!r}")
    repeat = item.get("repeat", 0)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise ValueError(f"{where}.repeat: expected a whole number >= 0, got {repeat!r}")
    raw_steps = item.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError(f"{where}.steps: a policy needs at least one step (after, receivers)")
    steps: list[EscalationStep] = []
    for j, raw_step in enumerate(raw_steps):
        sw = f"{where}.steps[{j}]"
        if not isinstance(raw_step, Mapping):
            raise ValueError(f"{sw}: expected a mapping with after and receivers")
        for key in raw_step:
            if key not in _STEP_KEYS:
                raise ValueError(f"{sw}: unknown field {key!r} (known: after, receivers)")
        after = _duration(f"{sw}.after", raw_step.get("after"))
        if after <= 0:
            raise ValueError(f"{sw}.after: must be positive (level 0 is the route's own receiver)")
        if steps and after <= steps[-1].after:
            raise ValueError(f"{sw}.after: steps must come later and later ({after:g}s is not after "
                             f"{steps[-1].after:g}s)")
        rcvs = raw_step.get("receivers")
        if not isinstance(rcvs, list) or not rcvs or not all(isinstance(r, str) and r for r in rcvs):
            raise ValueError(f"{sw}.receivers: expected a non-empty list of receiver names")
        if receivers is not None:
            missing = [r for r in rcvs if r not in receivers]
            if missing:
                raise ValueError(f"{sw}.receivers: receiver {missing[0]!r} is not in the configuration; "
                                 "add it under receivers: or fix the name")
        steps.append(EscalationStep(after, tuple(rcvs)))
    return EscalationPolicy(name=name, matchers=matchers, ack=ack, steps=tuple(steps), repeat=repeat)


def policy_for(policies: Sequence[EscalationPolicy],
               labelsets: Iterable[Mapping[str, str]]) -> EscalationPolicy | None:
    """The first policy matching one of these label sets (a group's firing alerts)."""
    if not policies:
        return None
    sets = list(labelsets)
    return next((p for p in policies if any(p.matches(ls) for ls in sets)), None)


class Escalation(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A group's running escalation (kept in its ``GroupState``).

    ``steps`` is the policy's steps as they were when it started: ``[after, [receivers]]``.
    ``next`` counts the steps done over every run (level ``next % len(steps) + 1``).
    ``paused``: a step fell due while the group was acknowledged; no timer until the
    acknowledgement is withdrawn (the overdue step then notifies at once) or a new alert joins.
    ``start_seq``: the send sequence of the notification that started it (in the send ids).
    """

    policy: str
    ack: AckMode
    started_at: float
    steps: list[tuple[float, list[str]]]
    repeat: int
    start_seq: str
    next: int = 0
    paused: bool = False

    @property
    def total(self) -> int:
        return len(self.steps) * (self.repeat + 1)

    def step_at(self, n: int) -> float:
        """When overall step ``n`` is due."""
        run, i = divmod(n, len(self.steps))
        return self.started_at + run * self.steps[-1][0] + self.steps[i][0]

    def level_of(self, n: int) -> int:
        return n % len(self.steps) + 1

    @property
    def due_at(self) -> float | None:
        if self.paused or self.next >= self.total:
            return None
        return self.step_at(self.next)


TEST_SPEED_LABEL = "tocsin_escalation_speed"
MAX_TEST_SPEED = 3600.0


def speed_of(labelsets: Iterable[Mapping[str, str]]) -> float:
    """The speed-up a test alert asks for (``tocsin alerts escalation-test``): its label
    ``tocsin_escalation_speed`` divides the steps' delays (1 to 3600; 1 without the label)."""
    speed = 1.0
    for labels in labelsets:
        try:
            value = float(labels.get(TEST_SPEED_LABEL, "1"))
        except ValueError:
            continue
        if 1.0 <= value <= MAX_TEST_SPEED:
            speed = max(speed, value)
    return speed


def start(policy: EscalationPolicy, t: float, start_seq: str, speed: float = 1.0) -> Escalation:
    return Escalation(policy=policy.name, ack=policy.ack, started_at=t,
                      steps=[(s.after / speed, list(s.receivers)) for s in policy.steps], repeat=policy.repeat,
                      start_seq=start_seq)


def escalation_send_seq(esc: Escalation, n: int) -> str:
    """The flush part of step ``n``'s send ids: unique per escalation run and step, the same
    when the step is replayed after a crash (the notifier's ledger then drops the copy)."""
    return f"esc{esc.start_seq}.{n}"


class Decision(enum.Enum):
    WAIT = "wait"  # not due yet (the timer moved)
    NOTIFY = "notify"  # notify step ``next``'s receivers, move on
    SKIP = "skip"  # nothing to notify about (every firing alert silenced or inhibited): move on
    PAUSE = "pause"  # acknowledged: stop until the ack is withdrawn or a new alert joins
    END = "end"  # resolved, or no step left


def decide(esc: Escalation, now: float, *, firing: bool, notifiable: bool, acked: bool) -> Decision:
    """What a step's timer does at ``now``: ``firing`` (the group has firing alerts),
    ``notifiable`` (some of them are neither silenced nor inhibited), ``acked`` (all of them
    are acknowledged)."""
    if esc.next >= esc.total or not firing:
        return Decision.END
    if esc.paused:
        return Decision.WAIT
    if esc.step_at(esc.next) > now:
        return Decision.WAIT
    if acked and esc.ack == "allowed":
        return Decision.PAUSE
    if not notifiable:
        return Decision.SKIP
    return Decision.NOTIFY
