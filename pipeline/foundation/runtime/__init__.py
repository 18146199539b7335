"""Runtime: JetStream wiring, checkpointing, supervision."""
