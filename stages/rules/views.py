"""Read-only views of the rules stage's state and outputs for the API (pure functions).

The API reads the state subjects under :func:`alert_state_prefix` and the output subjects
:func:`history_subjects` names, and hands the raw values here; it gets ``contracts`` messages
back and never decodes the stage's state layout (``state.py``) itself. It also shows the
alerts of pushes the stage has not applied yet as the stage will store them
(:func:`unprocessed_alerts`, see ``pipeline.application.api.unprocessed``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from contracts import Alert, PushedAlerts
from contracts.labels import fingerprint
from stages.rules.alerts import InvalidAlert, Posted, prepare, put
from stages.rules.core import alert_key, alert_subject, defs_key
from stages.rules.state import FIRING, AlertState, RuleDefs, StateValue, to_alert

__all__ = ["alert_state_prefix", "applied_changes", "firing_alert", "history_subjects", "org_of_alert_key",
           "rule_defs_key", "unprocessed_alerts"]

_decoder = msgspec.json.Decoder(StateValue)


def alert_state_prefix(org: str | None = None) -> tuple[str, ...]:
    """The state key prefix of the organisation's alerts (``alert/<org>/``; None: every
    organisation's, ``alert/``), as key tokens."""
    prefix = alert_key("", "").split("/", 1)[0]
    return (prefix,) if org is None else (prefix, org)


def org_of_alert_key(key: str) -> str:
    """The organisation of an alert's state key."""
    return key.split("/", 2)[1]


def firing_alert(data: bytes, now: float) -> Alert | None:
    """The alert an alert state value holds, if it is firing at ``now`` (not resolved, not
    pending, not past its end); None for any other value (a resource index)."""
    v = _decoder.decode(data)
    if isinstance(v, AlertState) and v.status == FIRING and (v.ends_at is None or v.ends_at > now):
        return to_alert(v)
    return None


def history_subjects(org: str, fp: str) -> list[str]:
    """Output subject suffixes (after ``out.<partition>.``) of the changes of alert ``fp``
    (``*``: every alert of ``org``): an output's subject ends in a token of its own, outputs of
    the older layout did not."""
    base = alert_subject(org, fp)
    return [f"{base}.*", base]


def unprocessed_alerts(pushes: Sequence[tuple[float, PushedAlerts]], org: str, processed: set[str],
                       resolve_timeout: float, now: float) -> list[Alert]:
    """The alerts of ``org`` the pending ``pushes`` (each with its stream time) will create, as
    the rules stage will store them, leaving out fingerprints in ``processed`` (known firing
    alerts) and alerts resolved at ``now``; ordered by fingerprint."""
    merged: dict[str, Posted] = {}
    for at, push in pushes:
        if push.org != org:
            continue
        for pushed in push.alerts:
            try:
                posted = prepare(pushed, at, resolve_timeout)
            except InvalidAlert:
                continue  # the rules stage will refuse it too
            fp = fingerprint(posted.labels)
            if fp not in processed:
                merged[fp] = put(merged.get(fp), posted, at)
    return [
        Alert(fingerprint=fp, org=org, labels=dict(p.labels), annotations=dict(p.annotations), starts_at=p.starts_at,
              ends_at=p.ends_at, generator_url=p.generator_url, updated_at=p.updated_at)
        for fp, p in sorted(merged.items())
        if p.ends_at is None or p.ends_at > now
    ]


_values = msgspec.json.Decoder(StateValue)


def rule_defs_key(org: str) -> str:
    """The state key of an organisation's rules as data (one value: its templates and rules)."""
    return defs_key(org)


def applied_changes(data: bytes | None) -> dict[str, str]:
    """``<kind>/<name>`` -> the request id of the change in force, from the value at
    :func:`rule_defs_key` (empty when the organisation has none)."""
    value = _values.decode(data) if data else None
    return dict(value.applied) if isinstance(value, RuleDefs) else {}
