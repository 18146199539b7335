"""``tocsin alerts ...``: the on-call operator's commands, talking to a running Tocsin's API.

``--url`` is the API (as amtool's ``--alertmanager.url``; default ``$TOCSIN_URL`` or
http://127.0.0.1:9093); the bearer token comes from ``--token-file`` or ``$TOCSIN_TOKEN``;
``--org`` sets ``X-Scope-OrgID``. Commands:

- ``list``: active alerts with their state (firing, acknowledged, silenced, suppressed) and
  escalation level;
- ``ack ID | --matchers M... | --group KEY`` and ``unack`` (same targets);
- ``resolve ID``: pushes the alert again with ``endsAt`` now;
- ``fire SCENARIO [label=value ...]``: a built-in scenario (``critical_api_down``,
  ``disk_warning``, ``security_incident``) or any label set;
- ``escalation-test POLICY --speed N``: fires a test alert through a policy with its delays
  divided by N (the label ``tocsin_escalation_speed``) and prints each level as it is notified;
- ``storm-test --alerts N --rate R``: a burst of alerts, then how grouping and inhibition
  reduced it.

Exit status: 0 on success, 1 when the API refused or could not be reached (the message says
why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pipeline.application.api_client import ApiClient, CliError, add_connection_arguments

__all__ = ["SCENARIOS", "add_parser", "run"]

SCENARIOS: dict[str, dict[str, Any]] = {
    "critical_api_down": {"labels": {"alertname": "ApiDown", "severity": "critical", "service": "api"},
                          "annotations": {"summary": "The API answers 5xx to every request"}},
    "disk_warning": {"labels": {"alertname": "DiskFilling", "severity": "warning", "instance": "db-1"},
                     "annotations": {"summary": "Disk 85% full on db-1"}},
    "security_incident": {"labels": {"alertname": "SecurityIncident", "severity": "security", "service": "auth"},
                          "annotations": {"summary": "Unexpected admin login from an unknown network"}},
}
_SPEED_LABEL = "tocsin_escalation_speed"  # stages.filter.escalation.TEST_SPEED_LABEL (no stage import here)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``alerts`` and its subcommands to ``tocsin``'s subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser("alerts", help="on-call commands against a running Tocsin: "
                                                       "list, ack, unack, resolve, fire, escalation-test, storm-test")
    add_connection_arguments(p)
    sub = p.add_subparsers(dest="alerts_cmd", required=True)
    ls = sub.add_parser("list", help="active alerts with state and escalation level")
    ls.add_argument("--json", action="store_true", help="one JSON object a line")
    for name, text in (("ack", "acknowledge"), ("unack", "withdraw an acknowledgement")):
        a = sub.add_parser(name, help=f"{text}: an alert (fingerprint), matching alerts, or a group")
        a.add_argument("id", nargs="?", help="the alert's fingerprint")
        a.add_argument("--matchers", nargs="+", default=[], metavar="MATCHER",
                       help="every firing alert matching these, e.g. 'severity=\"critical\"'")
        a.add_argument("--group", default="", help="a group key (see `list`)")
        a.add_argument("--comment", default="")
        a.add_argument("--by", default="", help="who (default: the token's subject)")
        if name == "ack":
            a.add_argument("--duration", default="", help="the acknowledgement expires after this (e.g. 2h)")
    r = sub.add_parser("resolve", help="resolve an alert now (pushes it with endsAt now)")
    r.add_argument("id", help="the alert's fingerprint")
    f = sub.add_parser("fire", help=f"fire a scenario ({', '.join(SCENARIOS)}) or any label set")
    f.add_argument("scenario", help="a scenario name, or label=value")
    f.add_argument("labels", nargs="*", help="more label=value pairs (override the scenario's)")
    e = sub.add_parser("escalation-test", help="fire a test alert through a policy, its delays scaled down, "
                       "and print each level as it is notified")
    e.add_argument("policy")
    e.add_argument("--speed", type=float, default=60.0, help="divide the policy's delays by this (1 to 3600)")
    e.add_argument("--keep", action="store_true", help="leave the test alert firing (default: resolve it)")
    s = sub.add_parser("storm-test", help="a burst of alerts that shows grouping and inhibition at work")
    s.add_argument("--alerts", type=int, default=200)
    s.add_argument("--rate", type=float, default=100.0, help="alerts per second")
    s.add_argument("--keep", action="store_true", help="leave them firing (default: resolve them)")
    return p


# --------------------------------------------------------------------------- plumbing


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def _labels(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"{pair!r} is not label=value")
        out[name] = value.strip('"')
    return out


def _push(api: ApiClient, alerts: list[dict[str, Any]]) -> None:
    api.call("POST", "/api/v2/alerts", json=alerts)


def _alerts(api: ApiClient) -> list[dict[str, Any]]:
    return list(api.call("GET", "/api/v2/alerts") or [])


# --------------------------------------------------------------------------- commands


def _list(api: ApiClient, args: argparse.Namespace) -> int:
    alerts = _alerts(api)
    acks = api.call("GET", "/api/tocsin/acks") or []
    escalations = api.call("GET", "/api/tocsin/escalations") or []
    acked_fps = {a["target"] for a in acks if a["kind"] == "alert" and a["active"]}
    acked_groups = {a["target"] for a in acks if a["kind"] == "group" and a["active"]}
    level: dict[str, tuple[int, str, str, bool]] = {}
    for e in escalations:
        for fp in e["fingerprints"]:
            level[fp] = (e["level"], e["policy"], e["groupKey"], e["paused"])
    rows = []
    for a in alerts:
        fp, status = a["fingerprint"], a.get("status", {})
        lvl, policy, group, _ = level.get(fp, (0, "", "", False))
        if status.get("silencedBy"):
            state = "silenced"
        elif status.get("state") == "suppressed":
            state = "suppressed"
        elif fp in acked_fps or group in acked_groups:
            state = "acknowledged"
        else:
            state = "firing"
        rows.append({"fingerprint": fp, "state": state, "level": lvl, "policy": policy, "group": group,
                     "labels": a["labels"], "startsAt": a.get("startsAt", "")})
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    print(f"{'FINGERPRINT':<18} {'STATE':<13} {'LEVEL':<5} {'POLICY':<12} {'STARTED':<25} LABELS")
    for row in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        print(f"{row['fingerprint']:<18} {row['state']:<13} {row['level']:<5} {row['policy'] or '-':<12} "
              f"{row['startsAt'][:23]:<25} {labels}")
    return 0


def _ack(api: ApiClient, args: argparse.Namespace, remove: bool) -> int:
    targets = [bool(args.id), bool(args.matchers), bool(args.group)]
    if sum(targets) != 1:
        raise CliError("name exactly one of: an alert ID (fingerprint), --matchers, --group")
    body: dict[str, Any] = {"by": args.by, "comment": args.comment}
    if args.id:
        body["fingerprint"] = args.id
    elif args.matchers:
        body["matchers"] = args.matchers
    else:
        body["groupKey"] = args.group
    if not remove and args.duration:
        body["expiresAt"] = _iso(time.time() + _duration(args.duration))
    api.call("POST", "/api/tocsin/unacks" if remove else "/api/tocsin/acks", json=body)
    what = args.id or args.group or " ".join(args.matchers)
    print(f"{'unacknowledged' if remove else 'acknowledged'}: {what}")
    return 0


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise CliError(f"--duration {text!r}: expected a number and a unit (s, m, h, d), e.g. 2h") from None


def _resolve(api: ApiClient, args: argparse.Namespace) -> int:
    found = [a for a in _alerts(api) if a["fingerprint"] == args.id]
    if not found:
        raise CliError(f"no active alert {args.id} (see `tocsin alerts list`)")
    a = found[0]
    _push(api, [{"labels": a["labels"], "annotations": a.get("annotations", {}), "startsAt": a["startsAt"],
                 "endsAt": _iso(time.time()), "generatorURL": a.get("generatorURL", "")}])
    print(f"resolved: {args.id}")
    return 0


def _scenario(name: str, extra: list[str]) -> dict[str, Any]:
    if "=" in name:
        return {"labels": _labels([name, *extra])}
    if name not in SCENARIOS:
        raise CliError(f"unknown scenario {name!r}; built in: {', '.join(SCENARIOS)} (or give label=value pairs)")
    s = SCENARIOS[name]
    return {"labels": {**s["labels"], **_labels(extra)}, "annotations": dict(s["annotations"])}


def _fire(api: ApiClient, args: argparse.Namespace) -> int:
    alert = _scenario(args.scenario, args.labels)
    alert["startsAt"] = _iso(time.time())
    _push(api, [alert])
    print("fired: " + ",".join(f"{k}={v}" for k, v in sorted(alert["labels"].items())))
    return 0


def _escalation_test(api: ApiClient, args: argparse.Namespace) -> int:
    if not 1 <= args.speed <= 3600:
        raise CliError("--speed: from 1 to 3600")
    policies = {p["name"]: p for p in api.call("GET", "/api/tocsin/escalation-policies") or []}
    policy = policies.get(args.policy)
    if policy is None:
        raise CliError(f"no escalation policy {args.policy!r}; configured: {', '.join(policies) or 'none'}")
    labels = {"alertname": "TocsinEscalationTest", _SPEED_LABEL: f"{args.speed:g}", "test_run": uuid.uuid4().hex[:8]}
    for text in policy["matchers"]:
        name, op, value = _equality(text)
        if op != "=":
            raise CliError(f"policy {args.policy!r}: matcher {text} is not name=\"value\"; fire a matching alert "
                           "yourself with `tocsin alerts fire`")
        labels[name] = value
    t0 = time.time()
    _push(api, [{"labels": labels, "annotations": {"summary": f"escalation test of {args.policy}"},
                 "startsAt": _iso(t0)}])
    steps = policy["steps"] * (policy["repeat"] + 1)
    print(f"policy {args.policy}: {len(steps)} step(s), delays divided by {args.speed:g}")
    fp = ""
    seen: set[str] = set()
    steps_seen: set[str] = set()
    deadline = t0 + steps[-1]["after"] / args.speed * (policy["repeat"] + 1) + 15
    levels = 0
    while time.time() < deadline and levels < len(steps):
        time.sleep(0.1)
        if not fp:
            fp = next((a["fingerprint"] for a in _alerts(api) if a["labels"].get("test_run") == labels["test_run"]),
                      "")
            continue
        for e in api.call("GET", "/api/tocsin/timeline", params={"fingerprint": fp}) or []:
            key = e.get("id", "")
            if e["event"] in ("notified", "escalated") and key not in seen:
                seen.add(key)
                if e["event"] == "escalated":
                    steps_seen.add(key.rsplit("/", 1)[1])  # ...esc<run>.<step>: one per step, whatever the kind
                levels = len(steps_seen)
                print(f"+{time.time() - t0:7.2f}s  level {e['level']}  {e['receiver']} ({e['integration']})")
    ok = levels >= len(steps)
    if not args.keep:
        _push(api, [{"labels": labels, "startsAt": _iso(t0), "endsAt": _iso(time.time())}])
    print("every level was notified" if ok else f"only {levels} of {len(steps)} levels were notified in time")
    return 0 if ok else 1


def _equality(text: str) -> tuple[str, str, str]:
    for op in ("!~", "=~", "!=", "="):
        name, sep, value = text.partition(op)
        if sep:
            return name.strip(), op, value.strip().strip('"')
    return text, "", ""


def _storm_test(api: ApiClient, args: argparse.Namespace) -> int:
    if args.alerts < 1 or args.rate <= 0:
        raise CliError("--alerts must be at least 1 and --rate positive")
    run_id = uuid.uuid4().hex[:8]
    names = ["HighLatency", "ErrorRate", "PodRestarting", "DiskFilling"]
    t0 = time.time()
    batch: list[dict[str, Any]] = []
    alerts = []
    for i in range(args.alerts):
        # every instance has one alert of each name; its HighLatency is critical (an inhibition source)
        labels = {"alertname": names[i % len(names)], "instance": f"node-{i // len(names)}", "storm": run_id,
                  "severity": "critical" if i % len(names) == 0 else "warning"}
        a = {"labels": labels, "startsAt": _iso(time.time())}
        alerts.append(a)
        batch.append(a)
        due = t0 + (i + 1) / args.rate
        if len(batch) >= 50 or time.time() >= due or i == args.alerts - 1:
            _push(api, batch)
            batch = []
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
    took = time.time() - t0
    time.sleep(1.0)
    active = [a for a in _alerts(api) if a["labels"].get("storm") == run_id]
    groups = [g for g in api.call("GET", "/api/v2/alerts/groups") or []
              if any(a["labels"].get("storm") == run_id for a in g.get("alerts", []))]
    suppressed = sum(1 for a in active if a.get("status", {}).get("state") == "suppressed")
    print(f"pushed {args.alerts} alerts in {took:.2f}s ({args.alerts / max(took, 1e-6):.0f}/s)")
    print(f"{len(active)} active, in {len(groups)} group(s): {len(groups)} notification(s) instead of "
          f"{len(active)}; {suppressed} suppressed (silenced or inhibited)")
    for g in groups:
        print(f"  {g.get('receiver', {}).get('name', '?'):<16} {json.dumps(g.get('labels', {}), sort_keys=True)}"
              f"  {len(g.get('alerts', []))} alert(s)")
    if not args.keep:
        now = _iso(time.time())
        for i in range(0, len(alerts), 200):
            _push(api, [{**a, "endsAt": now} for a in alerts[i:i + 200]])
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``tocsin alerts <command>``; the exit status."""
    api = ApiClient(args)
    commands = {
        "list": lambda: _list(api, args),
        "ack": lambda: _ack(api, args, remove=False),
        "unack": lambda: _ack(api, args, remove=True),
        "resolve": lambda: _resolve(api, args),
        "fire": lambda: _fire(api, args),
        "escalation-test": lambda: _escalation_test(api, args),
        "storm-test": lambda: _storm_test(api, args),
    }
    try:
        return int(commands[args.alerts_cmd]())
    except CliError as exc:
        print(f"tocsin alerts {args.alerts_cmd}: {exc}", file=sys.stderr)
        return 1
    finally:
        api.client.close()
