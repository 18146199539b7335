"""One validator per identifier kind (contracts.ids), and the subject tokens made from them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ids import (
    MAX_GROUP_KEY_LENGTH,
    MAX_ID_LENGTH,
    MAX_ORG_LENGTH,
    check_fingerprint,
    check_group_key,
    check_id,
    check_org,
)
from pipeline.application.config.identity import check_org_name
from pipeline.foundation.runtime.subjects import MAX_TOKEN, token

_TOKEN = re.compile(r"[A-Za-z0-9_~-]+")  # no ".", no white space, no wildcard


@pytest.mark.parametrize(
    ("org", "problem"),
    [
        ("acme", None),
        ("tenant a", None),
        ("o" * MAX_ORG_LENGTH, None),
        ("Zürich-äöü", None),
        ("", "empty"),
        ("o" * (MAX_ORG_LENGTH + 1), f"longer than {MAX_ORG_LENGTH} characters"),
        ("o" * 4000, f"longer than {MAX_ORG_LENGTH} characters"),
        ("*", '"*" is not an organisation'),
        ("A|B", "contains '|'"),
        ("a/b", "contains '/'"),
        ("a\x01b", "control character"),
        ("a\nb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),  # C1 (NEL)
        ("a\ud800", "control character"),  # a lone surrogate cannot be encoded
        (" acme", "white space"),
        ("acme\t", "control character"),
        ("acme ", "white space"),
    ],
)
def test_check_org(org: str, problem: str | None) -> None:
    got = check_org(org)
    assert (got is None) if problem is None else (got is not None and problem in got)
    assert check_org_name(org) == got  # the API's name for it is the same function


@pytest.mark.parametrize(
    ("fp", "ok"),
    [("0123456789abcdef", True), ("0123456789ABCDEF", False), ("0123456789abcde", False),
     ("0123456789abcdef0", False), ("0123456789abcdeg", False), ("", False), ("f" * 5000, False),
     ("0123456789abcde\n", False), ("0123456789abcdef\n", False)],
)
def test_check_fingerprint(fp: str, ok: bool) -> None:
    assert (check_fingerprint(fp) is None) is ok


@pytest.mark.parametrize(
    ("value", "problem"),
    [("4f1c5a0e-0c2b-4a3e-9b1d-7a6f0e2d9c11", None), ("ana", None), ("x" * MAX_ID_LENGTH, None),
     ("", "silence id is empty"), ("x" * (MAX_ID_LENGTH + 1), f"longer than {MAX_ID_LENGTH}"),
     ("a\rb", "control character")],
)
def test_check_id(value: str, problem: str | None) -> None:
    got = check_id(value, "silence id")
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_check_group_key_allows_long_quoted_keys_up_to_its_bound() -> None:
    assert check_group_key('{}/{}:{alertname="' + "x" * 10_000 + '"}') is None
    assert "longer than" in (check_group_key("k" * (MAX_GROUP_KEY_LENGTH + 1)) or "")
    assert "control character" in (check_group_key("{}:{a=\"\x00\"}") or "")


@given(st.text())
def test_no_check_ever_raises_and_all_answer_a_reason_or_none(text: str) -> None:
    for check in (check_org, check_fingerprint, check_id, check_group_key):
        got = check(text)
        assert got is None or (isinstance(got, str) and got and len(got) < 200)  # never echoes the text


@given(st.text(min_size=MAX_ORG_LENGTH + 1, max_size=10_000))
def test_no_long_text_is_an_organisation(text: str) -> None:
    assert check_org(text) is not None


@given(st.one_of(st.text(), st.text(min_size=900, max_size=12_000),
                 st.text(st.characters(min_codepoint=0x10000), min_size=150, max_size=400)))
def test_tokens_of_any_text_are_valid_and_bounded(text: str) -> None:
    tok = token(text)
    assert _TOKEN.fullmatch(tok) and len(tok) <= MAX_TOKEN
    assert tok not in ("*", ">")


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"))).filter(lambda t: check_org(t) is None))
def test_every_valid_organisation_keeps_its_readable_token(org: str) -> None:
    """Valid organisations are never digested: their subjects are those of older builds."""
    assert not token(org).startswith("~~")
