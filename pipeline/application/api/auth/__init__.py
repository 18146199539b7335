"""Authentication and authorisation of the HTTP API.

``middleware`` (``AuthMiddleware``, ``Authenticator``, ``require``, ``identity_of``),
``identity`` (``X-Scope-OrgID`` to organisations), ``jwt`` (token verification, JWKS URLs),
``mtls`` (client certificate subjects) and ``errors`` (the API's error answers). Their
settings, the identity model and the credential files are ``pipeline.application.config``.
Nothing is imported here.
"""
