"""Go templates: Tocsin against ``amtool template render`` (Alertmanager 0.25) over the same data.

Every case of ``gotemplate_oracle_cases`` is rendered by Tocsin and by amtool, with
Alertmanager's ``default.tmpl`` and ``email.tmpl`` and a user template file loaded; the outputs
must be identical. amtool runs once per batch of cases (the cases joined by a marker, each in
its own ``{{ if true }}`` scope, the output split again), so the file runs in a few seconds.
Error cases run one by one: both must refuse them. Functions newer than 0.25 are checked
against outputs from Go's documentation.

`.ci/run` installs amtool and sets TOCSIN_REQUIRE_AMTOOL=1, so in CI a missing amtool is a
failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gotemplate_oracle_cases import DATA, ERRORS, HTML, NEWER, OVERRIDE_TMPL, OVERRIDES, TEXT, USER_TMPL

from stages.notifier.templates import TemplateSet, data_from_json
from stages.notifier.templates.defaults import DEFAULT_TMPL, EMAIL_TMPL
from stages.notifier.templates.gotime import parse_rfc3339

AMTOOL = shutil.which("amtool")
SHARE = Path("/usr/share/prometheus/alertmanager")
_MISSING = AMTOOL is None or not (SHARE / "default.tmpl").is_file()
if _MISSING and os.environ.get("TOCSIN_REQUIRE_AMTOOL") == "1":
    raise RuntimeError("amtool and /usr/share/prometheus/alertmanager/default.tmpl are required "
                       "(TOCSIN_REQUIRE_AMTOOL=1): apt-get install prometheus-alertmanager")

NOW = parse_rfc3339("2023-11-14T22:13:20Z")
_MARK = "\x1e@@{}@@\x1e"
_SPLIT = "\x1e@@"


def _needs_amtool() -> None:
    if _MISSING:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager); .ci/run installs it")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gotemplate")
    for name, data in DATA.items():
        (d / f"{name}.json").write_text(json.dumps(data))
    (d / "user.tmpl").write_text(USER_TMPL)
    (d / "override.tmpl").write_text(OVERRIDE_TMPL)
    return d


def _globs(d: Path, override: bool) -> list[str]:
    files = [str(SHARE / "default.tmpl"), str(SHARE / "email.tmpl"), str(d / "user.tmpl")]
    return [*files, str(d / "override.tmpl")] if override else files


def _amtool(d: Path, data: str, text: str, *, html: bool, override: bool) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    cmd = [AMTOOL, "template", "render", "--template.data", str(d / f"{data}.json"), "--template.text", text]
    for g in _globs(d, override):
        cmd += ["--template.glob", g]
    if html:
        cmd += ["--template.type", "html"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def _wrap(text: str) -> str:
    # its own variable scope; `define` must stay at top level
    return text if "define" in text else "{{ if true }}" + text + "{{ end }}"


def _batches() -> Iterator[tuple[tuple[str, bool, bool], list[tuple[str, str]]]]:
    groups: dict[tuple[str, bool, bool], list[tuple[str, str]]] = {}
    for cases, html, override in ((TEXT, False, False), (HTML, True, False), (OVERRIDES, False, True)):
        for case_id, data, text in cases:
            groups.setdefault((data, html, override), []).append((case_id, text))
    yield from groups.items()


@pytest.fixture(scope="module")
def amtool_outputs(workdir: Path) -> dict[str, str]:
    """amtool's output of every non-error case, by case id (one amtool run per batch)."""
    _needs_amtool()

    def run(batch: tuple[tuple[str, bool, bool], list[tuple[str, str]]]) -> dict[str, str]:
        (data, html, override), cases = batch
        text = "".join(_MARK.format(i) + _wrap(t) for i, (_, t) in enumerate(cases))
        proc = _amtool(workdir, data, text, html=html, override=override)
        if proc.returncode != 0:  # one case fails: run them one by one, so only that case fails
            singles = {}
            for case_id, t in cases:
                one = _amtool(workdir, data, t, html=html, override=override)
                singles[case_id] = one.stdout if one.returncode == 0 else f"AMTOOL FAILED: {one.stderr}"
            return singles
        parts = proc.stdout.split(_SPLIT)[1:]
        assert len(parts) == len(cases), (len(parts), len(cases))
        return {case_id: part.split("@@\x1e", 1)[1] for (case_id, _), part in zip(cases, parts, strict=True)}

    out: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(run, list(_batches())):
            out.update(result)
    return out


