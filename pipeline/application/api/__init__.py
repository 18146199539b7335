"""Tocsin's HTTP API: Alertmanager's API v2 plus Tocsin's own endpoints.

Modules: ``app`` (routes), ``context``, ``push``, ``silences``, ``convert``, ``errors``, and the
identity layer ``auth*``, ``limits``, ``audit``. Nothing is imported here, so configuration
code can use ``pipeline.application.api.auth_config`` without loading the HTTP handlers.
"""
