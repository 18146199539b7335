"""A small stateful stage for testing and benchmarking the runtime: a per-key counter with a timer."""
