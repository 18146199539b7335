"""Tocsin's HTTP API: Alertmanager's API v2 plus Tocsin's own endpoints."""

from pipeline.api.app import api_routes
from pipeline.api.context import ApiContext

__all__ = ["ApiContext", "api_routes"]
