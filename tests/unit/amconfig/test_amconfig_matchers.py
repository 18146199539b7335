"""Alertmanager matcher parsing, rendering and matching (contracts.matchers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.matchers import (
    Matcher,
    MatcherError,
    MatchType,
    compile_go_regex,
    format_labelset,
    format_matchers,
    go_quote,
    legacy_match,
    matchers_match,
    parse_matcher,
    parse_matchers,
    sort_matchers,
)

EQ, NE, RE, NRE = MatchType.EQUAL, MatchType.NOT_EQUAL, MatchType.REGEX, MatchType.NOT_REGEX

# --------------------------------------------------------------------------- parsing tables

VALID_LISTS = [
    ('{a="b", c=~"d.*"}', [("a", EQ, "b"), ("c", RE, "d.*")]),
    ('a=b,c!~"x"', [("a", EQ, "b"), ("c", NRE, "x")]),
    ("foo=bar", [("foo", EQ, "bar")]),
    ("  foo  =  bar  ", [("foo", EQ, "bar")]),
    ("{}", []),
    ("", []),
    ("{foo=bar,}", [("foo", EQ, "bar")]),
    ('{foo = "bar", dings != "bums", }', [("foo", EQ, "bar"), ("dings", NE, "bums")]),
    ('statuscode=~"5.."', [("statuscode", RE, "5..")]),
    ('quote="She said: \\"Hi, ladies!\\""', [("quote", EQ, 'She said: "Hi, ladies!"')]),
    ('"foo bar"="baz"', [("foo bar", EQ, "baz")]),
    ('föö="bär"', [("föö", EQ, "bär")]),
    ('a="x\\ny"', [("a", EQ, "x\ny")]),
    # Go escapes apply when only the UTF-8 parser accepts the input (quoted name)...
    ('"a b"="\\u00e9"', [("a b", EQ, "é")]),
    # ...otherwise the classic reading (a literal backslash) wins the disagreement.
    ('a="\\u00e9"', [("a", EQ, "\\u00e9")]),
    ('a=~"\\\\d+"', [("a", RE, "\\d+")]),
    ('a!="", b="1,2"', [("a", NE, ""), ("b", EQ, "1,2")]),
    ("service.name=api", [("service.name", EQ, "api")]),
    # Only the classic parser accepts these; Alertmanager falls back to it.
    ("foo=", [("foo", EQ, "")]),
    ("foo=~[a-z]+", [("foo", RE, "[a-z]+")]),
    ("foo=bar baz", [("foo", EQ, "bar baz")]),
    ("a==b", [("a", EQ, "=b")]),
    # Both parse; they disagree on "\t" and Alertmanager keeps the classic reading.
    ('foo="a\\tb"', [("foo", EQ, "a\\tb")]),
]


@pytest.mark.parametrize(("text", "expected"), VALID_LISTS, ids=[t for t, _ in VALID_LISTS])
def test_parse_matchers_valid(text: str, expected: list[tuple[str, MatchType, str]]) -> None:
    got = [(m.name, m.type, m.value) for m in parse_matchers(text)]
    assert got == expected


# Inputs that neither parser accepts (the classic fallback is very tolerant).
INVALID_LISTS = [
    ("a!b", "expected one of '=~'"),
    ('a=~"("', "missing closing )"),
    ('a="unterminated', 'missing end "'),
    ('{"a"=b} x', "expected end of input"),
    ("=b", "expected label name"),
    ('a=~"x**"', "nested repetition"),
    ('a=~"(?=x)"', "invalid or unsupported Perl syntax: `(?=`"),
    ('a=~"(a)\\\\1"', "invalid escape sequence: `\\1`"),
    ('a=~"\\\\p{Nope}"', "invalid character class range: `\\p{Nope}`"),
    ('"a b"="\\q"', "invalid input"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID_LISTS, ids=[t for t, _ in INVALID_LISTS])
def test_parse_matchers_invalid(text: str, fragment: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matchers(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


SINGLE = [
    ("foo=bar", ("foo", EQ, "bar")),
    ('foo!~"a|b"', ("foo", NRE, "a|b")),
    # No comma splitting for one matcher: the classic reading keeps the whole value.
    ("a=b,c=d", ("a", EQ, "b,c=d")),
]


@pytest.mark.parametrize(("text", "expected"), SINGLE, ids=[t for t, _ in SINGLE])
def test_parse_matcher_single(text: str, expected: tuple[str, MatchType, str]) -> None:
    m = parse_matcher(text)
    assert (m.name, m.type, m.value) == expected


@pytest.mark.parametrize(
    "text", ["{foo=bar}", "{foo=bar", "", "   ", "foo"], ids=["braces", "brace", "empty", "blank", "noop"]
)
def test_parse_matcher_rejects(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(text)


# --------------------------------------------------------------------------- rendering

RENDER = [
    (Matcher("foo", EQ, "bar"), 'foo="bar"'),
    (Matcher("foo", RE, "a.*"), 'foo=~"a.*"'),
    (Matcher("foo", NE, 'say "hi"\n\\'), 'foo!="say \\"hi\\"\\n\\\\"'),
    (Matcher("foo bar", NRE, "x"), '"foo bar"!~"x"'),
    (Matcher("a=b", EQ, "tab\there"), '"a=b"="tab\\there"'),
    (Matcher("é", EQ, "ü"), 'é="ü"'),
]


@pytest.mark.parametrize(("matcher", "text"), RENDER, ids=[t for _, t in RENDER])
def test_str_renders_like_alertmanager(matcher: Matcher, text: str) -> None:
    assert str(matcher) == text


def test_format_and_sort_matchers() -> None:
    ms = [Matcher("b", EQ, "1"), Matcher("a", RE, "x"), Matcher("a", EQ, "x"), Matcher("a", EQ, "w")]
    assert format_matchers(sort_matchers(ms)) == '{a="w",a="x",a=~"x",b="1"}'
    assert format_matchers([]) == "{}"


GO_QUOTE = [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("\n\t\r\a\b\f\v", '"\\n\\t\\r\\a\\b\\f\\v"'),
    ("\x00\x7f", '"\\x00\\x7f"'),
    ("é😀", '"é😀"'),
    ("\u00a0\u200b", '"\\u00a0\\u200b"'),
    ("\U000e0001", '"\\U000e0001"'),
]


@pytest.mark.parametrize(("text", "quoted"), GO_QUOTE, ids=[q for _, q in GO_QUOTE])
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_format_labelset_sorts_and_quotes() -> None:
    assert format_labelset({"b": "2", "a": 'x"y'}) == '{a="x\\"y", b="2"}'
    assert format_labelset({}) == "{}"


# --------------------------------------------------------------------------- matching

MATCHING = [
    (Matcher("a", EQ, "1"), {"a": "1"}, True),
    (Matcher("a", EQ, "1"), {"a": "2"}, False),
    (Matcher("a", EQ, ""), {}, True),  # a missing label is the empty string
    (Matcher("a", NE, "1"), {}, True),
    (Matcher("a", NE, ""), {}, False),
    (Matcher("a", RE, "1|2"), {"a": "2"}, True),
    (Matcher("a", RE, "1|2"), {"a": "12"}, False),  # anchored
    (Matcher("a", RE, "b"), {"a": "abc"}, False),
    (Matcher("a", RE, ".*"), {}, True),
    (Matcher("a", RE, ".+"), {}, False),
    (Matcher("a", NRE, "prod.*"), {"a": "production"}, False),
    (Matcher("a", NRE, "prod.*"), {"a": "staging"}, True),
    (Matcher("a", RE, "foo"), {"a": "foo\n"}, False),  # Go's $ is end of text
    (Matcher("a", RE, "\\d+"), {"a": "١٢"}, False),  # Go's \d is ASCII only
    (Matcher("a", RE, "(?i)ERROR"), {"a": "error"}, True),
    (Matcher("a", RE, "[[:upper:]]+"), {"a": "ABC"}, True),
    (Matcher("a", RE, "[[:upper:]]+"), {"a": "AbC"}, False),
    (Matcher("a", RE, "\\Qa.b\\E"), {"a": "axb"}, False),
    (Matcher("a", RE, "\\Qa.b\\E"), {"a": "a.b"}, True),
    (Matcher("a", RE, "x{,2}"), {"a": "x{,2}"}, True),  # not a repeat in Go: literal
    (Matcher("a", RE, "a(?i)b|c"), {"a": "C"}, True),  # flags run to the end of the group
    (Matcher("a", RE, "a(?i)b|c"), {"a": "AB"}, False),
    (Matcher("a", RE, "^(?:^(foo|bar)$)$"), {"a": "bar"}, True),  # legacy match_re form
]


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"), MATCHING, ids=[f"{m}-{sorted(lb.items())}" for m, lb, _ in MATCHING]
)
def test_matches(matcher: Matcher, labels: dict[str, str], expected: bool) -> None:
    assert matcher.matches(labels) is expected


def test_matchers_match_requires_all() -> None:
    ms = parse_matchers('{a="1", b=~"x|y"}')
    assert matchers_match(ms, {"a": "1", "b": "y"})
    assert not matchers_match(ms, {"a": "1", "b": "z"})
    assert matchers_match([], {"anything": "goes"})


def test_legacy_match_converts_and_anchors() -> None:
    ms = legacy_match({"severity": "critical"}, {"service": "foo|bar"})
    assert ms == [Matcher("service", RE, "^(?:foo|bar)$"), Matcher("severity", EQ, "critical")]
    assert ms[0].matches({"service": "bar"})
    assert not ms[0].matches({"service": "foobar"})


@pytest.mark.parametrize(
    ("match", "match_re"),
    [({"bad-name": "x"}, {}), ({}, {"1x": "y"}), ({}, {"a": "("})],
    ids=["dash", "digit", "regex"],
)
def test_legacy_match_rejects(match: dict[str, str], match_re: dict[str, str]) -> None:
    with pytest.raises(MatcherError):
        legacy_match(match, match_re)


def test_api_form_round_trip() -> None:
    for m in (Matcher("a", EQ, "1"), Matcher("a", NE, "1"), Matcher("a", RE, "1"), Matcher("a", NRE, "1")):
        api = m.to_api()
        assert Matcher.from_api(api["name"], api["value"], api["isRegex"], api["isEqual"]) == m


def test_unknown_type_rejected() -> None:
    with pytest.raises(MatcherError):
        Matcher("a", "==", "b")  # type: ignore[arg-type]


def test_type_accepts_plain_strings() -> None:
    assert Matcher("a", "=~", "b") == Matcher("a", RE, "b")  # type: ignore[arg-type]


GO_REGEX_REJECTED = ["(?x)a", "a++", "a{1001}", "[[:nope:]]", "\\8", "(?P=n)", "x\\"]


@pytest.mark.parametrize("pattern", GO_REGEX_REJECTED, ids=GO_REGEX_REJECTED)
def test_go_regex_rejects_what_re2_rejects(pattern: str) -> None:
    with pytest.raises(MatcherError):
        compile_go_regex(pattern)


# --------------------------------------------------------------------------- properties

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
values = st.text(st.characters(codec="utf-8"), max_size=12)
label_sets = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "x", "y", "xy"]), max_size=3)

_GO_META = set("\\.+*?()|[]{}^$")


def go_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GO_META else ch for ch in text)


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    mtype = draw(st.sampled_from(list(MatchType)))
    value = draw(values)
    if mtype in (RE, NRE):
        value = draw(st.sampled_from([go_escape(value), ".*", "a|b", "[0-9]+", "(?i)x.y"]))
    return Matcher(draw(names), mtype, value)


@settings(max_examples=300)
@given(matchers())
def test_parse_of_str_round_trips(m: Matcher) -> None:
    assert parse_matcher(str(m)) == m


@settings(max_examples=150)
@given(st.lists(matchers(), max_size=4))
def test_parse_of_formatted_list_round_trips(ms: list[Matcher]) -> None:
    assert parse_matchers(format_matchers(ms)) == ms


@given(st.sampled_from(["a", "b", "c"]), st.sampled_from(["", "x", "x|y", ".*"]), label_sets)
def test_negative_types_are_complements(name: str, value: str, labels: dict[str, str]) -> None:
    assert Matcher(name, EQ, value).matches(labels) != Matcher(name, NE, value).matches(labels)
    assert Matcher(name, RE, value).matches(labels) != Matcher(name, NRE, value).matches(labels)


@given(values, values.filter(bool))
def test_regex_is_anchored(literal: str, extra: str) -> None:
    m = Matcher("a", RE, go_escape(literal))
    assert m.matches({"a": literal})
    assert not m.matches({"a": literal + extra})
    assert not m.matches({"a": extra + literal})


def test_msgspec_round_trip_and_validation() -> None:
    import msgspec

    m = Matcher("a", RE, "b.*")
    assert msgspec.json.encode(m) == b'{"name":"a","type":"=~","value":"b.*"}'
    back = msgspec.json.decode(msgspec.json.encode(m), type=Matcher)
    assert back == m and back.matches({"a": "bcd"})
    with pytest.raises(msgspec.ValidationError, match="invalid regular expression"):
        msgspec.json.decode(b'{"name":"a","type":"=~","value":"("}', type=Matcher)
