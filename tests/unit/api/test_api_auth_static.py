"""Static bearer tokens (pipeline.application.config.static_tokens): the tokens file and lookups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.application.config.identity import ALL
from pipeline.application.config.static_tokens import load_static_tokens, parse_static_tokens, token_digest
from pipeline.foundation.amconfig import ConfigError

TOKENS_YAML = f"""\
- token_sha256: {token_digest("prom-token")}
  subject: prometheus
  orgs: [acme]
  push: true
- token: ops-token
  subject: ops
  orgs: ["*"]
  role: admin
  allow_union: true
- token: "12345"
  subject: numbers
  orgs: [acme, beta]
  role: responder
"""


def test_lookup_finds_each_entry_by_its_token() -> None:
    table = parse_static_tokens(TOKENS_YAML, "tokens.yml")
    assert len(table) == 3
    prom = table.lookup("prom-token")
    ops = table.lookup("ops-token")
    numbers = table.lookup("12345")
    assert prom is not None and ops is not None and numbers is not None
    assert (prom.subject, prom.orgs, prom.role, prom.can_push) == (
        "prometheus",
        frozenset({"acme"}),
        "viewer",
        True,
    )
    assert (ops.orgs, ops.role, ops.allow_union, ops.can_push) == (ALL, "admin", True, False)
    assert numbers.orgs == frozenset({"acme", "beta"}) and numbers.method == "static"


@pytest.mark.parametrize(
    "token",
    ["", "prom", "prom-token ", "PROM-TOKEN", token_digest("prom-token")],
    ids=["empty", "prefix", "trailing-space", "case", "the-digest-itself"],
)
def test_unknown_tokens_find_nothing(token: str) -> None:
    assert parse_static_tokens(TOKENS_YAML).lookup(token) is None


def test_json_file_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"token": "t", "subject": "s", "orgs": ["o"], "role": "viewer"}]))
    identity = load_static_tokens(path).lookup("t")
    assert identity is not None and identity.subject == "s"


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("- {subject: a, orgs: [x]}\n", "tokens.yml:1: [0]: exactly one of token and token_sha256"),
        ("- {token: t, token_sha256: " + "a" * 64 + ", subject: a, orgs: [x]}\n", "exactly one of"),
        ("- {token_sha256: abc, subject: a, orgs: [x]}\n", "tokens.yml:1: [0].token_sha256: must be 64 hex"),
        ("- {token: t, subject: a, orgs: []}\n", "[0].orgs: name at least one organisation"),
        ("- {token: t, subject: a, orgs: ['*', x]}\n", "stands alone"),
        ("- {token: t, subject: a, orgs: ['a|b']}\n", "'|'"),
        ("- {token: t, subject: a, orgs: [x], role: root}\n", '[0].role: unknown role "root"'),
        ("- {token: t, subject: a, orgs: [x], rol: admin}\n", 'unknown field "rol"'),
        ("- {token: t, orgs: [x]}\n", 'missing required field "subject"'),
        ("- {token: t, subject: a, orgs: [x], push: maybe}\n", "[0].push: expected a boolean"),
        (
            "- {token: t, subject: a, orgs: [x]}\n- {token: t, subject: b, orgs: [y]}\n",
            'tokens.yml:2: [1].token: entry [1] repeats the token of "a"',
        ),
        ("tokens: []\n", "expected a list"),
        ("", "no tokens"),
        ("- [unclosed\n", "syntax error"),
    ],
    ids=[
        "no-token",
        "both-tokens",
        "bad-digest",
        "no-orgs",
        "star-not-alone",
        "bad-org",
        "bad-role",
        "unknown-field",
        "no-subject",
        "bad-bool",
        "duplicate-token",
        "not-a-list",
        "empty",
        "syntax",
    ],
)
def test_file_errors_name_the_line_and_field(text: str, expect: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_static_tokens(text, "tokens.yml")
    assert any(expect in e for e in info.value.errors), info.value.errors


def test_a_token_and_its_digest_are_the_same_entry() -> None:
    digest = token_digest("t").upper()
    text = f"- {{token: t, subject: a, orgs: [x]}}\n- {{token_sha256: {digest}, subject: b, orgs: [y]}}\n"
    with pytest.raises(ConfigError, match="repeats the token"):
        parse_static_tokens(text)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yml"):
        load_static_tokens(tmp_path / "missing.yml")
