"""The trace context of the source's events: one span per event when tracing is set up, else random ids."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from pipeline.foundation import telemetry
from stages.source.core import TraceFn

__all__ = ["random_traceparent", "trace_context_factory"]

# Trace ids are unique, not secret: a seeded generator rather than a system call per event
# (``os.urandom`` was 6% of the source's CPU), seeded afresh in a forked child.
_trace_rng = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _trace_rng.seed(os.urandom(16)))


def random_traceparent(random_bytes: Callable[[int], bytes] = _trace_rng.randbytes) -> dict[str, str]:
    """A new W3C trace context: random 16-byte trace id and 8-byte span id, sampled."""
    raw = random_bytes(24)
    trace_id, span_id = raw[:16], raw[16:]
    if not any(trace_id):  # all-zero ids are invalid
        trace_id = b"\x00" * 15 + b"\x01"
    if not any(span_id):
        span_id = b"\x00" * 7 + b"\x01"
    return {"traceparent": f"00-{trace_id.hex()}-{span_id.hex()}-01"}


def trace_context_factory() -> TraceFn:
    """One span per event (the source's transaction) when tracing is set up, else random ids."""
    if telemetry.tracer() is None:
        return lambda event_id, committed_at: random_traceparent()

    def with_span(event_id: str, committed_at: float) -> dict[str, str]:
        tp = telemetry.producer_span("source transaction", None, {
            "db.system": "postgresql", "messaging.system": "nats", "messaging.operation.type": "publish",
            "tocsin.event.id": event_id}, start_time=committed_at)
        return {"traceparent": tp} if tp else random_traceparent()

    return with_span
