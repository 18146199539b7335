"""An organisation with its own alertmanager.yml (tocsin.orgs): its own route tree and receivers;
the others use the global configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    async with http_receiver() as a, http_receiver() as b:
        yield a, b


async def test_org_with_its_own_configuration(nats_server: NatsServer, tmp_path: Path,
                                             two_receivers: tuple[Receiver, Receiver]) -> None:
    global_rx, beta_rx = two_receivers
    (tmp_path / "am.yml").write_text(f"""
route: {{receiver: ops, group_by: [alertname], group_wait: 0s}}
receivers:
  - name: ops
    webhook_configs: [{{url: '{global_rx.url}/ops'}}]
tocsin:
  default_org: acme
  orgs: {{beta: beta.yml}}
""")
    (tmp_path / "beta.yml").write_text(f"""
route:
  receiver: beta-team
  group_by: [alertname]
  group_wait: 0s
  routes: [{{receiver: beta-db, matchers: ['service="db"']}}]
receivers:
  - name: beta-team
    webhook_configs: [{{url: '{beta_rx.url}/team'}}]
  - name: beta-db
    webhook_configs: [{{url: '{beta_rx.url}/db'}}]
""")
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load(tmp_path / "am.yml"), config_file=tmp_path / "am.yml", partitions=4)
    async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep, \
            httpx.AsyncClient(base_url=ep.api_url, timeout=15) as api:
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "AcmeDown"}}])
        await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "BetaDb", "service": "db"}}],
                       headers={"X-Scope-OrgID": "beta"})
        (acme_hook,) = await global_rx.wait_for(1)
        (beta_hook,) = await beta_rx.wait_for(1)
        assert acme_hook.path == "/ops" and acme_hook.body["groupLabels"] == {"alertname": "AcmeDown"}
        assert beta_hook.path == "/db" and beta_hook.body["receiver"] == "beta-db"
        beta_alerts = (await api.get("/api/v2/alerts", headers={"X-Scope-OrgID": "beta"})).json()
        assert beta_alerts[0]["receivers"] == [{"name": "beta-db"}]
        assert [r["name"] for r in (await api.get("/api/v2/receivers", headers={"X-Scope-OrgID": "beta"})).json()
                ] == ["beta-team", "beta-db"]
        assert [r["name"] for r in (await api.get("/api/v2/receivers")).json()] == ["ops"]
