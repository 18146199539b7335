"""Alertmanager's command line: its flags are accepted, honoured or warned about; any other
unknown flag stops the start with a hint; logs as Alertmanager's; the sidecar settings file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.application.app import route_prefix
from pipeline.application.cli import main
from pipeline.application.settings import load
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.logs import JsonFormatter, LogfmtFormatter

AM = "route: {receiver: a}\nreceivers: [{name: a}]\n"


@pytest.mark.parametrize(("argv", "error"), [
    (["up", "--config-file", "am.yml"], "unknown flag --config-file, did you mean --config.file?"),
    (["up", "--web.listen-adress=:9093"], "unknown flag --web.listen-adress, did you mean --web.listen-address?"),
    (["up", "--zzz"], "unknown flag --zzz"),
    (["up", "--web.config.file", "web.yml"], "flag --web.config.file is not supported"),
    (["up", "stray"], "unexpected argument 'stray'"),
], ids=["typo-config-file", "typo-listen", "no-hint", "web-config-refused", "stray-argument"])
def test_unknown_flags_stop_the_start(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert f"tocsin: error: {error}" in capsys.readouterr().err


def test_alertmanagers_meaningless_flags_are_warned_about_not_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "am.yml").write_text(AM)
    argv = ["check-config", str(tmp_path / "am.yml")]
    assert main(argv) == 0
    # flags a command line written for Alertmanager carries, with their values as separate words
    assert main(["up", "--cluster.listen-address", "0.0.0.0:9094", "--cluster.peer=a:9094", "--auto-gomaxprocs",
                 "--web.config.file", "x.yml"]) == 2
    err = capsys.readouterr().err
    assert "warning: Alertmanager flag --cluster.listen-address is accepted and has no effect" in err
    assert "--cluster.peer is accepted" in err and "--auto-gomaxprocs is accepted" in err
    assert "unexpected argument" not in err  # the values were taken as the flags' own


@pytest.mark.parametrize(("external", "prefix", "expect"), [
    (None, None, ""),
    ("http://am.example:9093", None, ""),
    ("http://am.example/alerts/", None, "/alerts"),
    ("http://am.example/a/b", None, "/a/b"),
    ("http://am.example/alerts", "/", ""),
    ("http://am.example/alerts", "other/", "/other"),
], ids=["none", "no-path", "url-path", "nested", "flag-root-wins", "flag-wins"])
def test_route_prefix_as_alertmanager_derives_it(external: str | None, prefix: str | None, expect: str) -> None:
    assert route_prefix(external, prefix) == expect


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tocsin.api", logging.WARNING, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_logfmt_and_json_lines() -> None:
    line = LogfmtFormatter().format(_record('a "quoted" msg', org="acme", n=3))
    assert line.startswith("ts=")
    assert line.endswith('level=warn caller=tocsin.api msg="a \\"quoted\\" msg" org=acme n=3')
    doc = json.loads(JsonFormatter().format(_record("plain", org="acme")))
    assert doc["level"] == "warn" and doc["msg"] == "plain" and doc["org"] == "acme" and doc["ts"].endswith("Z")


# ---------------------------------------------------------------- the sidecar file


def test_sidecar_beside_the_config_is_read(tmp_path: Path) -> None:
    (tmp_path / "am.yml").write_text(AM)
    (tmp_path / "tocsin.yml").write_text("default_org: acme\nexternal_url: http://x\n")
    loaded = load(tmp_path / "am.yml")
    assert loaded.tocsin.default_org == "acme" and loaded.config.tocsin == {"default_org": "acme",
                                                                          "external_url": "http://x"}
    (tmp_path / "elsewhere.yml").write_text("default_org: other\n")
    assert load(tmp_path / "am.yml", tmp_path / "elsewhere.yml").tocsin.default_org == "other"


@pytest.mark.parametrize(("am", "sidecar", "error"), [
    (AM + "tocsin: {default_org: x}\n", "default_org: acme\n", "Tocsin's settings are given twice"),
    (AM, "default_org: acme\nbogus: 1\n", 'tocsin.yml:2: tocsin: unknown field "bogus"'),
    (AM, "- a list\n", "tocsin.yml:1: Tocsin's settings must be a mapping"),
    (AM, "default_org: [\n", "tocsin.yml:"),
], ids=["both-places", "unknown-key-with-line", "not-a-mapping", "bad-yaml"])
def test_sidecar_errors_name_the_file(tmp_path: Path, am: str, sidecar: str, error: str) -> None:
    (tmp_path / "am.yml").write_text(am)
    (tmp_path / "tocsin.yml").write_text(sidecar)
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "am.yml")
    assert any(error in e for e in exc.value.errors), exc.value.errors
    # check-config checks exactly what up loads
    assert main(["check-config", str(tmp_path / "am.yml")]) == 1


def test_check_config_refuses_what_up_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "am.yml").write_text(AM + "tocsin:\n  default_org: acme\n  limits: {rate: -1}\n")
    assert main(["check-config", str(tmp_path / "am.yml")]) == 1
    assert "limits" in capsys.readouterr().out
    with pytest.raises(ConfigError):
        load(tmp_path / "am.yml")


def test_amtool_accepts_the_alertmanager_file_of_a_sidecar_pair(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        if os.environ.get("TOCSIN_REQUIRE_AMTOOL"):
            pytest.fail("amtool is required (TOCSIN_REQUIRE_AMTOOL) but not installed")
        pytest.skip("amtool (Debian's prometheus-alertmanager) is not installed")
    (tmp_path / "am.yml").write_text(AM)
    (tmp_path / "tocsin.yml").write_text("default_org: acme\n")
    assert subprocess.run([amtool, "check-config", str(tmp_path / "am.yml")], capture_output=True).returncode == 0
    assert main(["check-config", str(tmp_path / "am.yml")]) == 0
    (tmp_path / "one").mkdir()  # the one-file form: valid for Tocsin, not for Alertmanager
    (tmp_path / "one" / "am.yml").write_text(AM + "tocsin: {default_org: acme}\n")
    assert subprocess.run([amtool, "check-config", str(tmp_path / "one" / "am.yml")],
                          capture_output=True).returncode != 0
    assert main(["check-config", str(tmp_path / "one" / "am.yml")]) == 0


def test_processes_topology_hands_alertmanagers_flags_to_every_stage() -> None:
    from pipeline.application.cli import _child_args, _parser

    up, _ = _parser().parse_known_args(["up", "--web.external-url", "http://x/am", "--data.retention", "2h",
                                        "--alerts.gc-interval", "90s", "--log.format", "json",
                                        "--tocsin.config.file", "t.yml"])
    child, unknown = _parser().parse_known_args(["run", "rules", *_child_args(up)])
    assert unknown == []
    for name in ("external_url", "data_retention", "alerts_gc_interval", "log_format", "tocsin_file", "route_prefix"):
        assert getattr(child, name) == getattr(up, name), name
