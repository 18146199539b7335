"""One alert yields one trace, from the API push (or the database row) to the webhook request, in both deployments.

The in-memory exporter is installed before the pipeline starts (``run_process`` keeps it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.application.app import Endpoints, Settings
from pipeline.application.graph import CHAINED, DEPLOYMENTS
from pipeline.application.settings import load_text
from pipeline.foundation import telemetry
from pipeline.foundation.embedded import NatsServer, PostgresServer
from pipeline.foundation.logs import LogfmtFormatter, TraceIdFilter
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-token-in-the-url"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    telemetry.setup_tracing("test", span_exporter=exp)
    try:
        yield exp
    finally:
        telemetry._enabled = False


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def _settings(receiver: Receiver, nats_url: str, tmp_path: Path, deployment: str, dsn: str | None = None) -> Settings:
    config = f"""
route: {{receiver: hook, group_by: [alertname], group_wait: 200ms, group_interval: 1h, repeat_interval: 1h}}
receivers: [{{name: hook, webhook_configs: [{{url: "{receiver.url}/hook?token={SECRET}"}}]}}]
tocsin: {{default_org: acme}}
"""
    return Settings(storage_path=tmp_path / "data", nats_url=nats_url, postgres_dsn=dsn, listen="127.0.0.1:0",
                    loaded=load_text(config), partitions=2, deployment=deployment)


@pytest.fixture(params=DEPLOYMENTS)
async def pipeline(request: pytest.FixtureRequest, exporter: InMemorySpanExporter, nats_server: NatsServer,
                   receiver: Receiver, tmp_path: Path) -> AsyncIterator[tuple[str, Endpoints]]:
    settings = _settings(receiver, nats_server.url, tmp_path, request.param)
    async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep:
        yield request.param, ep


def _hex(i: int, n: int) -> str:
    return f"{i:0{n}x}"


async def test_one_event_one_trace(pipeline: tuple[str, Endpoints], receiver: Receiver,
                                   exporter: InMemorySpanExporter) -> None:
    deployment, ep = pipeline
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(LogfmtFormatter())
    lines: list[str] = []
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("tocsin")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # "Notify success" is a debug line, as in Alertmanager
    try:
        async with httpx.AsyncClient() as http:
            r = await http.post(ep.api_url + "/api/v2/alerts", json=[{"labels": {"alertname": "Traced"}}])
            assert r.status_code == 200
        (hook,) = await receiver.wait_for(1)
        assert hook.body["commonLabels"]["alertname"] == "Traced"
        await _sent(exporter)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    _check_tree(exporter, "POST /api/v2/alerts", deployment)
    # the notifier's line for the notification carries the trace id
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "POST /api/v2/alerts"]
    sent = [ln for ln in lines if 'msg="Notify success"' in ln]
    assert sent and f"trace_id={_hex(root.context.trace_id, 32)}" in sent[0], lines
    assert "receiver=hook" in sent[0] and "status=sent" in sent[0] and "send_id=" in sent[0]


async def test_database_row_to_notification_is_one_trace(exporter: InMemorySpanExporter, nats_server: NatsServer,
                                                         postgres_server: PostgresServer, receiver: Receiver,
                                                         tmp_path: Path) -> None:
    from stages.source.emit import emit
    from stages.source.mapping import parse_emit_args

    settings = _settings(receiver, nats_server.url, tmp_path, CHAINED, postgres_server.dsn)
    async with running(settings, ["source", "rules", "router", "filter", "notifier", "api"]):
        await emit(postgres_server.dsn, parse_emit_args(["DeviceDisconnected", "--org", "acme", "--resource",
                                                         "Device/gw-7"]))
        await receiver.wait_for(1)
        await _sent(exporter)
    root = _check_tree(exporter, "source transaction", CHAINED)
    assert root.attributes is not None and root.attributes["db.system"] == "postgresql"


async def _sent(exporter: InMemorySpanExporter) -> None:
    with anyio.fail_after(10):  # the send span ends after the ack
        while not any(s.name == "notifier send" and s.attributes and "tocsin.send_id" in s.attributes
                      for s in exporter.get_finished_spans()):
            await anyio.sleep(0.05)


def _check_tree(exporter: InMemorySpanExporter, root_name: str, deployment: str) -> Any:
    spans = list(exporter.get_finished_spans())
    (root,) = [s for s in spans if s.name == root_name]
    trace_id = root.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in ours}
    # a tree: every span but the push has its parent in the trace
    for s in ours:
        if s is not root:
            assert s.parent is not None and s.parent.span_id in by_id, s.name

    def path(s: Any) -> list[str]:
        out = [s.name]
        while s.parent is not None:
            s = by_id[s.parent.span_id]
            out.append(s.name)
        return out[::-1]

    names = {s.name for s in ours}
    (post,) = [s for s in ours if s.name == "POST webhook"]
    if deployment == "chained":
        assert {"chain step", "chain timer", "rules", "router", "filter", "chain commit"} <= names, names
        assert path(post) == [root_name, "chain step", "chain timer", "notifier send", "POST webhook"]
        (rules,) = [s for s in ours if s.name == "rules"]
        assert rules.parent is not None and by_id[rules.parent.span_id].name == "chain step"
    else:
        assert {"rules step", "router step", "router timer", "filter step", "rules commit"} <= names, names
        assert path(post) == [root_name, "rules step", "router step", "router timer", "filter step",
                              "notifier send", "POST webhook"]
    assert post.attributes is not None and post.attributes["http.request.method"] == "POST"
    assert post.attributes["tocsin.attempt"] == 1 and not post.status.status_code.name == "ERROR"
    send = by_id[post.parent.span_id]  # type: ignore[union-attr]
    assert send.attributes is not None
    assert send.attributes["tocsin.org"] == "acme" and send.attributes["tocsin.receiver"] == "hook"
    assert send.attributes["tocsin.group_key"] and send.attributes["tocsin.send_id"]
    assert send.attributes["messaging.system"] == "nats"
    # no secret (the webhook URL's token) in any span
    assert not [s.name for s in spans if SECRET in repr(dict(s.attributes or {})) + repr(s.events)]
    return root
