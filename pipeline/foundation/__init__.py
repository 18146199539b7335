"""The foundation: what every stage stands on.

Holds the stage runtime (``runtime``: JetStream wiring, partitions, the hop protocol, the
chain runner), the Alertmanager configuration model (``amconfig``), telemetry, logging and
the embedded NATS and Postgres servers. It may import ``contracts`` and third-party
libraries only: never ``stages`` nor ``pipeline.application``.
"""
