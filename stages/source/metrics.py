"""The source stage's Prometheus metrics, registered once in ``pipeline.foundation.runtime.metrics.REGISTRY``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.foundation.runtime.metrics import LATENCY_BUCKETS, metric_set

__all__ = ["SourceMetrics", "source_metrics"]


@dataclass(frozen=True)
class SourceMetrics:
    lag_bytes: Gauge
    flushed_lsn: Gauge
    active: Gauge
    rows: Counter
    dead_letters: Counter
    skipped: Counter
    batches: Counter
    publish_retries: Counter
    transaction_messages: Histogram
    batch_messages: Histogram
    publish_seconds: Histogram


_SIZES = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)


def _source_metrics(r: CollectorRegistry) -> SourceMetrics:
    """The process's source metrics, registered once in ``pipeline.foundation.runtime.metrics.REGISTRY``."""
    return SourceMetrics(
        lag_bytes=Gauge("tocsin_source_replication_lag_bytes",
                        "Server WAL position minus the LSN the source reported flushed", ["slot"],
                        registry=r),
        flushed_lsn=Gauge("tocsin_source_flushed_lsn", "LSN reported flushed (durable in JetStream)",
                          ["slot"], registry=r),
        active=Gauge("tocsin_source_active", "1 when this replica streams the slot, 0 on standby",
                     ["slot"], registry=r),
        rows=Counter("tocsin_source_rows", "Rows published (events and dead letters)", ["slot"],
                     registry=r),
        dead_letters=Counter("tocsin_source_dead_letters",
                             "Rows sent to the dead letters, by reason (org, id, size, depth, value, row)",
                             ["slot", "reason"], registry=r),
        skipped=Counter("tocsin_source_rows_skipped", "Rows skipped on resume as already published",
                        ["slot"], registry=r),
        batches=Counter("tocsin_source_batches", "Atomic batches committed", ["slot"], registry=r),
        publish_retries=Counter("tocsin_source_publish_retries", "Batch publishes retried", ["slot"],
                                registry=r),
        transaction_messages=Histogram("tocsin_source_transaction_rows", "Rows per published transaction",
                                       ["slot"], buckets=_SIZES, registry=r),
        batch_messages=Histogram("tocsin_source_batch_messages", "Messages per atomic batch", ["slot"],
                                 buckets=_SIZES, registry=r),
        publish_seconds=Histogram("tocsin_source_publish_seconds", "Atomic batch publish latency",
                                  ["slot"], buckets=LATENCY_BUCKETS, registry=r),
    )


source_metrics = metric_set(_source_metrics)
