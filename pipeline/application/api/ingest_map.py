"""Payloads of other senders -> alerts in Alertmanager's API v2 form (pure: time is an argument).

Each mapper returns the alerts as ``POST /api/v2/alerts`` takes them (``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``), so they go through the very
validation and organisation resolution of a push (``pipeline.application.api.push.parse_push``), and
the reasons of the items it could not map (those go to the dead letters). ``PayloadError``
is a payload that is not the sender's format at all (answered 400).

Times follow Alertmanager's semantics in the rules stage. A firing alert gets the end
``now + firing_ttl``, or with a ``firing_ttl`` of 0 no end (:data:`OPEN_END`, the last time
RFC 3339 can write): CloudWatch and Grafana do not repeat a firing alert every minute as
Prometheus does, so ``resolve_timeout`` would resolve it while it still fires. A resolved
alert ends at the time the sender gives, never later than ``now``.

Generic mapping expressions (:func:`evaluate`) are either a field path, ``a.b[0].c``
(optionally ``$.a...``; ``["a.b"]`` for a key holding a dot), or a Go template over the
item (``{{ .level | toLower }}``), the engine of the notification templates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.application.api.convert import rfc3339
from pipeline.application.config.ingest import IngestMapping
from pipeline.application.config.ingest_expr import (
    Unmappable,
    as_text,
    evaluate,
    expression_problem,
    get_path,
    parse_path,
    path_problem,
)

__all__ = [
    "OPEN_END",
    "PayloadError",
    "Unmappable",
    "am_alert",
    "evaluate",
    "expression_problem",
    "firing_end",
    "get_path",
    "map_generic",
    "map_grafana",
    "parse_path",
    "path_problem",
    "to_time",
]

OPEN_END: Final = 253402300799.0  # 9999-12-31T23:59:59Z


class PayloadError(ValueError):
    """Not the sender's format (answered 400 with this message)."""


def to_time(text: str, field: str) -> float | None:
    """RFC 3339, or Unix seconds (milliseconds when above 1e12); "" and Go's zero time are None."""
    text = text.strip()
    if not text or text.startswith("0001-01-01T00:00:00"):
        return None
    try:
        t = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Unmappable(f"{field} {text[:64]!r} is neither RFC 3339 nor Unix seconds") from None
        t = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        t = t / 1000 if t > 1e12 else t
    if not math.isfinite(t) or not 0 < t <= OPEN_END:
        raise Unmappable(f"{field} {text[:64]!r} is out of range")
    return t


# --------------------------------------------------------------------------- alerts


def firing_end(now: float, firing_ttl: float) -> float:
    return now + firing_ttl if firing_ttl > 0 else OPEN_END


def am_alert(labels: Mapping[str, str], annotations: Mapping[str, str], *, firing: bool, now: float,
             firing_ttl: float, starts_at: float | None = None, ends_at: float | None = None,
             generator_url: str = "") -> dict[str, Any]:
    """An alert as ``POST /api/v2/alerts`` takes it. ``ends_at`` counts only for a resolved one."""
    out: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations)}
    if firing:
        end = firing_end(now, firing_ttl)
        out["endsAt"] = rfc3339(end)
        if starts_at is not None:
            out["startsAt"] = rfc3339(min(starts_at, end))
    else:
        end = min(ends_at, now) if ends_at is not None else now
        out["endsAt"] = rfc3339(end)
        if starts_at is not None and starts_at <= end:
            out["startsAt"] = rfc3339(starts_at)
    if generator_url:
        out["generatorURL"] = generator_url
    return out


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unmappable(f"{what} is not an object")
    return {str(k): as_text(v) for k, v in value.items()}


def map_grafana(doc: Any, *, now: float, firing_ttl: float) -> tuple[list[dict[str, Any]], list[str]]:
    """Grafana's webhook contact point payload (``alerts``, each with ``status``, ``labels``,
    ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise PayloadError("not a Grafana webhook payload: expected an object with an alerts array")
    alerts: list[dict[str, Any]] = []
    reasons: list[str] = []
    for i, raw in enumerate(doc["alerts"]):
        try:
            if not isinstance(raw, dict):
                raise Unmappable("is not an object")
            status = raw.get("status") or doc.get("status") or "firing"
            if status not in ("firing", "resolved"):
                raise Unmappable(f"status {str(status)[:32]!r} is neither firing nor resolved")
            gen = raw.get("generatorURL")
            alerts.append(am_alert(
                _string_map(raw.get("labels"), "labels"), _string_map(raw.get("annotations"), "annotations"),
                firing=status == "firing", now=now, firing_ttl=firing_ttl,
                starts_at=to_time(as_text(raw.get("startsAt")), "startsAt"),
                ends_at=to_time(as_text(raw.get("endsAt")), "endsAt"),
                generator_url=gen if isinstance(gen, str) else ""))
        except Unmappable as exc:
            reasons.append(f"alerts[{i}]: {exc}")
    return alerts, reasons


def _status(mapping: IngestMapping, item: Any) -> bool:
    """True when the item fires."""
    if not mapping.status:
        return True
    value = evaluate(mapping.status, item).strip().lower()
    if value in (v.lower() for v in mapping.firing):
        return True
    if value in (v.lower() for v in mapping.resolved):
        return False
    known = ", ".join([*mapping.firing, *mapping.resolved])
    raise Unmappable(f"status {value[:64]!r} is not one of {known}")


def _one(mapping: IngestMapping, item: Any, *, now: float, firing_ttl: float) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Unmappable("is not an object")
    alertname = evaluate(mapping.alertname, item).strip()
    if not alertname:
        raise Unmappable(f"alertname {mapping.alertname!r} gives nothing")
    labels = {"alertname": alertname}
    for name, expr in mapping.labels.items():
        value = evaluate(expr, item)
        if value:
            labels[name] = value
    if mapping.fingerprint:
        fp = evaluate(mapping.fingerprint, item)
        if not fp:
            raise Unmappable(f"fingerprint {mapping.fingerprint!r} gives nothing")
        labels[mapping.fingerprint_label] = fp
    annotations = {name: v for name, expr in mapping.annotations.items() if (v := evaluate(expr, item))}
    return am_alert(
        labels, annotations, firing=_status(mapping, item), now=now, firing_ttl=firing_ttl,
        starts_at=to_time(evaluate(mapping.starts_at, item), "starts_at") if mapping.starts_at else None,
        ends_at=to_time(evaluate(mapping.ends_at, item), "ends_at") if mapping.ends_at else None,
        generator_url=evaluate(mapping.generator_url, item) if mapping.generator_url else "")


def map_generic(doc: Any, mapping: IngestMapping, *, now: float,
                firing_ttl: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The alerts a configured mapping gives for a JSON document, and why the others failed."""
    items: Any = get_path(doc, mapping.alerts) if mapping.alerts else doc
    if mapping.alerts and not isinstance(items, list):
        return [], [f"alerts {mapping.alerts!r} is not a list in the payload"]
    if not isinstance(items, list):
        items = [items]
    alerts: list[dict[str, Any]] = []
    reasons: list[str] = []
    for i, item in enumerate(items):
        try:
            alerts.append(_one(mapping, item, now=now, firing_ttl=firing_ttl))
        except Unmappable as exc:
            reasons.append(f"item {i}: {exc}")
    if not items:
        reasons.append("no alerts in the payload")
    return alerts, reasons
