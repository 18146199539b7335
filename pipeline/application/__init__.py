"""The application: what stands on the stages.

Holds the process (``app``: which stages run, their typed dependencies, HTTP, drain), the
stage graph as data (``graph``), the deployment topologies, settings, reloads, the CLI and the
API with its web UI (``api``). It may import ``stages``, ``pipeline.foundation`` and
``contracts``; nothing below it imports it.
"""
