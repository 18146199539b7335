"""Regular expressions in matchers follow Go's RE2, not Python's ``re`` (issue #27, item 2).

Each row says what Go's regexp (as Alertmanager compiles it, ``^(?:pattern)$``) does with a
pattern where Python's ``re`` would differ: refuse it, or match other texts. Then a ReDoS
property: classic catastrophic patterns stay linear on adversarial inputs.
"""

from __future__ import annotations

import copy
import pickle
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.matchers import GoRegex, Matcher, MatcherError, MatchType, compile_go_regex, parse_matchers
from pipeline.foundation.amconfig import ConfigError, load_config_text

# (id, pattern, Go's refusal fragment or None, [(text, matches)]); where Python's re
# differs is said in the id.
SYNTAX = [
    ("z-lower-is-end-of-text", r"a\z", None, [("a", True), ("a\n", False)]),
    ("Z-upper-refused", r"a\Z", "invalid escape sequence: `\\Z`", []),
    ("dollar-not-before-trailing-newline", "a$", None, [("a", True), ("a\n", False)]),
    ("dot-no-newline", "a.c", None, [("abc", True), ("a\nc", False), ("aéc", True)]),
    ("dot-newline-with-s", "(?s)a.c", None, [("a\nc", True)]),
    ("named-group-P", "(?P<n>a+)", None, [("aa", True), ("b", False)]),
    ("named-group-angle", "(?<n>a)", None, [("a", True)]),
    ("named-group-digit-first", "(?P<1x>a)", None, [("a", True)]),
    ("named-group-non-ascii-refused", "(?P<é>a)", "invalid named capture", []),
    ("lookahead-refused", "(?=x)x", "invalid or unsupported Perl syntax: `(?=`", []),
    ("negative-lookahead-refused", "(?!x).", "invalid or unsupported Perl syntax: `(?!`", []),
    ("lookbehind-refused", "(?<=x)y", "invalid or unsupported Perl syntax: `(?<=`", []),
    ("backreference-refused", r"(a)\1", "invalid escape sequence: `\\1`", []),
    ("named-backreference-refused", "(?P<n>a)(?P=n)", "invalid or unsupported Perl syntax", []),
    ("possessive-refused", "a*+", "invalid nested repetition operator: `*+`", []),
    ("atomic-group-refused", "(?>a)", "invalid or unsupported Perl syntax: `(?>`", []),
    ("comment-group-refused", "(?#c)a", "invalid or unsupported Perl syntax", []),
    ("verbose-flag-refused", "(?x)a", "invalid or unsupported Perl syntax", []),
    ("unicode-class-letter", r"\pL+", None, [("été", True), ("a1", False)]),
    ("unicode-class-script", r"\p{Greek}+", None, [("λόγος", True), ("logos", False)]),
    ("unicode-class-negated", r"\PL", None, [("1", True), ("a", False)]),
    ("unicode-class-unknown-refused", r"\p{Nope}", "invalid character class range", []),
    ("posix-class", "[[:alpha:]]+", None, [("abc", True), ("é", False), (":", False)]),
    ("posix-class-negated", "[[:^digit:]]", None, [("x", True), ("5", False)]),
    ("posix-class-unknown-refused", "[[:nope:]]", "invalid character class range", []),
    ("ungreedy-flag", "(?U)a+", None, [("aaa", True)]),
    ("ungreedy-flag-swaps-laziness", "(?U)(a+?)a", None, [("aaa", True)]),
    ("any-byte-refused", r"\C", "invalid escape sequence: `\\C`", []),
    ("quoted-literal", r"\Q.*\E", None, [(".*", True), ("ab", False)]),
    ("hex-brace-escape", r"\x{263a}", None, [("☺", True)]),
    ("flags-mid-pattern", "a(?i)b", None, [("aB", True), ("AB", False)]),
    ("flags-empty-group", "(?)a", None, [("a", True)]),
    ("digit-is-ascii", r"\d", None, [("5", True), ("\u0665", False)]),  # ARABIC-INDIC DIGIT FIVE
    ("word-is-ascii", r"\w", None, [("a", True), ("é", False)]),
    ("space-has-no-vertical-tab", r"\s", None, [(" ", True), ("\v", False)]),
    ("repeat-over-1000-refused", "a{1001}", "invalid repeat count: `{1001}`", []),
    ("brace-not-a-repeat-is-literal", "a{,2}", None, [("a{,2}", True), ("aa", False)]),
    ("nested-repeat-refused", "a**", "invalid nested repetition operator: `**`", []),
    ("octal-escape", r"\101", None, [("A", True)]),
    ("escape-8-refused", r"\8", "invalid escape sequence: `\\8`", []),
    ("unknown-escape-refused", r"\e", "invalid escape sequence", []),
    ("missing-paren", "(a", "missing closing )", []),
    ("unexpected-paren", "a)", "unexpected )", []),
    # Alertmanager concatenates "^(?:" + pattern + ")$": a stray ")(" splits the anchors.
    ("alertmanager-concatenation", "a)|(b", None, [("ax", True), ("xb", True), ("x", False)]),
    ("nesting-over-1000-refused", "(" * 1001 + ")" * 1001, "expression nests too deeply", []),
    ("deep-non-capturing-accepted", "(?:" * 2000 + "a" + ")" * 2000, None, [("a", True)]),
]


