"""Tocsin's stages: source, rules, router, filter, notifier (and counter, the runtime's test stage).

Each is a package with a pure ``core.py`` (the decisions: state, input and ``now`` in, new
state and outputs out) and a thin runner doing the I/O; ``views.py`` is what a stage offers
the API to read. A stage may import ``contracts``, ``pipeline.foundation`` and third-party
libraries, never another stage nor ``pipeline.application`` (import-linter checks it).
"""
