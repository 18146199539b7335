"""The stage runtime: the brief's hop protocol on NATS JetStream.

- Decisions (pure, no nats/anyio): ``machine`` (a partition's skip-at-progress, gaps, timers,
  batch splitting, dead letters, message ids), ``wire`` (what a batch message is, the server's
  limits), ``step`` (the ``StageCore`` protocol), ``subjects`` (names of streams, subjects and
  keys), ``deadletter``.
- I/O: ``partition`` (``PartitionWorker``: fetch, commit, ack), ``stage`` (a stage's partitions
  and replicas), ``membership`` (ownership), ``commit`` (group commit), ``pull`` and
  ``workqueue`` (consumers), ``reads`` (state reads), ``jetstream`` (streams, atomic batches),
  ``chain`` (consecutive stages as one), ``natsclient``/``natsauth``, ``metrics``.

May import ``contracts`` and the rest of ``pipeline.foundation``; never ``stages`` nor
``pipeline.application``.
"""
