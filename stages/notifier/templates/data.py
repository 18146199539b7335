"""Alertmanager's notification template data (``template.Data``), built from a send request.

Names and methods are Alertmanager's Go ones, so templates read ``.CommonLabels.alertname``,
``.Alerts.Firing``, ``.GroupLabels.SortedPairs.Values`` as in Alertmanager (the Go template
engine maps the methods, see ``gotemplate/exec.py``). :meth:`Data.to_json` gives the JSON
names of the webhook payload (``commonLabels``, ``startsAt``...); :func:`data_from_json`
reads that JSON back (the format of ``amtool template render --template.data``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from contracts.messages import SendRequest

from .gotime import RFC3339_NANO, ZERO_TIME, GoTime, from_unix, go_format, parse_rfc3339

__all__ = [
    "KV",
    "Alerts",
    "Data",
    "EscalationData",
    "Pair",
    "Pairs",
    "Strings",
    "TemplateAlert",
    "alert_status",
    "build_data",
    "data_from_json",
    "group_status",
    "quote_meta",
]

_ALERTNAME = "alertname"
_GO_REGEXP_META = frozenset("\\.+*?()|[]{}^$")


class Strings(list[str]):
    """Go's ``[]string`` (what ``Names``, ``Values`` and ``stringSlice`` return; ``join`` takes it)."""


class Pair(NamedTuple):
    Name: str
    Value: str


class Pairs(list[Pair]):
    """Sorted label pairs, as returned by ``KV.SortedPairs``."""

    @property
    def Names(self) -> Strings:
        return Strings(p.Name for p in self)

    @property
    def Values(self) -> Strings:
        return Strings(p.Value for p in self)

    def __str__(self) -> str:
        return ", ".join(f"{p.Name}={p.Value}" for p in self)


class KV(dict[str, str]):
    """A label or annotation set with Alertmanager's methods.

    In templates a method wins over an entry of the same name (``.Labels.Values`` is the
    method even when the alert has a label ``Values``), as in Go.
    """

    @property
    def SortedPairs(self) -> Pairs:
        # alertname first, then by name: Alertmanager's order
        keys = sorted(k for k in self if k != _ALERTNAME)
        if _ALERTNAME in self:
            keys.insert(0, _ALERTNAME)
        return Pairs(Pair(k, self[k]) for k in keys)

    @property
    def Names(self) -> Strings:
        return self.SortedPairs.Names

    @property
    def Values(self) -> Strings:
        return self.SortedPairs.Values

    def Remove(self, keys: Iterable[str]) -> KV:
        drop = set(keys)
        return KV({k: v for k, v in self.items() if k not in drop})

    def __str__(self) -> str:
        return str(self.SortedPairs)

    def to_json(self) -> dict[str, str]:
        # Go's encoding/json writes map keys sorted
        return dict(sorted(self.items()))


@dataclass(frozen=True, slots=True)
class TemplateAlert:
    """One alert as templates see it (``template.Alert``)."""

    Status: str
    Labels: KV
    Annotations: KV
    StartsAt: GoTime
    EndsAt: GoTime
    GeneratorURL: str
    Fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.Status,
            "labels": self.Labels.to_json(),
            "annotations": self.Annotations.to_json(),
            "startsAt": go_format(self.StartsAt, RFC3339_NANO),
            "endsAt": go_format(self.EndsAt, RFC3339_NANO),
            "generatorURL": self.GeneratorURL,
            "fingerprint": self.Fingerprint,
        }


class Alerts(list[TemplateAlert]):
    """The alerts of a notification, with ``Firing`` and ``Resolved`` subsets."""

    @property
    def Firing(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "firing")

    @property
    def Resolved(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "resolved")


@dataclass(frozen=True, slots=True)
class EscalationData:
    """``.Escalation`` (Tocsin's): the escalation step of the notification; level 0 and no
    policy for the route's own receiver."""

    Level: int = 0
    Policy: str = ""


_NO_ESCALATION = EscalationData()


