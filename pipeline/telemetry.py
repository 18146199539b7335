"""OpenTelemetry tracing: W3C trace context travels in NATS headers from row to notification.

Exporters: ``otlp`` (OTLP/HTTP, endpoint from the standard OTEL_EXPORTER_OTLP_* variables),
``console``, or ``none``. With ``none`` no span is recorded, but a stage still passes the
incoming ``traceparent`` on to its outputs, so a trace stays whole across a stage that
does not export.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["enabled", "new_traceparent", "setup_tracing", "step_span"]

_propagator = TraceContextTextMapPropagator()
_enabled = False


def setup_tracing(exporter: str | None = None, service_name: str = "tocsin", *,
                  span_exporter: Any = None) -> None:
    """Install the tracer provider once per process (exporter: otlp, console or none).

    ``span_exporter`` (an SDK SpanExporter) overrides the named one; tests pass an in-memory one.
    """
    global _enabled
    exporter = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "none").lower()
    if exporter == "none" and span_exporter is None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    if span_exporter is not None:
        pass
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"unknown trace exporter {exporter!r}: use otlp, console or none")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if isinstance(span_exporter, SpanExporter) and exporter == "test":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    _enabled = True


def enabled() -> bool:
    return _enabled


def new_traceparent() -> str:
    """A fresh W3C traceparent (sampled) for a trace that starts here, e.g. at a database row."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@contextmanager
def step_span(name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, str | int]
              ) -> Iterator[dict[str, str]]:
    """A CONSUMER span for one step, child of the input's trace; yields the headers for outputs."""
    parent = headers.get("traceparent") if headers else None
    if not _enabled:
        yield {"traceparent": parent} if parent else {}
        return
    ctx = _propagator.extract(carrier=dict(headers)) if parent and headers else None
    tracer = trace.get_tracer("tocsin")
    with tracer.start_as_current_span(name, context=ctx, kind=trace.SpanKind.CONSUMER,
                                      attributes=dict(attributes)):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield carrier
