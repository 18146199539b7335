"""The spans where an event enters (a source row, an API push), and what they never carry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.foundation import telemetry
from stages.source.tracing import trace_context_factory

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    telemetry.setup_tracing("test", span_exporter=exp)
    try:
        yield exp
    finally:
        telemetry._enabled = False


def test_source_transaction_span_starts_the_trace(exporter: InMemorySpanExporter) -> None:
    headers = trace_context_factory()("ev-1", 1_700_000_000.5)
    (span,) = exporter.get_finished_spans()
    assert span.name == "source transaction" and span.parent is None
    assert span.start_time == 1_700_000_000_500_000_000  # the row's commit time
    assert span.attributes is not None and span.attributes["db.system"] == "postgresql"
    assert span.attributes["tocsin.event.id"] == "ev-1"
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert trace_id == f"{span.context.trace_id:032x}" and span_id == f"{span.context.span_id:016x}"


def test_push_span_continues_the_callers_trace(exporter: InMemorySpanExporter) -> None:
    tp = telemetry.producer_span("POST /api/v2/alerts", PARENT, {"http.request.method": "POST"})
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
    assert tp is not None and tp.split("-")[2] == f"{span.context.span_id:016x}"


def test_off_passes_the_context_on() -> None:
    telemetry._enabled = False
    assert telemetry.producer_span("x", PARENT, {}) == PARENT
    assert telemetry.payload_attributes(object()) == {}


@dataclass
class _Send:
    id: str
    org: str
    group_key: str
    labels: dict[str, str]


def test_payload_attributes_name_ids_not_labels(exporter: InMemorySpanExporter) -> None:
    req = _Send("s-1", "acme", '{}:{alertname="X"}', {"password": "hunter2"})
    assert telemetry.payload_attributes(req) == {"tocsin.org": "acme", "tocsin.group_key": '{}:{alertname="X"}',
                                                 "tocsin.send_id": "s-1"}
