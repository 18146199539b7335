"""`amtool` (Debian's prometheus-alertmanager) against a running Tocsin: alerts, silences, routes.

`.ci/run` installs the package and sets TOCSIN_REQUIRE_AMTOOL=1, so in CI a missing amtool is
a failure, not a skip. Elsewhere the test skips with the reason when amtool is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running

pytestmark = pytest.mark.integration

AMTOOL = shutil.which("amtool")
if AMTOOL is None and os.environ.get("TOCSIN_REQUIRE_AMTOOL") == "1":
    raise RuntimeError("amtool is required (TOCSIN_REQUIRE_AMTOOL=1) but not installed: apt-get install "
                       "prometheus-alertmanager")
if AMTOOL is None:
    pytest.skip("amtool not installed (Debian package prometheus-alertmanager); .ci/run installs it",
                allow_module_level=True)

CONFIG = """
route:
  receiver: team
  group_by: [alertname]
  routes:
    - receiver: pager
      matchers: ['severity="page"']
receivers:
  - name: team
  - name: pager
"""


@pytest.fixture
async def url(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "filter", "api"]) as ep:
        yield ep.api_url


async def amtool(url: str, *args: str) -> str:
    res = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [str(AMTOOL), f"--alertmanager.url={url}", *args], capture_output=True, text=True, timeout=30))
    assert res.returncode == 0, f"amtool {' '.join(args)}: {res.stderr}"
    return res.stdout


async def test_amtool_alerts_silences_and_routes(url: str) -> None:
    await amtool(url, "alert", "add", "alertname=DiskFull", "severity=page", "--annotation=summary=disk")
    with anyio.fail_after(10):
        while not json.loads(await amtool(url, "alert", "query", "-o", "json")):
            await anyio.sleep(0.1)
    (alert,) = json.loads(await amtool(url, "alert", "query", "-o", "json"))
    assert alert["labels"] == {"alertname": "DiskFull", "severity": "page"}
    assert alert["receivers"] == [{"name": "pager"}] and alert["status"]["state"] == "active"

    sid = (await amtool(url, "silence", "add", "alertname=DiskFull", "-c", "maintenance", "-a", "ops", "-d", "1h")
           ).strip()
    assert len(sid) == 36
    (sil,) = json.loads(await amtool(url, "silence", "query", "-o", "json"))
    assert sil["id"] == sid and sil["status"]["state"] == "active" and sil["createdBy"] == "ops"
    assert sil["matchers"] == [{"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True}]
    assert json.loads(await amtool(url, "alert", "query", "-o", "json")) == []  # silenced: not active
    (silenced,) = json.loads(await amtool(url, "alert", "query", "-s", "-o", "json"))
    assert silenced["status"]["silencedBy"] == [sid]

    await amtool(url, "silence", "expire", sid)
    assert json.loads(await amtool(url, "silence", "query", "-o", "json")) == []
    (expired,) = json.loads(await amtool(url, "silence", "query", "--expired", "-o", "json"))
    assert expired["id"] == sid and expired["status"]["state"] == "expired"

    routes = await amtool(url, "config", "routes", "test", "severity=page")
    assert routes.strip() == "pager"
    assert "receiver: pager" in await amtool(url, "config", "routes")


ROUTES = """
route:
  receiver: team
  group_by: [alertname]
  routes:
    - receiver: pager
      matchers: ['severity="critical"']
      continue: true
      routes:
        - receiver: db-pager
          match: {service: database}
    - receiver: files
      match_re: {service: "files|blobs"}
receivers: [{name: team}, {name: pager}, {name: db-pager}, {name: files}]
"""


@pytest.mark.parametrize("args", [
    ["show"],
    ["test", "severity=critical", "service=database"],
    ["test", "service=blobs"],
    ["test", "x=y"],
    ["test", "--tree", "severity=critical", "service=files"],
], ids=["show", "nested", "match_re", "default", "tree"])
def test_tocsin_routes_prints_what_amtool_prints(tmp_path: Path, args: list[str]) -> None:
    f = tmp_path / "am.yml"
    f.write_text(ROUTES)
    ours = subprocess.run([sys.executable, "-m", "pipeline.application.cli", "routes", args[0], "--config.file", str(f),
                           *args[1:]], capture_output=True, text=True, timeout=60)
    theirs = subprocess.run([str(AMTOOL), "config", "routes", args[0], "--config.file", str(f), *args[1:]],
                            capture_output=True, text=True, timeout=60)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout == theirs.stdout