@dataclass(frozen=True, slots=True)
class Data:
    """Everything a notification template can read, as Alertmanager's ``template.Data``.

    ``GroupKey`` and ``TruncatedAlerts`` come from the webhook message and are available to
    every template. ``Now`` is the send request's creation time: the ``now()`` and ``since()``
    template functions read it instead of the clock, so a retried send renders the same text.
    """

    Receiver: str
    Status: str
    Alerts: Alerts
    GroupLabels: KV
    CommonLabels: KV
    CommonAnnotations: KV
    ExternalURL: str
    GroupKey: str
    TruncatedAlerts: int
    Now: GoTime
    Escalation: EscalationData = _NO_ESCALATION

    def to_json(self) -> dict[str, Any]:
        """The template data part of a webhook message, in Alertmanager's field order."""
        return {
            "receiver": self.Receiver,
            "status": self.Status,
            "alerts": [a.to_json() for a in self.Alerts],
            "groupLabels": self.GroupLabels.to_json(),
            "commonLabels": self.CommonLabels.to_json(),
            "commonAnnotations": self.CommonAnnotations.to_json(),
            "externalURL": self.ExternalURL,
        }


def quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta``: Alertmanager stores the receiver name quoted this way."""
    return "".join("\\" + c if c in _GO_REGEXP_META else c for c in text)


def alert_status(ends_at: float | None, now: float) -> str:
    """``resolved`` once ``ends_at`` is at or before ``now``, else ``firing``."""
    return "resolved" if ends_at is not None and ends_at <= now else "firing"


def group_status(statuses: Iterable[str]) -> str:
    """``firing`` when any alert fires; ``resolved`` otherwise (also for no alerts, as in AM)."""
    return "firing" if any(s == "firing" for s in statuses) else "resolved"


def _common(maps: list[Mapping[str, str]]) -> KV:
    if not maps:
        return KV()
    common = dict(maps[0])
    for m in maps[1:]:
        common = {k: v for k, v in common.items() if m.get(k) == v}
        if not common:
            break
    return KV(common)


def build_data(req: SendRequest, external_url: str, *, max_alerts: int = 0) -> Data:
    """The template data of ``req``; with ``max_alerts > 0`` only the first alerts are kept.

    As in Alertmanager, truncation happens before anything is derived, so ``Status`` and
    the common labels describe the alerts that are sent. Alert statuses are evaluated at
    ``req.created_at``.
    """
    alerts = list(req.alerts)
    truncated = 0
    if max_alerts > 0 and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    now = req.created_at
    items = Alerts(
        TemplateAlert(
            Status=alert_status(a.ends_at, now),
            Labels=KV(a.labels),
            Annotations=KV(a.annotations),
            StartsAt=from_unix(a.starts_at),
            EndsAt=from_unix(a.ends_at),
            GeneratorURL=a.generator_url,
            Fingerprint=a.fingerprint,
        )
        for a in alerts
    )
    return Data(
        Receiver=quote_meta(req.receiver),
        Status=group_status(a.Status for a in items),
        Alerts=items,
        GroupLabels=KV(req.group_labels),
        CommonLabels=_common([a.labels for a in alerts]),
        CommonAnnotations=_common([a.annotations for a in alerts]),
        ExternalURL=external_url,
        GroupKey=req.group_key,
        TruncatedAlerts=truncated,
        Now=from_unix(now),
        Escalation=(EscalationData(req.escalation_level, req.escalation_policy)
                    if req.escalation_level or req.escalation_policy else _NO_ESCALATION),
    )


def data_from_json(obj: Mapping[str, Any], *, now: GoTime | None = None) -> Data:
    """Template data from its JSON form (Alertmanager's ``template.Data`` as JSON).

    Missing fields are Go's zero values; ``now`` (for ``now``/``since``) defaults to the zero time.
    """

    def kv(value: Any) -> KV:
        return KV({str(k): str(v) for k, v in (value or {}).items()})

    def when(value: Any) -> GoTime:
        return parse_rfc3339(value) if value else ZERO_TIME

    alerts = Alerts(
        TemplateAlert(
            Status=str(a.get("status", "")),
            Labels=kv(a.get("labels")),
            Annotations=kv(a.get("annotations")),
            StartsAt=when(a.get("startsAt")),
            EndsAt=when(a.get("endsAt")),
            GeneratorURL=str(a.get("generatorURL", "")),
            Fingerprint=str(a.get("fingerprint", "")),
        )
        for a in obj.get("alerts") or ()
    )
    return Data(
        Receiver=str(obj.get("receiver", "")),
        Status=str(obj.get("status", "")),
        Alerts=alerts,
        GroupLabels=kv(obj.get("groupLabels")),
        CommonLabels=kv(obj.get("commonLabels")),
        CommonAnnotations=kv(obj.get("commonAnnotations")),
        ExternalURL=str(obj.get("externalURL", "")),
        GroupKey=str(obj.get("groupKey", "")),
        TruncatedAlerts=int(obj.get("truncatedAlerts", 0) or 0),
        Now=now or ZERO_TIME,
    )