@pytest.mark.parametrize(("pattern", "refusal", "cases"), [row[1:] for row in SYNTAX], ids=[row[0] for row in SYNTAX])
def test_go_syntax(pattern: str, refusal: str | None, cases: list[tuple[str, bool]]) -> None:
    if refusal is not None:
        with pytest.raises(MatcherError, match="invalid regular expression") as info:
            compile_go_regex(pattern)
        assert refusal in str(info.value)
        with pytest.raises(MatcherError):  # the same refusal wherever a matcher is made
            Matcher("a", MatchType.REGEX, pattern)
        return
    rx = compile_go_regex(pattern)
    for text, expected in cases:
        assert (rx.match(text) is not None) is expected, text
        assert Matcher("a", MatchType.REGEX, pattern).matches({"a": text}) is expected
        assert Matcher("a", MatchType.NOT_REGEX, pattern).matches({"a": text}) is not expected


def test_refusal_in_a_matcher_list_names_the_pattern() -> None:
    with pytest.raises(MatcherError) as info:
        parse_matchers('{a="b", c=~"(?=x)"}')
    assert 'invalid regular expression "(?=x)": invalid or unsupported Perl syntax' in str(info.value)


REFUSED_IN_CONFIG = [
    ("route-matchers", "route:\n  receiver: r\n  routes:\n    - matchers: ['a=~\"(?=x)\"']\n",
     'am.yml:4: route.routes[0].matchers[0]: invalid matchers "a=~\\"(?=x)\\"": failed to create matcher: '
     'invalid regular expression "(?=x)": invalid or unsupported Perl syntax: `(?=`'),
    ("route-match-re", "route:\n  receiver: r\n  routes:\n    - match_re:\n        a: 'x\\C'\n",
     'am.yml:5: route.routes[0].match_re.a: invalid regular expression "x\\\\C": invalid escape sequence: `\\C`'),
    ("inhibit-matchers", "route:\n  receiver: r\ninhibit_rules:\n  - source_matchers: ['a=~\"(a)\\\\1\"']\n",
     "am.yml:4: inhibit_rules[0].source_matchers[0]"),
]


@pytest.mark.parametrize(("text", "expected"), [row[1:] for row in REFUSED_IN_CONFIG],
                         ids=[row[0] for row in REFUSED_IN_CONFIG])
def test_refusal_is_a_config_error_with_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text + "receivers:\n  - name: r\n", "am.yml")
    (error,) = info.value.errors
    assert error.startswith(expected) and "invalid regular expression" in error, error


def test_lone_surrogate_matches_as_replacement_character() -> None:
    # Go's JSON decoding turns a lone surrogate into U+FFFD; nothing here raises on one.
    assert compile_go_regex("a.b").match("a\ud800b")
    with pytest.raises(MatcherError, match="invalid UTF-8"):
        compile_go_regex("\ud800")


def test_compiled_regex_copies_and_pickles() -> None:
    rx = compile_go_regex("x+")
    assert isinstance(rx, GoRegex) and compile_go_regex("x+") is rx  # cached
    for other in (copy.copy(rx), copy.deepcopy(rx), pickle.loads(pickle.dumps(rx))):
        assert other.pattern == "x+" and other.match("xx") and not other.match("y")
    m = Matcher("a", MatchType.REGEX, "x+")
    assert copy.deepcopy(m) == m and copy.deepcopy(m).matches({"a": "xxx"})


# --------------------------------------------------------------------------- ReDoS

# Catastrophic for a backtracking engine, with the input family that triggers it. Python's
# re (``\A(?:p)\Z``) on this machine: (a+)+$ on 24 "a" + "!" 0.9 s, (.*.*)*x on the issue's
# "ip-10-0-0-1.ec2." (16 chars) 36 s, (a|aa)*b on 32 "a" 0.8 s, (x+x+)+y on 22 "x" 0.2 s,
# each doubling (or so) per extra character. RE2 takes linear time: well under a
# millisecond per thousand characters.
CATASTROPHIC = [
    (r"(a+)+$", "a", "!"),
    (r"(.*.*)*x", "ip-10-0-0-1.ec2.", ""),
    (r"(a|aa)*b", "a", ""),
    (r"(x+x+)+y", "x", ""),
    (r"(a|a?)+b", "a", "c"),
    (r"(\w+\s?)*$", "word ", "!"),
    (r"(([a-z])+.)+[A-Z]([a-z])+", "aaaa.", "!"),
    (r"^(\d+)*$", "1", "x"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CATASTROPHIC), st.integers(min_value=1, max_value=10_000))
def test_catastrophic_patterns_match_in_linear_time(case: tuple[str, str, str], length: int) -> None:
    pattern, unit, tail = case
    text = (unit * (length // len(unit) + 1))[:length] + tail
    rx = compile_go_regex(pattern)
    started = time.perf_counter()
    hit = rx.match(text)
    elapsed = time.perf_counter() - started
    assert hit is None
    assert elapsed < 0.5, f"{pattern} on {len(text)} chars took {elapsed:.3f} s"


def test_matching_time_grows_linearly() -> None:
    # Doubling the input roughly doubles the time (backtracking would square or worse).
    rx = compile_go_regex("(.*.*)*x")

    def cost(n: int) -> float:
        text = ("ip-10-0-0-1.ec2." * (n // 16 + 1))[:n]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            rx.match(text)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(20_000), cost(160_000)
    assert large < small * 8 * 4 + 0.01  # 8x the input: allow 4x noise over linear
