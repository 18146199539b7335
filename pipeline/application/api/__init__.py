"""Tocsin's HTTP API: Alertmanager's API v2 plus Tocsin's own endpoints.

By resource, each module with ``routes(ctx)`` from module-level handlers: ``alerts``,
``groups``, ``silences``, ``acks``, ``escalations``, ``receivers``, ``status``, ``history``
(history and timeline), ``attempts``, ``audit_trail``, ``openapi``; ``app.api_routes``
assembles them, ``ingest`` (webhooks from other senders) and ``ui`` (the web UI) are
assembled beside them. Shared: ``context`` (``ApiContext``), ``routing``, ``query``,
``filter_state``, ``unprocessed``, ``push``, ``convert``, ``errors``, ``limits``, ``audit``,
and the ``auth`` sub-package (authentication, authorisation, organisations).

May import ``contracts``, ``pipeline.foundation``, ``pipeline.application.config`` and
``settings``, and of the stages only their ``views`` (the state layouts stay the stages'
own). The settings never import this package: the API's settings are
``pipeline.application.config``. Nothing is imported here.
"""
