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

__all__ = ["annotate", "child_span", "commit_span", "current_trace_id", "enabled", "new_traceparent", "producer_span",
           "payload_attributes", "setup_tracing", "step_span", "tracer"]

_propagator = TraceContextTextMapPropagator()
_enabled = False
_tracer: Any = None  # of the provider setup_tracing installed (not the global one: that is set once per process)


def setup_tracing(exporter: str | None = None, service_name: str = "tocsin", *,
                  span_exporter: Any = None) -> None:
    """Install the tracer provider once per process (exporter: otlp, console or none).

    ``span_exporter`` (an SDK SpanExporter) overrides the named one; tests pass an in-memory one.
    """
    global _enabled, _tracer
    if _enabled and span_exporter is None:
        return  # already set up (by a test's in-memory exporter, or a parent in the same process)
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
        raise ValueError(f"unknown trace exporter {exporter!r} (OTEL_TRACES_EXPORTER): use otlp, console or none")
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which win over the default name.
    provider = TracerProvider(resource=Resource({"service.name": service_name}).merge(Resource.create()))
    if isinstance(span_exporter, SpanExporter) and exporter == "test":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)  # (for libraries' own spans; ours use _tracer)
    _tracer = provider.get_tracer("tocsin")
    _enabled = True


def tracer() -> Any:
    """Tocsin's tracer, or None when tracing is off."""
    return _tracer if _enabled else None


def current_trace_id() -> str:
    """The trace id of the current span (32 hex digits), or "" outside one."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


def enabled() -> bool:
    return _enabled


def new_traceparent() -> str:
    """A fresh W3C traceparent (sampled) for a trace that starts here, e.g. at a database row."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@contextmanager
def step_span(name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, Any]
              ) -> Iterator[dict[str, str]]:
    """A CONSUMER span for one step, child of the input's trace; yields the headers for outputs."""
    parent = headers.get("traceparent") if headers else None
    if not _enabled:
        yield {"traceparent": parent} if parent else {}
        return
    ctx = _propagator.extract(carrier=dict(headers)) if parent and headers else None
    attrs: dict[str, Any] = {"messaging.system": "nats", "messaging.operation.type": "process", **attributes}
    with _tracer.start_as_current_span(name, context=ctx, kind=trace.SpanKind.CONSUMER, attributes=attrs):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield carrier


@contextmanager
def child_span(name: str, attributes: Mapping[str, Any] | None = None,
               kind: trace.SpanKind = trace.SpanKind.INTERNAL) -> Iterator[Any]:
    """A span under the current one (a chain's core, a send, its HTTP request); None when off."""
    if not _enabled:
        yield None
        return
    with _tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {})) as span:
        yield span


def producer_span(name: str, traceparent: str | None, attributes: Mapping[str, Any],
                  start_time: float | None = None) -> str | None:
    """A PRODUCER span where an event enters (a source row, an API push), ended at once: the
    traceparent its messages carry (the incoming one, or None, when tracing is off)."""
    if not _enabled:
        return traceparent
    ctx = _propagator.extract(carrier={"traceparent": traceparent}) if traceparent else None
    span = _tracer.start_span(name, context=ctx, kind=trace.SpanKind.PRODUCER, attributes=dict(attributes),
                              start_time=int(start_time * 1e9) if start_time is not None else None)
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    return carrier.get("traceparent") or traceparent


@contextmanager
def commit_span(name: str, traceparents: list[str], attributes: Mapping[str, Any]) -> Iterator[None]:
    """The span of a commit: in the trace of its first step, linked to the others it carries."""
    if not _enabled or not traceparents:
        yield
        return
    ctx = _propagator.extract(carrier={"traceparent": traceparents[0]})
    links = [trace.Link(trace.get_current_span(_propagator.extract(carrier={"traceparent": tp})).get_span_context())
             for tp in dict.fromkeys(traceparents[1:])]
    with _tracer.start_as_current_span(name, context=ctx, kind=trace.SpanKind.PRODUCER,
                                       attributes=dict(attributes), links=links):
        yield


def payload_attributes(payload: Any) -> dict[str, str]:
    """The organisation, fingerprint, group key and send id a message names (only when tracing: it
    costs a few lookups). Labels and annotations are never copied: they may hold secrets."""
    if not _enabled:
        return {}
    out: dict[str, str] = {}
    for attr, name in (("org", "tocsin.org"), ("fingerprint", "tocsin.fingerprint"),
                       ("group_key", "tocsin.group_key"), ("id", "tocsin.send_id")):
        value = getattr(payload, attr, None)
        if isinstance(value, str) and value and (attr != "id" or hasattr(payload, "group_key")):
            out[name] = value[:256]
    return out


def annotate(attributes: Mapping[str, Any], event: str = "") -> None:
    """Add attributes (and an event, say a retry) to the current span, when tracing."""
    if not _enabled:
        return
    span = trace.get_current_span()
    span.set_attributes(dict(attributes))
    if event:
        span.add_event(event)
