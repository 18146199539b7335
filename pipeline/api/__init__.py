"""Tocsin's HTTP API: Alertmanager's API v2 plus Tocsin's own endpoints."""

from pipeline.api.app import ApiContext, api_routes

__all__ = ["ApiContext", "api_routes"]