@pytest.fixture(scope="module")
def amtool_errors(workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    _needs_amtool()
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = pool.map(lambda c: _amtool(workdir, c[1], c[2], html=False, override=False), ERRORS)
        return {case_id: p for (case_id, _, _), p in zip(ERRORS, procs, strict=True)}


@pytest.fixture(scope="module")
def tocsin(workdir: Path) -> dict[bool, TemplateSet]:
    user = [(str(workdir / "user.tmpl"), USER_TMPL)]
    return {False: TemplateSet(user), True: TemplateSet([*user, (str(workdir / "override.tmpl"), OVERRIDE_TMPL)])}


def _data(name: str) -> object:
    return data_from_json(DATA[name], now=NOW)


def test_default_texts_are_alertmanagers() -> None:
    _needs_amtool()
    assert DEFAULT_TMPL == (SHARE / "default.tmpl").read_text()
    assert EMAIL_TMPL == (SHARE / "email.tmpl").read_text()


def test_enough_cases() -> None:
    assert len(TEXT) + len(HTML) + len(OVERRIDES) + len(ERRORS) >= 200
    ids = [c[0] for c in [*TEXT, *HTML, *OVERRIDES, *ERRORS, *NEWER]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("case_id", "data", "text"), TEXT, ids=[c[0] for c in TEXT])
def test_text_matches_amtool(case_id: str, data: str, text: str, amtool_outputs: dict[str, str],
                             tocsin: dict[bool, TemplateSet]) -> None:
    out, err = tocsin[False].render(text, _data(data), "<DEFAULT>")  # type: ignore[arg-type]
    assert err is None
    assert out == amtool_outputs[case_id]


@pytest.mark.parametrize(("case_id", "data", "text"), HTML, ids=[c[0] for c in HTML])
def test_html_matches_amtool(case_id: str, data: str, text: str, amtool_outputs: dict[str, str],
                             tocsin: dict[bool, TemplateSet]) -> None:
    out, err = tocsin[False].render_html(text, _data(data), "<DEFAULT>")  # type: ignore[arg-type]
    assert err is None
    assert out == amtool_outputs[case_id]


@pytest.mark.parametrize(("case_id", "data", "text"), OVERRIDES, ids=[c[0] for c in OVERRIDES])
def test_overridden_defaults_match_amtool(case_id: str, data: str, text: str, amtool_outputs: dict[str, str],
                                          tocsin: dict[bool, TemplateSet]) -> None:
    out, err = tocsin[True].render(text, _data(data), "<DEFAULT>")  # type: ignore[arg-type]
    assert err is None
    assert out == amtool_outputs[case_id]


@pytest.mark.parametrize(("case_id", "data", "text"), ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_match_amtool(case_id: str, data: str, text: str,
                             amtool_errors: dict[str, subprocess.CompletedProcess[str]],
                             tocsin: dict[bool, TemplateSet]) -> None:
    proc = amtool_errors[case_id]
    assert proc.returncode != 0, f"amtool renders it: {proc.stdout!r}"
    out, err = tocsin[False].render(text, _data(data), "<DEFAULT>")  # type: ignore[arg-type]
    assert (out, err is not None) == ("<DEFAULT>", True), proc.stderr


@pytest.mark.parametrize(("case_id", "data", "text", "expected"), NEWER, ids=[c[0] for c in NEWER])
def test_newer_functions(case_id: str, data: str, text: str, expected: str, tocsin: dict[bool, TemplateSet]) -> None:
    out, err = tocsin[False].render(text, _data(data), "<DEFAULT>")  # type: ignore[arg-type]
    assert err is None
    assert out == expected
