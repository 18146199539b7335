"""Tocsin's OpenAPI document of the Alertmanager API v2 (pipeline/application/api/openapi.yaml) against the routes
the API serves: every /api/v2 route is described, Tocsin's own operations (event rules as data
included) are served where the document says, and every operation documents the authentication
layer's answers and the X-Request-Id header."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
import schemathesis
import yaml
from starlette.routing import Route

from pipeline.application.api.app import api_routes
from pipeline.application.api.context import ApiContext
from pipeline.application.api.openapi import OPENAPI
from pipeline.application.settings import load_text

DOC: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())
METHODS = {"get", "post", "put", "delete", "patch"}


def operations(tocsin: bool | None = False) -> list[tuple[str, str, dict[str, Any]]]:
    """The operations of the Alertmanager API (``tocsin``: of Tocsin's own, tag tocsin; None: all)."""
    return [(m.upper(), path, op) for path, item in DOC["paths"].items() for m, op in item.items()
            if m in METHODS and tocsin in (None, "tocsin" in op.get("tags", []))]


def test_the_document_is_valid_openapi() -> None:
    schemathesis.openapi.from_path(str(OPENAPI)).validate()  # raises on a schema error
    assert DOC["openapi"].startswith("3.0") and DOC["servers"] == [{"url": "/api/v2"}]


def test_every_alertmanager_route_served_is_described_and_nothing_else() -> None:
    ctx = ApiContext(cast(Any, None), cast(Any, None), 1, load_text("route: {receiver: a}\nreceivers: [{name: a}]\n"))
    served = {(method, re.sub(r"\{[^}]+\}", "{}", r.path.removeprefix("/api/v2")))
              for r in api_routes(ctx) if isinstance(r, Route) and r.path.startswith("/api/v2/")
              and not r.path.startswith("/api/v2/openapi.") for method in (r.methods or set()) - {"HEAD"}}
    described = {(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path, _ in operations()}
    assert served == described
    assert len(described) == 9


def test_tocsins_own_operations_are_served_under_their_server() -> None:
    ctx = ApiContext(cast(Any, None), cast(Any, None), 1, load_text("route: {receiver: a}\nreceivers: [{name: a}]\n"))
    served = {(method, r.path) for r in api_routes(ctx) if isinstance(r, Route) for method in (r.methods or set())}
    for method, path, _ in operations(tocsin=True):
        (server,) = DOC["paths"][path]["servers"]
        assert (method, server["url"] + path) in served


def test_every_rules_route_served_is_described() -> None:
    ctx = ApiContext(cast(Any, None), cast(Any, None), 1, load_text("route: {receiver: a}\nreceivers: [{name: a}]\n"))
    served = {(method, r.path) for r in api_routes(ctx) if isinstance(r, Route)
              and r.path.startswith(("/api/tocsin/templates", "/api/tocsin/rules"))
              for method in (r.methods or set()) - {"HEAD"}}
    described = {(method, "/api/tocsin" + path) for method, path, op in operations(None) if "rules" in op["tags"]}
    assert served == described and len(described) == 11


@pytest.mark.parametrize("method,path,op", operations(None), ids=[f"{m} {p}" for m, p, _ in operations(None)])
def test_each_operation_documents_auth_errors_and_request_ids(method: str, path: str, op: dict[str, Any]) -> None:
    responses = op["responses"]
    own = "tocsin" in op.get("tags", [])  # Tocsin's own: a write answers 202 (accepted), and never 422
    # ... but event rules as data (tag rules) are resources, not commands: a create answers 201 with
    # the stored version, a definition that fails validation 422 naming the field (docs/rules.md)
    rules = "rules" in op.get("tags", [])
    written = "201" if rules and method == "POST" else "202" if own and method == "POST" else "200"
    assert {"401", "403", "429", "503"} <= set(responses) and written in responses
    if "requestBody" in op:
        assert ({"400", "413"} if own and not rules else {"400", "413", "422"}) <= set(responses)
    if rules and method != "GET":  # versions: If-Match, the ETag of the answer, 412; conflicts 409
        assert {"409", "412"} <= set(responses)
        assert "ifMatch" in {p.get("$ref", "").rsplit("/", 1)[-1] for p in op.get("parameters", [])} \
            or method == "POST"
    for code, response in responses.items():
        if "$ref" in response:
            response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        assert "X-Request-Id" in response.get("headers", {}), code


@pytest.mark.parametrize("name,fields", [
    ("gettableAlert", {"labels", "annotations", "receivers", "fingerprint", "startsAt", "updatedAt", "endsAt",
                       "status"}),
    ("alertStatus", {"state", "silencedBy", "inhibitedBy", "mutedBy"}),
    ("gettableSilence", {"id", "status", "updatedAt", "matchers", "startsAt", "endsAt", "createdBy", "comment"}),
    ("alertGroup", {"labels", "receiver", "alerts"}),
    ("alertmanagerStatus", {"cluster", "versionInfo", "config", "uptime"}),
    ("receiver", {"name"}),
], ids=["alert", "alert-status", "silence", "group", "status", "receiver"])
def test_alertmanagers_required_fields_are_required(name: str, fields: set[str]) -> None:
    schema = DOC["components"]["schemas"][name]
    assert set(schema["required"]) == fields and schema["additionalProperties"] is False
