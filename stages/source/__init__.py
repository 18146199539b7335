"""The source stage (hop A): committed rows of Postgres tables into the EVENTS stream, effectively once.

- ``core``: the decisions, pure (checkpoint, plan, batch packing, transaction assembly, value
  decoding); imports no nats, anyio, asyncpg or psycopg.
- ``pgoutput``, ``mapping``, ``limits``, ``config``: the pure parts it builds on (the pgoutput
  codec, row to event, the limits a row must meet, the settings).
- ``session``: one replication connection's I/O around the core; ``service``: setup, one reader per
  slot, reconnects, drain; ``replication``: the walsender protocol and slot/publication admin;
  ``metrics``, ``tracing``; ``emit``/``migrate``: ``tocsin emit`` and ``tocsin db migrate``.

May import ``contracts`` and ``pipeline.foundation``, never another stage or ``pipeline.application``.
"""
