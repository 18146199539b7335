"""The rules stage's state values: one per alert, and one index per resource with event alerts.

Both are compact msgspec Structs: ``array_like`` keeps the state subjects small on the wire and
``gc=False`` keeps 100,000s of them out of the cyclic garbage collector's way (they hold only
strings, floats and flat dicts, so they can never be part of a reference cycle). A
``tag`` tells the two apart when the runtime decodes a state subject (``StateValue``).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from contracts.messages import Alert
from stages.rules.defs import Rule, Template

__all__ = [
    "FIRING",
    "PENDING",
    "RESOLVED",
    "AlertState",
    "ResourceIndex",
    "RuleDefs",
    "StateValue",
    "Status",
    "to_alert",
]

Status = Literal["pending", "firing", "resolved"]
PENDING: Final = "pending"  # an event alert waiting out its ``for``; never visible downstream
FIRING: Final = "firing"
RESOLVED: Final = "resolved"  # kept until ``deadline`` (the retention period) so late duplicates are known


class AlertState(msgspec.Struct, array_like=True, gc=False, frozen=True, tag="a"):
    """One alert of one organisation, keyed by ``subjects.token(org) + "." + fingerprint``.

    ``status`` is what was last announced downstream (``fired``/``resolved``), which can lag
    behind ``ends_at`` until the timer at ``deadline`` runs; the core settles due timers
    before it looks at a value, so that lag is never observable in outputs.

    ``deadline`` means, by status: pending -> when it fires (``for`` elapsed); firing ->
    when it resolves (``ends_at`` of a pushed alert, or the end of ``keep_firing_for`` of an
    event alert); resolved -> when the retained alert is deleted.
    """

    org: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None  # None: firing with no known end (event alerts)
    generator_url: str
    updated_at: float  # event time of the last change of this value
    status: Status
    deadline: float | None
    timeout: bool = False  # ends_at came from resolve_timeout (Alertmanager's Alert.Timeout)
    group: str = ""  # the event rule group whose slot holds this alert ("" for pushed alerts)
    keep_firing_for: float = 0.0  # event alerts: resolves are delayed by this long
    since: float = 0.0  # event alerts: occurred_at of the event that activated it (staleness checks)


class ResourceIndex(msgspec.Struct, array_like=True, gc=False, frozen=True, tag="r"):
    """The event alerts of one resource: rule group -> fingerprint, keyed by the resource.

    Resolving events carry no labels of the alert they resolve (mapped field labels may
    differ), so the active and pending alert of each exclusive group is found here. An
    entry whose alert is no longer firing (or pending), or no longer in that group, is stale
    and ignored. A resolved alert keeps its ``active`` entry until its retention ends, so an
    alert that flaps fires and resolves without rewriting the index.
    """

    active: dict[str, str] = {}
    pending: dict[str, str] = {}


class RuleDefs(msgspec.Struct, array_like=True, frozen=True, tag="d"):
    """One organisation's own templates and rules (the ``api`` layer), keyed ``rules/<org>``:
    applied in input order from ``RuleCommand`` messages, so every event after a change sees it.

    ``applied``: ``<kind>/<name>`` -> the request id of the command that last put it (the API
    waits for it, to answer once the change is in force)."""

    templates: dict[str, Template] = {}
    rules: dict[str, Rule] = {}
    applied: dict[str, str] = {}


StateValue = AlertState | ResourceIndex | RuleDefs


def to_alert(s: AlertState) -> Alert:
    """The alert as the rest of the pipeline sees it (``contracts.Alert``)."""
    return Alert(
        fingerprint=s.fingerprint,
        org=s.org,
        labels=dict(s.labels),
        annotations=dict(s.annotations),
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        generator_url=s.generator_url,
        updated_at=s.updated_at,
    )
