"""Filter configuration (Alertmanager config compilation, Tocsin options) and the API views."""

from __future__ import annotations

from typing import Any

import pytest
from filter_fold import CONFIG_YAML, Fold, alert, change, config, core, flush, matcher, silence, upsert

from pipeline.foundation.amconfig import load_config_text
from stages.filter.config import (
    DEFAULT_NFLOG_RETENTION,
    DEFAULT_SILENCE_RETENTION,
    FilterOptions,
    compile_inhibit_rule,
    filter_config,
    filter_options,
)
from stages.filter.views import alert_statuses

OPTIONS = [
    ("defaults", None, FilterOptions()),
    ("durations-as-text", {"silence_retention": "1d", "nflog_retention": "2h"},
     FilterOptions(silence_retention=86400.0, nflog_retention=7200.0)),
    ("durations-as-seconds", {"silence_retention": 60}, FilterOptions(silence_retention=60.0)),
    ("flags", {"notify_acked_resolved": False, "notify_silenced_resolved": True},
     FilterOptions(notify_acked_resolved=False, notify_silenced_resolved=True)),
]


@pytest.mark.parametrize(("raw", "expected"), [(r, e) for _, r, e in OPTIONS], ids=[o[0] for o in OPTIONS])
def test_filter_options(raw: dict[str, Any] | None, expected: FilterOptions) -> None:
    assert filter_options(raw) == expected


def test_option_defaults_match_alertmanager() -> None:
    assert (DEFAULT_SILENCE_RETENTION, DEFAULT_NFLOG_RETENTION) == (120 * 3600.0, 120 * 3600.0)
    opts = FilterOptions()
    assert opts.notify_acked_resolved and not opts.notify_silenced_resolved


BAD_OPTIONS = [
    ("unknown-key", {"silence_retention": "1d", "retention": "2d"}, "unknown option 'retention'"),
    ("bad-duration", {"nflog_retention": "5x"}, "filter.nflog_retention"),
    ("zero-duration", {"nflog_retention": "0"}, "must be positive"),
    ("flag-not-bool", {"notify_acked_resolved": "yes"}, "expected true or false"),
    ("bool-as-duration", {"silence_retention": True}, "expected a duration"),
    ("not-a-mapping", ["silence_retention"], "must be a mapping"),
]


@pytest.mark.parametrize(("raw", "message"), [(r, m) for _, r, m in BAD_OPTIONS], ids=[o[0] for o in BAD_OPTIONS])
def test_bad_filter_options(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        filter_options(raw)


def test_receivers_integrations_in_alertmanager_order_with_send_resolved() -> None:
    cfg = config()
    assert [(i.kind, i.index, i.send_resolved) for i in cfg.receivers["multi"]] == [
        ("webhook", 0, True), ("webhook", 1, False), ("email", 0, False), ("pagerduty", 0, True), ("slack", 0, True)]
    assert cfg.receivers["nobody"] == ()


def test_inhibit_rules_compile_legacy_and_new_forms_with_stable_ids() -> None:
    am = load_config_text(CONFIG_YAML)
    rules = [compile_inhibit_rule(r) for r in am.inhibit_rules]
    legacy = rules[1]
    assert legacy.source_matches({"alertname": "NodeDown"}) and not legacy.source_matches({"alertname": "Node"})
    assert legacy.target_matches({"alertname": "AppDown"}) and not legacy.target_matches({"alertname": "xApp"})
    assert [r.id for r in rules] == [r.id for r in filter_config(am).inhibit_rules]
    assert len({r.id for r in rules}) == len(rules)
    # Equal values hash the same whether a label is missing or empty, and differ otherwise.
    assert rules[0].equal_hash({}) == rules[0].equal_hash({"cluster": ""}) != rules[0].equal_hash({"cluster": "a"})


CRIT = {"alertname": "DiskFull", "severity": "critical", "cluster": "a"}
WARN = {"alertname": "DiskLow", "severity": "warning", "cluster": "a"}
OTHER = {"alertname": "Other", "env": "dev"}
PROD = {"alertname": "Other", "env": "prod"}


def test_alert_statuses() -> None:
    f = Fold(core())
    f.step(change("fired", alert(CRIT), 1.0))
    far = 2e9  # the fold advances to the flush below: silences must outlive it
    f.step(upsert(silence("s1", [matcher("env", "prod")], 1.0, far), 1.0))
    f.step(upsert(silence("s0", [matcher("env", "pro.*", regex=True)], 1.0, far), 1.0))
    f.step(upsert(silence("s9", [matcher("env", "prod")], 500.0, far), 1.0))  # pending at 10
    saturday = 1704542400.0
    f.step(flush([alert(OTHER)], saturday, group_key="{}:{weekend}", mute=["weekends"]))
    alerts = [alert(CRIT), alert(WARN), alert(OTHER), alert(PROD)]
    statuses = alert_statuses(f.state, f.core.config, "o1", alerts, 10.0,
                              group_keys={alert(OTHER).fingerprint: ["{}:{weekend}", "{}:{unknown}"]})
    got = [(s.state, s.silenced_by, s.inhibited_by, s.muted_by) for s in statuses]
    assert got == [
        ("active", [], [], []),
        ("suppressed", [], [alert(CRIT).fingerprint], []),
        ("suppressed", [], [], ["weekends"]),
        ("suppressed", ["s0", "s1"], [], []),
    ]
    assert [s.fingerprint for s in statuses] == [a.fingerprint for a in alerts]
    # Another organisation sees none of it.
    assert {s.state for s in alert_statuses(f.state, f.core.config, "o2", alerts, 10.0)} == {"active"}
