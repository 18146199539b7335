"""The API's settings in the ``tocsin:`` section, as typed models, and the credential files they name.

``auth`` (``auth:``), ``limits`` (``limits:``), ``ingest`` and ``ingest_expr`` (``ingest:``),
``identity`` (who a credential names: roles, permissions), ``static_tokens`` (the tokens
file) and ``jwt_keys`` (JWKS and secret files). ``pipeline.application.settings`` decodes
and reads them at load, so a bad section or file is a start-up error with its line; the API
(``pipeline.application.api``) uses them at request time.

May import ``contracts``, ``pipeline.foundation`` and stage helpers (the Go template parser);
never the API or an HTTP framework, so loading the settings never loads the HTTP handlers.
"""
