"""The ``tocsin.notifier`` settings: durations, strictness, fallback checks (pure; no peers needed)."""

from __future__ import annotations

from typing import Any

import pytest

from stages.notifier.config import NotifierConfig, NotifierConfigError, check_fallbacks, load_notifier_config


@pytest.mark.parametrize(("section", "check"), [
    (None, lambda c: c == NotifierConfig()),
    ({}, lambda c: c == NotifierConfig()),
    ({"notifier": {"ack_wait": "2m", "timeout": 5}}, lambda c: (c.ack_wait, c.timeout) == (120.0, 5.0)),
    ({"notifier": {"retry": {"budget": "1h30m", "backoff_base": "250ms"}}},
     lambda c: (c.retry.budget, c.retry.backoff_base) == (5400.0, 0.25)),
    ({"notifier": {"breaker": {"failures": 2, "cooldown": "10s"}}},
     lambda c: (c.breaker.failures, c.breaker.cooldown) == (2, 10.0)),
    ({"notifier": {"rate_limits": {"pager": {"rate": 0.5, "burst": 3}}}},
     lambda c: (c.rate_limit_for("pager").rate, c.rate_limit_for("other").rate) == (0.5, 0.0)),
    ({"notifier": {"fallbacks": {"a": "b"}}}, lambda c: c.fallbacks == {"a": "b"}),
    ({"source": {"slot": "x"}}, lambda c: c == NotifierConfig()),  # other sections are not ours
], ids=["absent", "empty", "durations", "retry", "breaker", "rate-limits", "fallbacks", "other-section"])
def test_loads(section: Any, check: Any) -> None:
    assert check(load_notifier_config(section))


@pytest.mark.parametrize(("section", "message"), [
    ({"notifier": {"concurency": 3}}, "unknown field `concurency`"),
    ({"notifier": {"retry": {"budjet": 3}}}, "unknown field `budjet`"),
    ({"notifier": {"ack_wait": "2 minutes"}}, "notifier.ack_wait"),
    ({"notifier": {"ack_wait": 1}}, "at least 5s"),
    ({"notifier": {"concurrency": 0}}, "notifier.concurrency: must be greater than 0"),
    ({"notifier": {"retry": {"max_attempts": 0}}}, "notifier.retry.max_attempts"),
    ({"notifier": {"rate_limit": {"burst": 0}}}, "burst"),
    ({"notifier": {"fallbacks": {"a": "a"}}}, "its own fallback"),
    ({"notifier": []}, "expected a mapping"),
    ({"notifier": {"concurrency": "many"}}, "concurrency"),
], ids=["unknown-key", "unknown-nested-key", "bad-duration", "short-ack-wait", "zero-concurrency",
        "zero-attempts", "zero-burst", "self-fallback", "not-a-mapping", "wrong-type"])
def test_rejects(section: Any, message: str) -> None:
    with pytest.raises(NotifierConfigError) as exc:
        load_notifier_config(section)
    assert message in str(exc.value)


@pytest.mark.parametrize(("fallbacks", "problems"), [
    ({"a": "b"}, []),
    ({"a": "b", "b": "c"}, []),
    ({"a": "zz"}, ["notifier.fallbacks.a: unknown fallback receiver 'zz'"]),
    ({"zz": "a"}, ["notifier.fallbacks: unknown receiver 'zz'"]),
    ({"a": "b", "b": "a"}, ["notifier.fallbacks: cycle a -> b -> a", "notifier.fallbacks: cycle b -> a -> b"]),
], ids=["ok", "chain", "unknown-target", "unknown-source", "cycle"])
def test_check_fallbacks(fallbacks: dict[str, str], problems: list[str]) -> None:
    cfg = NotifierConfig(fallbacks=fallbacks)
    assert check_fallbacks(cfg, ["a", "b", "c"]) == problems
