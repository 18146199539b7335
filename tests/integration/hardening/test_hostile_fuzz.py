"""Hypothesis throws hostile push, silence, ack and query bodies and hostile event rows at a
whole running pipeline. Whatever it sends, no answer is a 500, the process stays healthy and
ready, and a canary organisation's alert is still notified within 2 s afterwards.

The examples run in a worker thread (blocking HTTP and Postgres clients) while the pipeline
runs on the test's event loop, so a request that froze the loop would show as a timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.application.app import Endpoints, Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer, PostgresServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

EXAMPLES = 60  # per body kind: enough to reach the corners below, small enough for CI
CANARY_WITHIN = 2.0


def config(url: str) -> str:
    return f"""
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
tocsin:
  default_org: acme
"""


# ---------------------------------------------------------------- strategies

class _Big(str):
    """A huge text that prints short in hypothesis' falsifying examples."""

    def __repr__(self) -> str:
        return f"<{len(self)} chars: {str.__repr__(self[:20])}...>"


_chars = st.characters(blacklist_categories=("Cs",))  # JSON cannot carry lone surrogates
_text = st.one_of(
    st.text(_chars, max_size=40),
    st.sampled_from(["*", "a|b", "\x01ctl", "", " ", _Big("o" * 5000), _Big("x" * 70_000), "(.*.*)*x", "[", "\\",
                     "{{ .x }}"]),
)
_small_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4), max_leaves=12)
_labels = st.dictionaries(_text, _text, max_size=6)
_time = st.one_of(st.none(), st.sampled_from(["", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "not a time",
                                               "2026-12-07T00:00:00+14:00", "1e300"]), _text)


def _deep(depth: int) -> str:
    return _Big("[" * depth + "]" * depth)


_alert = st.fixed_dictionaries({"labels": _labels}, optional={
    "annotations": _labels, "startsAt": _time, "endsAt": _time, "generatorURL": _text, "extra": _small_json})
_push = st.one_of(st.lists(_alert, max_size=5), _small_json, st.just(_deep(100_000)))
_matcher = st.fixed_dictionaries({"name": _text, "value": _text, "isRegex": st.booleans()},
                                 optional={"isEqual": st.booleans()})
_silence = st.one_of(
    st.fixed_dictionaries({"matchers": st.lists(_matcher, max_size=5), "startsAt": _time, "endsAt": _time,
                           "createdBy": _text, "comment": _text}, optional={"id": _text}),
    _small_json)
_ack = st.one_of(st.fixed_dictionaries({}, optional={"fingerprint": _text, "groupKey": _text, "by": _text,
                                                     "comment": _text, "duration": _text}), _small_json)
_query = st.lists(st.tuples(st.sampled_from(["filter", "receiver", "silenced", "active", "limit", "since",
                                             "fingerprint", "groupKey"]),
                                   _text.filter(lambda s: len(s) < 10_000)), max_size=4)  # httpx: URLs < 64 KiB
# Postgres text and jsonb hold no NUL (it refuses \u0000 at any depth of a jsonb value)
_pg_text = _text.filter(lambda s: "\x00" not in s)
_pg_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _pg_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_pg_text, inner, max_size=4), max_leaves=12)
_row = st.fixed_dictionaries({
    "org_id": _pg_text,
    "resource_kind": _pg_text,
    "resource_name": _pg_text,
    "reason": st.one_of(st.sampled_from(["DeviceDisconnected", "DeviceConnected", "HighCPU"]), _pg_text),
    "fields": st.one_of(st.dictionaries(_pg_text, _pg_json, max_size=4)
                        .map(json.dumps),  # JSON text: a 5,000-deep array is no Python object
                        st.just(_Big('{"a": ' + _deep(5000) + "}")),
                        st.just(_Big(json.dumps({"big": "x" * (9 << 20)})))),
})


