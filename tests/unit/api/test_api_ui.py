"""The web UI's page and assets (pipeline.application.api.ui): served relative to the route prefix, public,
nothing but the assets folder's files; the route tree it draws. The browser tests are in
tests/integration/ui."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from pipeline.application.api.auth.middleware import Authenticator, AuthMiddleware
from pipeline.application.api.ui import ASSETS, route_tree, ui_routes
from pipeline.application.app import _Prefixed
from pipeline.application.config.auth import AuthConfig, StaticConfig
from pipeline.application.config.static_tokens import parse_static_tokens
from pipeline.application.settings import load_text
from pipeline.foundation.amconfig import compile_routes


def _client(prefix: str = "") -> TestClient:
    app = Starlette(routes=ui_routes())
    return TestClient(_Prefixed(app, prefix) if prefix else app)


def test_the_page_is_served_at_the_root_with_its_base() -> None:
    r = _client().get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<base href="/">' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/am", "/am/"])
def test_under_a_route_prefix_every_relative_url_resolves_inside_it(path: str) -> None:
    r = _client("/am").get(path)
    assert r.status_code == 200 and '<base href="/am/">' in r.text


def test_every_asset_the_page_and_modules_name_is_served() -> None:
    client = _client()
    page = client.get("/").text
    names = re.findall(r'(?:src|href)="ui/([^"]+)"', page)
    assert {"app.js", "style.css"} <= set(names)
    for js in ("app.js", "matchers.js"):
        names += re.findall(r'from "\./([^"]+)"', (ASSETS / js).read_text())
    for name in names:
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200, name
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fui.py", "/ui/.hidden.js", "/ui/index.txt", "/ui/"])
def test_nothing_but_the_assets_is_served(path: str) -> None:
    assert _client().get(path).status_code == 404


def test_the_page_and_assets_are_public_and_the_api_is_not() -> None:
    config = AuthConfig(mode="static", static=StaticConfig(tokens_file="x"))
    tokens = parse_static_tokens("- {token: t, subject: s, orgs: [acme], role: viewer}\n")
    app = Starlette(routes=ui_routes(), middleware=[Middleware(
        AuthMiddleware, config=config, default_org="acme", authenticator=Authenticator(config, tokens=tokens))])
    client = TestClient(app)
    assert client.get("/").status_code == 200
    assert client.get("/ui/style.css").status_code == 200
    assert client.get("/api/tocsin/ui/routes").status_code == 401


def test_the_route_tree_as_the_status_view_draws_it() -> None:
    loaded = load_text("""
route:
  receiver: a
  group_by: [alertname]
  routes:
    - {receiver: b, matchers: ['team="db"'], continue: true, group_by: ['...']}
receivers: [{name: a}, {name: b}]
""")
    tree = route_tree(compile_routes(loaded.config))
    assert (tree["receiver"], tree["matchers"], tree["groupBy"]) == ("a", "", ["alertname"])
    [child] = tree["routes"]
    assert (child["receiver"], child["matchers"], child["continue"], child["groupBy"]) == \
        ("b", '{team="db"}', True, ["..."])
