"""Tocsin's version: the installed distribution's, for ``tocsin version``, the start-up line and
``GET /api/v2/status``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["tocsin_version"]


def tocsin_version() -> str:
    """The installed ``tocsin`` distribution's version (``0+unknown`` when run from a source tree)."""
    try:
        return version("tocsin")
    except PackageNotFoundError:
        return "0+unknown"