def _body(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture
async def pipeline(nats_server: NatsServer, postgres_server: PostgresServer, receiver: Receiver,
                   tmp_path: Path) -> AsyncIterator[Endpoints]:
    settings_ = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url,
                         postgres_dsn=postgres_server.dsn, listen="127.0.0.1:0",
                         loaded=load_text(config(receiver.url)), partitions=4)
    async with running(settings_, ["source", "rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


def _assert_healthy(api: httpx.Client) -> None:
    assert api.get("/-/healthy").status_code == 200
    assert api.get("/-/ready").status_code == 200


async def _canary(api_url: str, receiver: Receiver, name: str) -> None:
    """A canary organisation's pushed alert reaches the webhook within 2 s."""
    before = len(receiver.received)
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        t0 = time.time()
        r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": name, "org_id": "canary"}}],
                           headers={"X-Scope-OrgID": "canary"})
        assert r.status_code == 200, r.text
    with anyio.fail_after(10):
        while not any(x.body["groupLabels"].get("alertname") == name for x in receiver.received[before:]):
            await receiver.wait_for(len(receiver.received) + 1)
    hit = next(x for x in receiver.received[before:] if x.body["groupLabels"].get("alertname") == name)
    assert hit.at - t0 <= CANARY_WITHIN, f"canary {name} took {hit.at - t0:.2f}s"


def _run_examples(api_url: str, check: Callable[[httpx.Client], None]) -> None:
    with httpx.Client(base_url=api_url, timeout=20) as api:
        check(api)
        _assert_healthy(api)


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- tests


async def test_hostile_api_bodies_never_500_and_the_canary_flows(pipeline: Endpoints, receiver: Receiver) -> None:
    await _canary(pipeline.api_url, receiver, "CanaryBefore")

    def check(api: httpx.Client) -> None:
        @_SETTINGS
        @given(kind=st.sampled_from(["push", "silence", "ack", "query"]), data=st.data())
        def one(kind: str, data: st.DataObject) -> None:
            if kind == "query":
                r = api.get("/api/v2/alerts", params=data.draw(_query))
                r2 = api.get("/api/tocsin/history", params=data.draw(_query))
                assert r2.status_code < 500, (r2.status_code, r2.text[:300])
            else:
                path, strategy = {"push": ("/api/v2/alerts", _push), "silence": ("/api/v2/silences", _silence),
                                  "ack": ("/api/tocsin/acks", _ack)}[kind]
                headers = {"Content-Type": "application/json"}
                if data.draw(st.booleans()):
                    # what an HTTP client can send at all; a header block over the server's limit
                    # (h11: 16 KiB) is refused by closing the connection, often before the client
                    # reads the answer (a reset, not a status to check)
                    headers["X-Scope-OrgID"] = data.draw(_text.filter(
                        lambda s: s.isprintable() and s.isascii() and s == s.strip() and len(s) < 8192))
                r = api.post(path, content=_body(data.draw(strategy)), headers=headers)
            assert r.status_code < 500, (kind, r.status_code, r.text[:300])
            if r.status_code >= 400:  # Alertmanager's error shape: a JSON string or {"code", "message"}
                assert r.headers.get("content-type", "").startswith(("application/json", "text/plain")), r.headers
            _assert_healthy(api)  # after every example: the one that broke it is the one reported

        one()

    await anyio.to_thread.run_sync(_run_examples, pipeline.api_url, check)
    await _canary(pipeline.api_url, receiver, "CanaryAfter")


async def test_hostile_event_rows_never_stop_the_source(pipeline: Endpoints, receiver: Receiver,
                                                        postgres_server: PostgresServer) -> None:
    from stages.source.emit import migrate

    await migrate(postgres_server.dsn)

    def check(api: httpx.Client) -> None:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            @settings(max_examples=EXAMPLES // 2, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(row=_row)
            def one(row: dict[str, Any]) -> None:
                conn.execute("INSERT INTO events (org_id, resource_kind, resource_name, reason, fields) "
                             "VALUES (%s, %s, %s, %s, %s::jsonb)",
                             (row["org_id"], row["resource_kind"], row["resource_name"], row["reason"],
                              row["fields"]))

            one()

    await anyio.to_thread.run_sync(_run_examples, pipeline.api_url, check)
    # The source went through every hostile row: a canary row committed after them arrives.
    before = len(receiver.received)
    from stages.source.emit import emit
    from stages.source.mapping import parse_emit_args

    t0 = time.time()
    await emit(postgres_server.dsn, parse_emit_args(["DeviceDisconnected", "--org", "canary", "--resource",
                                                     "device/canary-1"]))
    with anyio.fail_after(30):
        while not any(a["labels"].get("resource") == "canary-1"
                      for x in receiver.received[before:] for a in x.body["alerts"]):
            await receiver.wait_for(len(receiver.received) + 1)
    took = time.time() - t0
    assert took <= 30, took
    await _canary(pipeline.api_url, receiver, "CanaryAfterRows")
