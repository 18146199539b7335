"""The `tocsin` command's quick paths: version, check-config, invalid configuration at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.application.cli import main

FULL = Path(__file__).parents[2] / "fixtures" / "alertmanager" / "full.yml"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("tocsin ")


def test_check_config_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(FULL)]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and "receivers" in out


@pytest.mark.parametrize("text,line,fieldpath", [
    ("route:\n  receiver: x\n  group_wait: 5x\nreceivers:\n- name: x\n", 3, "route.group_wait"),
    ("route:\n  receiver: x\nreceivers:\n- name: x\ntocsin:\n  defaultorg: a\n", 6, "tocsin"),
], ids=["bad-duration", "unknown-tocsin-key"])
def test_invalid_config_names_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                                  line: int, fieldpath: str) -> None:
    f = tmp_path / "am.yml"
    f.write_text(text)
    assert main(["up", "--config.file", str(f), "--storage.path", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert f"{f}:{line}: {fieldpath}" in err


def test_check_config_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "am.yml"
    f.write_text("route:\n  receiver: nobody\nreceivers:\n- name: x\n")
    assert main(["check-config", str(f)]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("section,line,message", [
    ("tocsin:\n  rules:\n    groups: [{name: x}]\n", 6, "tocsin.rules: invalid event rules"),
    ("tocsin:\n  filter:\n    silence_retention: banana\n", 6, 'invalid duration "banana"'),
    ("tocsin:\n  source:\n    slot: 5\n", 6, "tocsin.source"),
], ids=["rules", "filter", "source"])
def test_stage_sections_are_validated_at_load(section: str, line: int, message: str) -> None:
    from pipeline.application.settings import load_text
    from pipeline.foundation.amconfig import ConfigError

    with pytest.raises(ConfigError) as err:
        load_text("route:\n  receiver: a\nreceivers:\n- name: a\n" + section, "am.yml")
    (error,) = err.value.errors
    assert error.startswith(f"am.yml:{line}: ") and message in error


@pytest.mark.parametrize(("section", "expect"), [
    ('default_org: "a|b"', "4: tocsin.default_org: organisation name contains '|'"),
    ('default_org: "*"', '4: tocsin.default_org: "*" is not an organisation'),
    ("default_org: " + "o" * 151, "4: tocsin.default_org: organisation name is longer than 150"),
    ('orgs: {"a/b": other.yml}', "4: tocsin.orgs: organisation name contains '/'"),
], ids=["union", "star", "long", "slash"])
def test_configured_organisations_pass_the_one_org_check(section: str, expect: str) -> None:
    from pipeline.application.settings import load_text
    from pipeline.foundation.amconfig import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_text(f"route: {{receiver: a}}\nreceivers: [{{name: a}}]\ntocsin:\n  {section}\n", "am.yml")
    assert any(e.startswith(f"am.yml:{expect}") for e in exc.value.errors), exc.value.errors
