"""--web.external-url and --web.route-prefix on a running pipeline: every path under the
prefix, and the external URL in every notification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pipeline.application.app import Endpoints, Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

EXTERNAL = "http://tocsin.example:9999/alerting"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


@pytest.fixture
async def pipeline(nats_server: NatsServer, receiver: Receiver, tmp_path: Path) -> AsyncIterator[Endpoints]:
    config = f"""
route: {{receiver: hook, group_by: [alertname], group_wait: 100ms, group_interval: 1s}}
receivers: [{{name: hook, webhook_configs: [{{url: "{receiver.url}/hook"}}]}}]
tocsin: {{external_url: "http://ignored.example", default_org: acme}}
"""
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(config), partitions=2, external_url=EXTERNAL, route_prefix="/alerting")
    async with running(settings, ["rules", "router", "filter", "notifier", "api"]) as ep:
        yield ep


async def test_paths_under_the_prefix_and_links_to_the_external_url(pipeline: Endpoints,
                                                                     receiver: Receiver) -> None:
    assert pipeline.api_url.endswith("/alerting")
    root = pipeline.api_url.removesuffix("/alerting")
    async with httpx.AsyncClient() as http:
        for path in ("/-/healthy", "/-/ready", "/api/v2/status", "/metrics"):
            assert (await http.get(pipeline.api_url + path)).status_code == 200, path
            assert (await http.get(root + path)).status_code == 404, path  # outside the prefix
        assert (await http.get(root + "/alertingx/-/healthy")).status_code == 404
        r = await http.post(pipeline.api_url + "/api/v2/alerts", json=[{"labels": {"alertname": "Linked"}}])
        assert r.status_code == 200
    (hook,) = await receiver.wait_for(1)
    assert hook.body["externalURL"] == EXTERNAL  # the flag wins over tocsin.external_url
