"""Subjects made from user text are valid and bounded by construction (pipeline.foundation.runtime.subjects).

nats-server closes the connection on a control line over 4 KiB (``maximum control line
exceeded``), and every stage shares that connection: no text may make a longer subject.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ids import check_org
from pipeline.foundation.runtime.subjects import (
    KEY_HEADER,
    MAX_KEY_CHARS,
    MAX_TOKEN,
    StreamNames,
    decode_key,
    encode_key,
    key_filter,
    state_headers,
    token,
)

NAMES = StreamNames("sends")
_TOKEN = re.compile(r"[A-Za-z0-9_~-]+")
# A state subject: prefix (tocsin.sends.state.<p>.) + at most MAX_KEY_CHARS; with HPUB, a
# reply subject and sizes, or $JS.API.DIRECT.GET.<stream>., far below nats-server's 4096.
SUBJECT_BOUND = len("tocsin.sends.state.1023.") + MAX_KEY_CHARS
assert SUBJECT_BOUND < 4096 - 200

_part = st.one_of(st.text(max_size=30), st.text(min_size=200, max_size=3000),
                  st.sampled_from(["", "acme", "*", ">", "a.b", "a b", "\n", "~", "~YQ", "_"]))
_key = st.one_of(st.lists(_part, min_size=1, max_size=8).map("/".join),
                 st.text(max_size=10_000),
                 st.integers(1, 5000).map(lambda n: "res/acme/" + "a/" * n),
                 st.integers(100, 10_000).map(lambda n: "res/acme/device/" + "x" * n))


def _valid_subject(subject: str) -> bool:
    return all(_TOKEN.fullmatch(t) for t in subject.split(".")[4:]) and " " not in subject


@given(_key, st.integers(0, 1023))
def test_any_key_makes_a_valid_subject_within_the_bound(key: str, p: int) -> None:
    subject = NAMES.state(p, key)
    assert _valid_subject(subject)
    assert len(subject.encode()) <= SUBJECT_BOUND


@given(_key)
def test_any_key_round_trips_with_the_header_its_writer_adds(key: str) -> None:
    subject = NAMES.state(3, key)
    headers = state_headers(subject, key, {"Nats-Rollup": "sub"})
    assert headers["Nats-Rollup"] == "sub"
    assert NAMES.key_of_state_subject(subject, headers) == key
    if KEY_HEADER not in headers:  # within the bound: the subject alone says it
        assert NAMES.key_of_state_subject(subject) == key == decode_key(encode_key(key))


@given(st.lists(_part, min_size=1, max_size=6).map("/".join).filter(lambda k: len(k) <= 300))
def test_short_keys_are_not_digested_and_carry_no_header(key: str) -> None:
    subject = NAMES.state(0, key)
    if len(encode_key(key)) < MAX_KEY_CHARS:
        assert "~" not in subject and state_headers(subject, key, {}) == {}
        assert NAMES.key_of_state_subject(subject) == key


def test_keys_of_valid_organisations_keep_the_subjects_of_older_builds() -> None:
    import base64

    def old(key: str) -> str:
        return ".".join(base64.urlsafe_b64encode(p.encode()).decode().rstrip("=") or "_" for p in key.split("/"))

    org = "\U0001f600" * 150  # the longest valid organisation, in UTF-8 bytes
    for key in (f"alert/{org}/0123456789abcdef", f"group/{token(org)}/0123456789abcdef/a",
                f"nflog/{org}/0123456789abcdef/{'r' * 200}/webhook/0", "silence/acme/4f1c5a0e-0c2b"):
        assert encode_key(key) == old(key)


@given(_key, _key)
def test_different_keys_get_different_subjects(a: str, b: str) -> None:
    if a != b:
        assert NAMES.state(0, a) != NAMES.state(0, b)


@given(st.sampled_from(["alert", "silence", "group"]),
       st.text(min_size=1, max_size=150).filter(lambda o: not check_org(o)), _key)
def test_a_family_and_organisation_prefix_always_selects_its_keys(family: str, org: str, rest: str) -> None:
    flt = NAMES.state_filter(2, family, org)
    subject = NAMES.state(2, f"{family}/{org}/{rest}")
    assert flt.endswith(".>") and subject.startswith(flt[:-1]) and len(subject) > len(flt) - 1
    other = NAMES.state(2, f"{family}x/{org}/{rest}")
    assert not other.startswith(flt[:-1])


def test_a_prefix_too_long_to_be_kept_cannot_be_a_filter() -> None:
    with pytest.raises(ValueError, match="too long"):
        key_filter("res", "x" * 5000)


@given(st.one_of(st.text(), st.text(min_size=1000, max_size=10_000)))
def test_tokens_are_valid_and_bounded(text: str) -> None:
    tok = token(text)
    assert _TOKEN.fullmatch(tok) and len(tok) <= MAX_TOKEN


@pytest.mark.parametrize("text", ["abc\n", "a.b", "a b", "*", ">", "", "x" * 65, "o" * 4000])
def test_tokens_of_unsafe_text_are_encoded(text: str) -> None:
    tok = token(text)
    assert tok != text and _TOKEN.fullmatch(tok)


def test_token_forms_never_collide() -> None:
    texts = ["a", "~YQ", "YQ", "a.", "x" * 5000, "x" * 5001, "~~" + "A" * 24]
    assert len({token(t) for t in texts}) == len(texts)
