"""The README's "Try it" runs as written: `tocsin up` (what `make run` starts), then its
`tocsin emit ...` and `curl ...` commands, and the curl shows the alert; `amtool` works too."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[3] / "README.md"


def _try_it() -> list[list[str]]:
    """The commands of the README's "Try it" paragraph, as argv lists."""
    text = README.read_text()
    paragraph = text[text.index("Try it:"):text.index("\n\n", text.index("Try it:"))]
    commands = [shlex.split(c) for c in re.findall(r"`([^`]+)`", paragraph)]
    return [c for c in commands if c[0] in (".venv/bin/tocsin", "curl", "amtool") and "..." not in c]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_examples_run(tmp_path: Path) -> None:
    commands = _try_it()
    assert [c[0] for c in commands] == [".venv/bin/tocsin", "curl"], commands
    port = _free_port()
    log = tmp_path / "up.log"
    up = subprocess.Popen([sys.executable, "-m", "pipeline.application.cli",
                           "up", "--storage.path", str(tmp_path / "data"),
                           "--web.listen-address", f"127.0.0.1:{port}", "--partitions", "2"],
                          stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while b"ready:" not in log.read_bytes():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        env = {**os.environ, "TOCSIN_STORAGE_PATH": str(tmp_path / "data")}
        emit, curl = commands
        # as written, but this test's tocsin and port (the README's run in the project's folder on :9093)
        res = subprocess.run([sys.executable, "-m", "pipeline.application.cli",
                              *emit[1:]], env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        args = [a.replace("localhost:9093", f"127.0.0.1:{port}") for a in curl]
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        deadline = time.monotonic() + 20
        while True:
            out = subprocess.run([*args, "-s"], capture_output=True, text=True, timeout=30).stdout
            alerts = json.loads(out) if out.startswith("[") else []
            if alerts or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [a["labels"]["alertname"] for a in alerts] == ["DeviceDisconnected"], out
        assert alerts[0]["labels"]["resource"] == "gw-1"
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
