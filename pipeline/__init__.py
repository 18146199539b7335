"""Tocsin's runtime and application, in two layers (see docs/architecture.md).

- ``pipeline.foundation``: what the stages stand on (the stage runtime, the Alertmanager
  configuration model, telemetry, logging, embedded servers). It imports ``contracts`` only.
- ``pipeline.application``: what stands on the stages (the process, the stage graph, the CLI,
  settings, the API and UI). It may import everything below it.

``make test`` checks these rules with import-linter (``.importlinter``).
"""
