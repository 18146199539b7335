"""The ``tocsin: ingest:`` section (api.ingest_config) and its tokens (api.ingest.load_token)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.application.api.ingest import IngestRuntime, load_token
from pipeline.application.config.ingest import DEFAULT_SNS_HOSTS, IngestConfig
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.amconfig.decode import Decoder, compose


def decode(text: str) -> tuple[object, list[str]]:
    decoder = Decoder("t.yml")
    node = compose(text)
    assert node is not None
    return decoder.decode(node, IngestConfig, "tocsin.ingest"), decoder.errors


def test_a_valid_section() -> None:
    config, errors = decode("""
sources:
  sns:
    topics: {"arn:aws:sns:eu-west-1:1:a": {org: acme, labels: {severity: critical}, insufficient_data: firing}}
  grafana: {token_file: grafana.token}
  shop:
    kind: generic
    token_env: SHOP_TOKEN
    mapping: {alertname: "{{ .name }}", labels: {host: a.b}}
""")
    assert errors == []
    assert isinstance(config, IngestConfig)
    sns, grafana, shop = (config.sources[n] for n in ("sns", "grafana", "shop"))
    assert (sns.kind_of("sns"), grafana.kind_of("grafana"), shop.kind_of("shop")) == ("sns", "grafana", "generic")
    assert sns.cert_hosts == list(DEFAULT_SNS_HOSTS) and sns.confirm and not sns.allow_http
    assert shop.mapping is not None and shop.mapping.firing == ["firing"]


@pytest.mark.parametrize(("text", "message"), [
    ("sources: {grafana: {}}", "a grafana source needs token_file or token_env"),
    ("sources: {x: {token_env: T}}", "set kind"),
    ("sources: {x: {kind: generic, token_env: T}}", "needs a mapping"),
    ("sources: {sns: {}}", "list the SNS topics"),
    ("sources: {sns: {topics: {t: {org: 'a|b'}}}}", "organisation name contains"),
    ("sources: {sns: {topics: {t: {}}, insufficient_data: maybe}}", "must be one of ignore, firing, resolved"),
    ("sources: {grafana: {token_file: a, token_env: B}}", "not both"),
    ("sources: {grafana: {token_file: a, rate: -1}}", "must not be negative"),
    ("sources: {'a b': {kind: grafana, token_file: a}}", "a source name is its path"),
    ("sources: {grafana: {token_file: a, tokn: x}}", 'unknown field "tokn"'),
    ("sources: {x: {kind: generic, token_file: a, mapping: {alertname: '{{ .a '}}}", "does not parse"),
    ("sources: {x: {kind: generic, token_file: a, mapping: {alertname: a, labels: {a-b: c}}}}", "not a label name"),
    ("sources: {x: {kind: generic, token_file: a, mapping: {labels: {a: b}}}}", "alertname: is required"),
])
def test_problems_name_the_field(text: str, message: str) -> None:
    _, errors = decode(text)
    assert any(message in e for e in errors), errors


def test_tokens_come_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t").write_text(" s3cret\n")
    config, errors = decode("sources: {grafana: {token_file: t}, other: {kind: grafana, token_env: TOCSIN_T}}")
    assert not errors and isinstance(config, IngestConfig)
    assert load_token(config.sources["grafana"], "grafana", tmp_path) == "s3cret"
    with pytest.raises(ConfigError, match="TOCSIN_T is not set"):
        IngestRuntime.build(config, tmp_path)
    monkeypatch.setenv("TOCSIN_T", "env-token")
    assert IngestRuntime.build(config, tmp_path).sources["other"].token == "env-token"
    with pytest.raises(ConfigError, match="cannot read"):
        load_token(config.sources["grafana"], "grafana", tmp_path / "missing")
    (tmp_path / "t").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_token(config.sources["grafana"], "grafana", tmp_path)


async def test_the_routes_follow_a_reloaded_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until ``tocsin.ingest`` is a field of the settings, a stand-in section carries it."""
    import dataclasses
    from types import SimpleNamespace

    import httpx
    from starlette.applications import Starlette

    from pipeline.application.api.context import ApiContext
    from pipeline.application.api.ingest import ingest_routes
    from pipeline.application.settings import load_text

    loaded = load_text("route: {receiver: a}\nreceivers: [{name: a}]\n")
    ctx = ApiContext(None, None, 4, loaded)  # type: ignore[arg-type]  # (no request here reaches NATS)
    app = Starlette(routes=ingest_routes(ctx))
    monkeypatch.setenv("TOCSIN_T", "t")
    config, _ = decode("sources: {grafana: {token_env: TOCSIN_T}}")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        assert (await client.post("/api/tocsin/ingest/grafana", json={})).status_code == 404
        section = SimpleNamespace(ingest=config, default_org="default", limits=None)
        ctx.use(dataclasses.replace(loaded, tocsin=section))  # type: ignore[arg-type]
        r = await client.post("/api/tocsin/ingest/grafana", json={})
        assert r.status_code == 401 and "grafana needs its token" in r.json()
