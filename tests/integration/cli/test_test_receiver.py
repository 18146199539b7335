"""`tocsin test-receiver`: one synthetic notification through a receiver's integrations, against
real local servers; `--dry-run` shows the requests and sends nothing."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "am.yml"
    path.write_text(f"""
route: {{receiver: team, group_by: [alertname, team]}}
receivers:
  - name: team
    webhook_configs: [{{url: "{url}/hook"}}]
    slack_configs:
      - api_url: "{url}/slack"
        channel: "#ops"
        title: '{{{{ .CommonLabels.alertname }}}} [{{{{ .Status | toUpper }}}}]'
  - name: silent
""")
    return path


async def _run(*args: str) -> tuple[int, str, str]:
    res = await anyio.run_process([sys.executable, "-m", "pipeline.application.cli",
                                   "test-receiver", *args], check=False)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


async def test_sends_through_every_integration(receiver: Receiver, tmp_path: Path) -> None:
    cfg = _config(tmp_path, receiver.url)
    code, out, err = await _run("team", "--config.file", str(cfg), "--alert", "team=db", "severity=page")
    assert code == 1, (out, err)  # the local server answers "" to Slack, which wants "ok": reported, not hidden
    assert "webhook[0]: OK sent" in out and "slack[0]: FAILED" in out and "Slack error" in out
    hook = next(x for x in receiver.received if x.path == "/hook")
    assert hook.body["receiver"] == "team" and hook.body["status"] == "firing"
    assert hook.body["groupLabels"] == {"alertname": "TocsinTestReceiver", "team": "db"}
    assert hook.body["alerts"][0]["labels"]["severity"] == "page"
    slack = next(x for x in receiver.received if x.path == "/slack")
    assert slack.body["channel"] == "#ops" and slack.body["attachments"][0]["title"] == "TocsinTestReceiver [FIRING]"

    code, out, _ = await _run("team", "--config.file", str(cfg), "--resolved")
    assert [x.body["status"] for x in receiver.received if x.path == "/hook"][-1] == "resolved"


async def test_dry_run_sends_nothing(receiver: Receiver, tmp_path: Path) -> None:
    cfg = _config(tmp_path, receiver.url)
    code, out, err = await _run("team", "--config.file", str(cfg), "--dry-run")
    assert code == 0, (out, err)
    # both requests are shown; their URLs are credentials (Alertmanager's secret URLs), so hidden
    assert out.count("  POST <secret>") == 2 and receiver.url not in out
    assert '"title":"TocsinTestReceiver [FIRING]"' in out
    assert receiver.received == []


@pytest.mark.parametrize(("receiver_name", "code", "said"), [
    ("nobody", 2, "no receiver 'nobody'"),
    ("silent", 1, "silent: no integrations"),
], ids=["unknown", "no-integrations"])
async def test_refusals(receiver: Receiver, tmp_path: Path, receiver_name: str, code: int, said: str) -> None:
    got, out, err = await _run(receiver_name, "--config.file", str(_config(tmp_path, receiver.url)))
    assert got == code and said in out + err
