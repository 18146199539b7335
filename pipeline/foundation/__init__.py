"""The foundation: what every stage stands on.

Holds the stage runtime (``runtime``: JetStream wiring, partitions, the hop protocol, the
chain runner, the work-queue consumer), the Alertmanager configuration model (``amconfig``),
telemetry, logging, the HTTP/1.1 client (``http1``) and the embedded NATS and Postgres
servers. It may import ``contracts`` and third-party libraries only: never ``stages`` nor
``pipeline.application``.
"""
