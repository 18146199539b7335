"""The pure parts of the API's hardening (issue #27): liveness from the NATS connection, JSON
depth, attempts parameters, the denial audit budget, the failed-authentication limiter and
the re-marshalled configuration of /api/v2/status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.application.api.attempts import MAX_ATTEMPTS_LIMIT, attempts_query
from pipeline.application.api.audit import AuditRecord, Denial, DenialAuditor, denial_record
from pipeline.application.api.auth.middleware import FailureLimiter
from pipeline.application.api.json_depth import MAX_JSON_DEPTH, json_depth, too_deep
from pipeline.application.api.status_config import format_go_duration, marshal_config
from pipeline.application.config.identity import Identity
from pipeline.application.http import ConnectionWatch, connection_problem
from pipeline.foundation.amconfig import load_config, load_config_text
from pipeline.foundation.amconfig.values import Raw, Secret

FULL = Path(__file__).parents[2] / "fixtures" / "alertmanager" / "full.yml"


# --------------------------------------------------------------------------- liveness


@pytest.mark.parametrize(("state", "down_since", "now", "alive"), [
    ("connected", None, 100.0, True),
    ("connected", 10.0, 100.0, True),  # back: the old loss no longer counts
    ("reconnecting", 90.0, 100.0, True),  # within the 30 s grace: nats-py is on it
    ("reconnecting", 69.0, 100.0, False),
    ("closed", 99.9, 100.0, False),  # nats-py gave up: only a restart helps
    ("closed", None, 100.0, False),
])
def test_connection_problem(state: str, down_since: float | None, now: float, alive: bool) -> None:
    problem = connection_problem(state, down_since, now, grace=30.0)
    assert (problem is None) == alive
    if problem:
        assert "NATS" in problem and "restart" in problem


class _Conn:
    def __init__(self) -> None:
        self.is_connected, self.is_closed = True, False


def test_watch_measures_the_grace_from_the_first_sample_that_saw_the_loss() -> None:
    conn, now = _Conn(), [0.0]
    watch = ConnectionWatch(conn, grace=5.0, clock=lambda: now[0])
    assert watch.problem() is None
    conn.is_connected = False
    now[0] = 10.0
    assert watch.problem() is None and watch.down_since == 10.0
    now[0] = 15.5
    assert watch.problem() is not None and not watch.connected
    conn.is_connected = True
    assert watch.problem() is None and watch.down_since is None
    conn.is_connected, conn.is_closed = False, True
    assert "closed" in (watch.problem() or "")


# --------------------------------------------------------------------------- JSON depth


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


_TRICKY = st.text(alphabet='[]{}"\\ab\n', max_size=8)
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | _TRICKY,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
                     max_leaves=30)


@given(_JSON)
def test_json_depth_is_the_nesting_of_arrays_and_objects(value: Any) -> None:
    body = msgspec.json.encode(value)
    assert json_depth(body) == _depth(value)
    assert json_depth(json.dumps(value, indent=1).encode()) == _depth(value)


def test_too_deep_draws_the_line_at_the_limit() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert not too_deep(at_limit)
    assert too_deep(b"[" + at_limit + b"]")
    assert too_deep(b"[" * 100_000)  # not even valid JSON: still refused, fast
    assert not too_deep(b'["' + b"[" * 10_000 + b'"]')  # brackets in a string do not nest
    assert not too_deep(b'[["\\\\"], "\\"[[[[", ' + b"[1]," * 1000 + b"0]")  # many, but shallow


# --------------------------------------------------------------------------- attempts parameters


@pytest.mark.parametrize(("params", "names"), [
    ({"groupKey": "g", "limit": "-1"}, "limit"),
    ({"groupKey": "g", "limit": str(MAX_ATTEMPTS_LIMIT + 1)}, "limit"),
    ({"groupKey": "g", "limit": "²"}, "limit"),  # a digit to str.isdigit, not to int()
    ({"groupKey": "g", "since": "1e300"}, "since"),
    ({"groupKey": "g", "since": "nan"}, "since"),
    ({"groupKey": "g", "since": "-inf"}, "since"),
    ({"groupKey": "g", "since": "soon"}, "since"),
    ({"fingerprint": "0123"}, "fingerprint"),
    ({"groupKey": "x" * 2000}, "groupKey"),
    ({}, "groupKey"),
])
def test_attempts_query_names_the_wrong_parameter(params: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        attempts_query(params)


def test_attempts_query_accepts_sane_values() -> None:
    assert attempts_query({"groupKey": "{}:{a=\"b\"}"}) == ('{}:{a="b"}', None, None, 100)
    assert attempts_query({"fingerprint": "0123456789abcdef", "since": "1700000000.5", "limit": "5"}) == (
        None, "0123456789abcdef", 1700000000.5, 5)


# --------------------------------------------------------------------------- denials


def _denial(client: str = "10.0.0.1", identity: Identity | None = None) -> Denial:
    return Denial(status=401, reason="invalid token", path="/api/v2/alerts", http_method="GET", client=client,
                  org="acme", request_id="r", identity=identity)


def test_denial_record_says_who_what_and_from_where() -> None:
    rec = denial_record(_denial(), now=5.0, suppressed=3)
    assert (rec.subject, rec.method, rec.role, rec.org, rec.action, rec.outcome) == (
        "", "none", "", "acme", "request.denied", "denied")
    assert rec.details == {"status": "401", "reason": "invalid token", "path": "/api/v2/alerts",
                           "http_method": "GET", "client": "10.0.0.1", "suppressed": "3"}
    viv = Identity("viv", frozenset({"acme"}), "viewer", method="static")
    rec = denial_record(_denial(identity=viv), now=5.0)
    assert (rec.subject, rec.method, rec.role) == ("viv", "static", "viewer") and "suppressed" not in rec.details


def test_denial_budget_per_address_and_overall_and_suppressed_counts() -> None:
    async def write(_: AuditRecord) -> None:
        raise AssertionError("admit only")

    auditor = DenialAuditor(write, rate=1.0, burst=2, total_rate=10.0, total_burst=3)
    assert [auditor.admit("a", 0.0) for _ in range(5)] == [0, 0, None, None, None]
    assert auditor.admit("b", 0.0) == 0  # another address has its own budget
    assert auditor.admit("c", 0.0) is None  # ...but the overall budget (3) is spent
    assert auditor.admit("a", 1.0) == 3  # a second later: written, carrying the three it skipped
    assert auditor.admit("c", 1.0) == 1


async def test_a_failing_audit_write_never_fails_the_request() -> None:
    written: list[AuditRecord] = []

    async def broken(rec: AuditRecord) -> None:
        written.append(rec)
        raise ConnectionError("nats down")

    await DenialAuditor(broken).record(_denial(), 1.0)
    assert len(written) == 1


def test_failed_authentications_spend_the_address_budget_only() -> None:
    limiter = FailureLimiter(rate=2.0, burst=3)
    for _ in range(3):
        assert limiter.wait("a", 0.0) == 0
        limiter.failed("a", 0.0)
    assert limiter.wait("a", 0.0) == pytest.approx(0.5)
    assert limiter.wait("a", 0.0) == pytest.approx(0.5)  # asking spends nothing
    assert limiter.wait("b", 0.0) == 0
    assert limiter.wait("a", 0.5) == 0


# --------------------------------------------------------------------------- status


def _secrets(value: Any) -> list[str]:
    if isinstance(value, Secret):
        return [value.value] if value.value else []
    if isinstance(value, Raw):
        return []
    if isinstance(value, msgspec.Struct):
        return [s for f in msgspec.structs.fields(value) for s in _secrets(getattr(value, f.name))
                if f.name not in ("original", "redacted")]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets(v)]
    return []


def test_marshalled_configuration_hides_secrets_drops_comments_and_loads_back() -> None:
    config = load_config(FULL)
    out = marshal_config(config)
    secrets = _secrets(config)
    assert secrets and not [s for s in secrets if s in out]
    assert "<secret>" in out
    assert not [line for line in out.splitlines() if line.lstrip().startswith("#")]
    again = load_config_text(out, "marshalled.yml", base_dir=str(FULL.parent))
    assert [r.name for r in again.receivers] == [r.name for r in config.receivers]
    assert again.route == config.route
    assert marshal_config(again) == out  # a fixed point


def test_marshalled_configuration_of_a_commented_out_url() -> None:
    text = """
route: {receiver: a}
receivers:
  - name: a
    webhook_configs:
      # - url: http://old.example/token-abc
      - url: http://new.example/token-def
    opsgenie_configs: [{api_key: key-ghi, message: hello}]
"""
    out = marshal_config(load_config_text(text, "am.yml"))
    assert "old.example" not in out and "token" not in out and "key-ghi" not in out
    doc = yaml.safe_load(out)
    [og] = doc["receivers"][0]["opsgenie_configs"]  # defaults filled in, as Alertmanager shows them
    assert og["api_key"] == "<secret>" and og["message"] == "hello" and og["api_url"] == "https://api.opsgenie.com/"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (0.5, "500ms"), (10, "10s"), (90, "1m30s"),
                                               (3600, "1h0m0s"), (3661.5, "1h1m1.5s")])
def test_go_durations(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
