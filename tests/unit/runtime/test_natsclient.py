"""Our header parser against nats-py's: the same dict for every header block."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsPyClient

from pipeline.foundation.runtime.natsclient import Client

original = NatsPyClient._parse_header_lines
ours = Client._parse_header_lines


def test_the_override_is_what_the_client_calls() -> None:
    # nats-py calls it as self._parse_header_lines(...), and only without fast_mail_parser.
    import nats.aio.client

    assert nats.aio.client.parse_email is None
    assert Client()._parse_header_lines is ours
    assert ours is not original


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", {}),
    (b"\r\n", {}),
    (b"\r\n\r\n", {}),
    (b"Nats-Msg-Id: a:1:0\r\nTocsin-Time: 1718000000.5\r\n\r\n",
     {"Nats-Msg-Id": "a:1:0", "Tocsin-Time": "1718000000.5"}),
    (b"A:1", {"A": "1"}),
    (b"A:\t 1 \t", {"A": "1"}),
    (b"A: b: c", {"A": "b: c"}),
    (b"A: 1\r\nA: 2", {"A": "2"}),
    (b"no colon\r\nA: 1", {"A": "1"}),
    (b": v", {"": "v"}),
    (b" \t: v", {"": "v"}),
    (b"\x0b\x0c:v", {"": "v"}),
    (b"A:", {"A": ""}),
    (b"  A  : 1", {"A": "1"}),
    (b"A B: 1", {}),
    (b"A\tB: 1", {}),
    (b"\x1cA: 1", {}),
    (b"A\x1f: 1", {}),
    (b"\x1c: 1", {}),
    (b"A\x00\x7f: 1", {"A\x00\x7f": "1"}),
    (b"A\x01: 1", {"A\x01": "1"}),
    (b"\nA: 1\r", {"A": "1"}),
    (b"A\rB: 1", {}),
    (b"A\nB: 1\nC: 2", {}),
    (b"A: 1\nB: 2", {"A": "1\nB: 2"}),
    (b"A: \x1c1\x1d", {"A": "\x1c1\x1d"}),
    (b"A: \xc2\xa01\xc2\x85", {"A": "\xa01\x85"}),
    (b"A: caf\xc3\xa9", {"A": "caf\xe9"}),
    (b"A: \xff\xfe", {"A": "\ufffd\ufffd"}),
    (b"A: \xe2\x82", {"A": "\ufffd"}),
    (b"A: \xe2\x82\r\nB: 1", {"A": "\ufffd", "B": "1"}),
    (b"A: \xed\xa0\x80", {"A": "\ufffd\ufffd\ufffd"}),
    (b"Caf\xc3\xa9: 1", {}),
    (b"\xe2\x82: 1", {}),
    (b"\xc2\xa0A: 1", {}),
], ids=[
    "empty", "crlf", "two-crlf", "stage-headers", "no-space", "tabs-around-value", "colon-in-value",
    "last-duplicate-wins", "line-without-colon", "empty-name", "blank-name", "vt-ff-name", "empty-value",
    "spaces-around-name", "space-in-name", "tab-in-name", "leading-fs-in-name", "trailing-us-in-name",
    "name-only-fs", "nul-del-in-name", "control-char-in-name", "bare-lf-cr-around-name", "bare-cr-in-name",
    "bare-lf-in-name", "bare-lf-in-value", "fs-gs-kept-in-value", "nbsp-nel-kept-in-value", "utf8-value",
    "invalid-utf8-value", "truncated-utf8-value", "truncated-utf8-then-line", "surrogate-utf8-value",
    "non-ascii-name", "invalid-utf8-name", "nbsp-before-name",
])
def test_edge_cases(raw: bytes, expected: dict[str, str]) -> None:
    assert original(raw) == expected  # the table describes nats-py's behaviour
    assert ours(raw) == expected


_PIECES = [
    b"Nats-Msg-Id", b"A", b"b-c", b"traceparent", b":", b": ", b" ", b"\t", b"\x0b", b"\x0c",
    b"\x1c", b"\x1d", b"\x1e", b"\x1f", b"\x00", b"\x7f", b"\x85", b"\xa0", b"\xc2\x85", b"\xc2\xa0",
    b"\xc3\xa9", b"\xe2\x80\x83", b"\xe2\x82", b"\xff", b"\xed\xa0\x80", b"\xf0\x9f\x94\x94",
    b"\r\n", b"\r", b"\n", b"\r\n\r\n", b"1", b"xyz",
]
_header_like = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=4)), max_size=30).map(b"".join)


@settings(max_examples=2000)
@given(_header_like)
@example(b"\x1c\xe2\x82:\xe2\x82 \x1c\r\n:")
def test_same_as_nats_py_on_header_like_bytes(raw: bytes) -> None:
    assert ours(raw) == original(raw)


@given(st.binary())
def test_same_as_nats_py_on_any_bytes(raw: bytes) -> None:
    assert ours(raw) == original(raw)


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=6))
def test_same_as_nats_py_on_any_text(pairs: list[tuple[str, str]]) -> None:
    raw = "".join(f"{k}:{v}\r\n" for k, v in pairs).encode("utf-8", "surrogatepass")
    assert ours(raw) == original(raw)
