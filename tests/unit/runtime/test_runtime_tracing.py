"""Trace context: a step's span is a child of the input's traceparent; outputs carry the new one."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.foundation import telemetry

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_passthrough_when_tracing_is_off() -> None:
    telemetry._enabled = False
    with telemetry.step_span("x", {"traceparent": PARENT}, {}) as headers:
        assert headers == {"traceparent": PARENT}
    with telemetry.step_span("x", None, {}) as headers:
        assert headers == {}


def test_step_span_links_to_the_input_trace() -> None:
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("test", span_exporter=exporter)
    try:
        with telemetry.step_span("rules step", {"traceparent": PARENT}, {"tocsin.partition": 3}) as headers:
            pass
        (span,) = exporter.get_finished_spans()
        assert span.name == "rules step"
        assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
        trace_id, span_id = headers["traceparent"].split("-")[1:3]
        assert trace_id == "0af7651916cd43dd8448eb211c80319c" and span_id == f"{span.context.span_id:016x}"
        assert span.attributes is not None and span.attributes["tocsin.partition"] == 3
    finally:
        telemetry._enabled = False


def test_new_traceparent_is_well_formed() -> None:
    parts = telemetry.new_traceparent().split("-")
    assert [len(p) for p in parts] == [2, 32, 16, 2] and parts[0] == "00" and parts[3] == "01"
