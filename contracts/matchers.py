"""Alertmanager label matchers: parsing, matching and rendering.

Parsing follows Alertmanager's default ("fallback") mode: the UTF-8 matcher grammar
(``{a="b", c=~"d.*"}``, braces optional, quoted names and values with Go escapes) is tried
first and the classic pkg/labels parser is used when the input is only valid classically,
or when both parse it differently (Alertmanager then trusts the classic result too).

Regular expressions are Go's RE2 syntax, compiled by RE2 itself (google-re2) as Alertmanager
compiles them, ``^(?:pattern)$``, so matching takes linear time whatever the pattern and the
text, and a pattern is refused where Go refuses it (the section "Go regexp" lists the limits
that differ).
"""

from __future__ import annotations

import enum
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2
from re2 import _re2  # the binding itself: its Match costs a quarter of re2's str wrapper

__all__ = [
    "GoRegex",
    "MatchType",
    "Matcher",
    "MatcherError",
    "compile_go_regex",
    "format_labelset",
    "format_matchers",
    "go_quote",
    "legacy_match",
    "matchers_match",
    "parse_matcher",
    "parse_matchers",
    "sort_matchers",
]


def _q(text: str) -> str:
    return go_quote(text)


class MatcherError(ValueError):
    """A matcher (or a regular expression in one) could not be parsed."""


class MatchType(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


# Alertmanager orders matchers by name, value, then type in this order.
_TYPE_ORDER = {MatchType.EQUAL: 0, MatchType.NOT_EQUAL: 1, MatchType.REGEX: 2, MatchType.NOT_REGEX: 3}


@dataclass(frozen=True)
class Matcher:
    """One label matcher. Its fields are all that ``==``, ``hash``, ``repr`` and msgspec see;
    the compiled regular expression is a cached attribute beside them."""

    name: str
    type: MatchType
    value: str

    def __post_init__(self) -> None:
        try:
            mtype = MatchType(self.type)
        except ValueError:
            raise MatcherError(f"unknown match type {self.type!r}, expected one of = != =~ !~") from None
        object.__setattr__(self, "type", mtype)
        compiled = compile_go_regex(self.value) if mtype in (MatchType.REGEX, MatchType.NOT_REGEX) else None
        object.__setattr__(self, "_re", compiled)

    @property
    def is_regex(self) -> bool:
        return self.type in (MatchType.REGEX, MatchType.NOT_REGEX)

    @property
    def is_equal(self) -> bool:
        """True for the positive forms (``=`` and ``=~``), as the v2 API's ``isEqual``."""
        return self.type in (MatchType.EQUAL, MatchType.REGEX)

    def matches_value(self, value: str) -> bool:
        if self.type is MatchType.EQUAL:
            return value == self.value
        if self.type is MatchType.NOT_EQUAL:
            return value != self.value
        compiled: GoRegex = self._re  # type: ignore[attr-defined]
        hit = compiled.match(value) is not None
        return hit if self.type is MatchType.REGEX else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher; a missing label counts as ``""``."""
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        if any(_is_reserved(ch) for ch in self.name):
            return f"{go_quote(self.name)}{self.type.value}{go_quote(self.value)}"
        return f'{self.name}{self.type.value}"{_openmetrics_escape(self.value)}"'

    def sort_key(self) -> tuple[str, str, int]:
        return (self.name, self.value, _TYPE_ORDER[self.type])

    def to_api(self) -> dict[str, Any]:
        """The API v2 form: ``{"name", "value", "isRegex", "isEqual"}``."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, name: str, value: str, is_regex: bool, is_equal: bool = True) -> Matcher:
        if is_regex:
            return cls(name, MatchType.REGEX if is_equal else MatchType.NOT_REGEX, value)
        return cls(name, MatchType.EQUAL if is_equal else MatchType.NOT_EQUAL, value)


def matchers_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def sort_matchers(matchers: Iterable[Matcher]) -> list[Matcher]:
    return sorted(matchers, key=Matcher.sort_key)


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """Alertmanager's ``labels.Matchers.String()``: ``{a="b",c=~"d"}`` in the given order."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def format_labelset(labels: Mapping[str, str]) -> str:
    """Prometheus' ``model.LabelSet.String()``: sorted, ``{a="1", b="2"}`` with Go quoting."""
    return "{" + ", ".join(f"{name}={go_quote(labels[name])}" for name in sorted(labels)) + "}"


# --------------------------------------------------------------------------- quoting


def _openmetrics_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_GO_SIMPLE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: double quotes, printable runes kept, others escaped."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():  # same classes as Go's unicode.IsPrint (L, M, N, P, S, ASCII space)
            out.append(ch)
        elif ch in _GO_SIMPLE_ESCAPES:
            out.append(_GO_SIMPLE_ESCAPES[ch])
        else:
            code = ord(ch)
            if code < 0x20 or code == 0x7F:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- UTF-8 parser

_RESERVED_PUNCT = frozenset("{}!=~,\\\"'`")


def _go_is_space(ch: str) -> bool:
    if ch in "\t\n\v\f\r \x85\xa0":
        return True
    return ord(ch) > 0xFF and unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def _is_reserved(ch: str) -> bool:
    return ch in _RESERVED_PUNCT or _go_is_space(ch)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "{", "}", ",", "op", "quoted", "unquoted", "eof"
    text: str
    start: int  # column (rune offset), as Alertmanager reports positions
    end: int


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{},":
            tokens.append(_Token(ch, ch, i, i + 1))
            i += 1
        elif ch in "=!":
            nxt = text[i + 1] if i + 1 < n else ""
            if ch == "!" and nxt not in ("=", "~"):
                raise MatcherError(_at(i, i + 1, f"{text[i : i + 2]}: expected one of '=~'"))
            op = ch + nxt if nxt in ("~", "=") and not (ch == "=" and nxt == "=") else ch
            tokens.append(_Token("op", op, i, i + len(op)))
            i += len(op)
        elif ch == '"':
            j = i + 1
            escaped = False
            while j < n:
                c = text[j]
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    break
                j += 1
            if j >= n:
                raise MatcherError(_at(i, n, f'{text[i:]}: missing end "'))
            tokens.append(_Token("quoted", text[i : j + 1], i, j + 1))
            i = j + 1
        elif _go_is_space(ch):
            i += 1
        elif not _is_reserved(ch):
            j = i
            while j < n and not _is_reserved(text[j]):
                j += 1
            tokens.append(_Token("unquoted", text[i:j], i, j))
            i = j
        else:
            raise MatcherError(_at(i, i + 1, f"{ch}: invalid input"))
    tokens.append(_Token("eof", "", n, n))
    return tokens


def _at(start: int, end: int, msg: str) -> str:
    return f"{start}:{end}: {msg}"


def _go_unquote(token: str) -> str:
    """Go's ``strconv.Unquote`` for a double-quoted literal, requiring valid UTF-8."""
    body = token[1:-1]
    if "\n" in body:
        raise ValueError("newline in quoted string")
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            raise ValueError("unescaped double quote")
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("trailing backslash")
        esc = body[i + 1]
        i += 2
        simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
        if esc in simple:
            out.append(simple[esc])
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i : i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f"invalid \\{esc} escape")
            i += width
            code = int(digits, 16)
            if esc == "x":
                out.append(code)
            else:
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise ValueError(f"invalid code point \\{esc}{digits}")
                out += chr(code).encode("utf-8")
        elif esc in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise ValueError("invalid octal escape")
            code = int(digits, 8)
            if code > 255:
                raise ValueError("octal escape out of range")
            out.append(code)
            i += 2
        else:
            raise ValueError(f"invalid escape \\{esc}")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("quoted string contains invalid UTF-8 code points") from None


def _token_text(tok: _Token) -> str:
    if tok.kind != "quoted":
        return tok.text
    try:
        return _go_unquote(tok.text)
    except ValueError:
        raise MatcherError(_at(tok.start, tok.end, f"{tok.text}: invalid input")) from None


_OPS = {"=": MatchType.EQUAL, "!=": MatchType.NOT_EQUAL, "=~": MatchType.REGEX, "!~": MatchType.NOT_REGEX}


def _parse_utf8(text: str) -> list[Matcher]:
    toks = _lex(text)
    pos = 0

    def peek() -> _Token:
        return toks[pos]

    def unexpected(tok: _Token, what: str) -> MatcherError:
        if tok.kind == "eof":
            return MatcherError(f"unexpected end of input, {what}")
        return MatcherError(_at(tok.start, tok.end, f"unexpected {tok.text}: {what}"))

    matchers: list[Matcher] = []
    has_open = peek().kind == "{"
    if has_open:
        pos += 1
    while peek().kind not in ("}", "eof"):
        name_tok = peek()
        if name_tok.kind not in ("quoted", "unquoted"):
            raise unexpected(name_tok, "expected label name")
        pos += 1
        op_tok = peek()
        if op_tok.kind != "op":
            raise unexpected(op_tok, "expected an operator such as '=', '!=', '=~' or '!~'")
        pos += 1
        value_tok = peek()
        if value_tok.kind not in ("quoted", "unquoted"):
            raise unexpected(value_tok, "expected label value")
        pos += 1
        name = _token_text(name_tok)
        if not name:
            raise MatcherError(_at(name_tok.start, name_tok.end, "label name must not be empty"))
        try:
            matchers.append(Matcher(name, _OPS[op_tok.text], _token_text(value_tok)))
        except MatcherError as exc:
            raise MatcherError(f"failed to create matcher: {exc}") from None
        sep = peek()
        if sep.kind == ",":
            pos += 1
        elif sep.kind not in ("}", "eof"):
            raise unexpected(sep, "expected a comma or close brace")
        else:
            break
    close = peek()
    if has_open:
        if close.kind != "}":
            raise MatcherError(f"0:{close.end}: unexpected end of input: expected close brace")
        pos += 1
    elif close.kind == "}":
        raise MatcherError(_at(close.start, close.end, "}: expected opening brace"))
    end = peek()
    if end.kind != "eof":
        raise MatcherError(_at(end.start, end.end, f"{end.text}: expected end of input"))
    return matchers


# --------------------------------------------------------------------------- classic parser

_CAPTURING = re2.Options()
_CAPTURING.log_errors = False
# Alertmanager's pkg/labels re (Go's \s is [\t\n\f\r ]), in RE2 for the same groups.
_CLASSIC_RE = re2.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$", _CAPTURING)


def _parse_classic_one(text: str) -> Matcher:
    m = _CLASSIC_RE.search(text)
    if m is None:
        raise MatcherError(f"bad matcher format: {text}")
    raw = m.group(3)
    expect_quote = raw.startswith('"')
    if expect_quote:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in ('"', "\\"):
                out.append(ch)
            else:  # a spurious escape keeps its backslash
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not expect_quote or i < last:
                raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
            expect_quote = False
        else:
            out.append(ch)
    if expect_quote:
        raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
    return Matcher(m.group(1), _OPS[m.group(2)], "".join(out))


def _parse_classic(text: str) -> list[Matcher]:
    text = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    buf: list[str] = []
    inside_quotes = escaped = False
    for ch in text:
        if ch == ",":
            if not inside_quotes:
                tokens.append("".join(buf))
                buf = []
                continue
        elif ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        buf.append(ch)
    tail = "".join(buf).strip()
    if tail:
        tokens.append(tail)
    return [_parse_classic_one(tok) for tok in tokens]


# --------------------------------------------------------------------------- public parsing


def parse_matchers(text: str) -> list[Matcher]:
    """Parse a comma-separated matcher list (braces optional) as Alertmanager does.

    An empty input (or ``{}``) yields no matchers.
    """
    try:
        utf8: list[Matcher] | None = _parse_utf8(text)
        utf8_error: MatcherError | None = None
    except MatcherError as exc:
        utf8, utf8_error = None, exc
    try:
        classic: list[Matcher] | None = _parse_classic(text)
    except MatcherError:
        classic = None
    if utf8 is None:
        if classic is None:
            raise MatcherError(f"invalid matchers {_q(text)}: {utf8_error}")
        return classic
    if classic is not None and classic != utf8:
        return classic  # Alertmanager keeps the classic reading on disagreement
    return utf8


def parse_matcher(text: str) -> Matcher:
    """Parse exactly one matcher (no braces), as amtool and the API do."""
    if text.startswith("{") or text.endswith("}"):
        raise MatcherError(f"unexpected open or close brace: {text}")
    try:
        found = _parse_utf8(text)
        if len(found) != 1:
            raise MatcherError("no matchers" if not found else f"expected 1 matcher, found {len(found)}")
        utf8: Matcher | None = found[0]
        utf8_error: MatcherError | None = None
    except MatcherError as exc:
        utf8, utf8_error = None, exc
    try:
        classic: Matcher | None = _parse_classic_one(text)
    except MatcherError:
        classic = None
    if utf8 is None:
        if classic is None:
            raise MatcherError(f"invalid matcher {_q(text)}: {utf8_error}")
        return classic
    if classic is not None and classic != utf8:
        return classic
    return utf8


_LEGACY_LABEL_NAME = "[a-zA-Z_][a-zA-Z0-9_]*"


def legacy_match(match: Mapping[str, str] | None, match_re: Mapping[str, str] | None = None) -> list[Matcher]:
    """Convert deprecated ``match``/``match_re`` maps to matchers, sorted as Alertmanager sorts.

    A ``match_re`` value keeps the anchored form Alertmanager stores (``^(?:v)$``), which is
    what appears in route keys and therefore in group keys.
    """
    out: list[Matcher] = []
    for name, value in (match or {}).items():
        _check_legacy_name(name)
        out.append(Matcher(name, MatchType.EQUAL, value))
    for name, value in (match_re or {}).items():
        _check_legacy_name(name)
        compile_go_regex(value)
        out.append(Matcher(name, MatchType.REGEX, f"^(?:{value})$"))
    return sort_matchers(out)


def _check_legacy_name(name: str) -> None:
    if not compile_go_regex(_LEGACY_LABEL_NAME).match(name):
        raise MatcherError(f"invalid label name {_q(name)}")


# --------------------------------------------------------------------------- Go regexp
#
# RE2 (C++) and Go's regexp/syntax are the same design: linear-time matching, the same
# syntax and the same refusals, with the few differences below handled here:
# - Go refuses ``\C`` (any byte) and capture names that are not ASCII ``[A-Za-z0-9_]``;
# - Go refuses a parse tree more than 1000 deep ("expression nests too deeply");
# - error messages are reworded to Go's (``missing closing )`` rather than ``missing )``).
# RE2 also refuses a program over its 8 MiB budget (``\pL{1000}``) that Go accepts: the
# budget keeps compile time and memory bounded, so that refusal stays.

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # refusals are reported as MatcherError, not on stderr
_RE2_OPTIONS.never_capture = True  # only "does it match" is asked: lets RE2 use its DFA

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)
_MAX_HEIGHT = 1000  # Go's regexp/syntax maxHeight

# RE2's error texts and Go's wording for the same ErrorCode.
_GO_WORDING = {
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
}


class GoRegex:
    """A compiled Go regular expression, matched as Alertmanager does: ``^(?:pattern)$``
    searched in the text, so in effect a full match. Matching takes linear time (RE2).

    ``match`` is ``None`` when there is no match (``True`` otherwise), so it reads like
    ``re.Pattern.match`` where only success is used.
    """

    __slots__ = ("_prog", "pattern")

    def __init__(self, pattern: str, prog: Any) -> None:
        self.pattern = pattern
        self._prog = prog

    def match(self, text: str) -> Literal[True] | None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: Go would hold U+FFFD there
            data = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text).encode("utf-8")
        return True if self._prog.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH else None

    @property
    def program_size(self) -> int:
        """RE2's instruction count, a measure of the memory this expression holds."""
        return int(self._prog.ProgramSize())

    def __repr__(self) -> str:
        return f"GoRegex({self.pattern!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # copy, deepcopy and pickle recompile
        return (compile_go_regex, (self.pattern,))


def _compile(pattern: str) -> GoRegex:
    wrapped = f"^(?:{pattern})$"  # Alertmanager's exact concatenation, quirks included
    try:
        prog = _re2.RE2(wrapped.encode("utf-8"), _RE2_OPTIONS)
    except UnicodeEncodeError:
        raise MatcherError(f"invalid regular expression {_q(pattern)}: invalid UTF-8") from None
    if not prog.ok():
        raise MatcherError(f"invalid regular expression {_q(pattern)}: {_go_message(prog.error(), wrapped)}")
    refusal = _go_only_refusal(wrapped)
    if refusal:
        raise MatcherError(f"invalid regular expression {_q(pattern)}: {refusal}")
    return GoRegex(pattern, prog)


def _go_message(error: bytes | str, wrapped: str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
    code, sep, arg = text.partition(": ")
    code = _GO_WORDING.get(code, code)
    if not sep or arg == wrapped:  # the whole expression is no help beside the quoted pattern
        return code
    if arg.endswith(")$") and wrapped.endswith(arg):
        arg = arg[:-2]  # runs to the end: drop the anchoring Alertmanager adds
    return f"{code}: `{arg}`"


@dataclass
class _Frame:
    capturing: bool
    height: int = 0  # of the finished branches
    branches: int = 1
    items: int = 0  # in the current branch
    branch_height: int = 0
    last: int = 0  # height of the last item (a repetition adds one to it)

    def add(self, height: int) -> None:
        self.items += 1
        self.last = height
        self.branch_height = max(self.branch_height, height)

    def repeat(self) -> None:
        self.last += 1
        self.branch_height = max(self.branch_height, self.last)

    def end_branch(self) -> None:
        self.height = max(self.height, self.branch_height + (self.items > 1))
        self.items = self.branch_height = self.last = 0

    def close(self) -> int:
        self.end_branch()
        return self.height + (self.branches > 1) + self.capturing


def _go_only_refusal(pat: str) -> str | None:
    """What Go refuses in a (wrapped) pattern RE2 accepted, so its syntax is known valid.

    The parse-tree height is an estimate of Go's (it merges literals and alternations of
    single characters), close enough for its limit of 1000.
    """
    stack = [_Frame(capturing=False)]
    i, n = 0, len(pat)
    after_repeat = False
    while i < n:
        ch = pat[i]
        top = stack[-1]
        was_repeat, after_repeat = after_repeat, False
        if ch == "\\":
            nxt = pat[i + 1]
            if nxt == "C":
                return "invalid escape sequence: `\\C`"
            if nxt == "Q":
                end = pat.find("\\E", i + 2)
                i = n if end < 0 else end + 2
            else:
                i = _escape_end(pat, i)
            top.add(1)
        elif ch == "[":
            i = _class_end(pat, i)
            top.add(1)
        elif ch == "(":
            if pat.startswith(("(?P<", "(?<"), i):
                start = pat.index("<", i) + 1
                end = pat.index(">", start)
                name = pat[start:end]
                if not name.isascii():
                    return f"invalid named capture: `{pat[i : end + 1]}`"
                stack.append(_Frame(capturing=True))
                i = end + 1
            elif pat.startswith("(?", i):
                end = i + 2
                while pat[end] not in ":)":
                    end += 1
                if pat[end] == ":":
                    stack.append(_Frame(capturing=False))
                i = end + 1  # "(?i)" only sets flags
            else:
                stack.append(_Frame(capturing=True))
                i += 1
        elif ch == ")":
            height = stack.pop().close()
            stack[-1].add(height)
            i += 1
        elif ch == "|":
            top.end_branch()
            top.branches += 1
            i += 1
        elif ch in "*+?" or (ch == "{" and _repeat_end(pat, i) > i):
            if not (ch == "?" and was_repeat):  # "*?" is one lazy repetition
                top.repeat()
                after_repeat = True
            i = _repeat_end(pat, i) if ch == "{" else i + 1
        else:
            top.add(1)
            i += 1
    if stack[0].close() > _MAX_HEIGHT:
        return "expression nests too deeply"
    return None


def _escape_end(pat: str, i: int) -> int:
    """Index after the (valid) escape at ``pat[i] == '\\'``."""
    nxt = pat[i + 1]
    if nxt in "pPx" and pat.startswith("{", i + 2):
        return pat.index("}", i + 2) + 1
    if nxt in "pP":
        return i + 3
    if nxt == "x":
        return i + 4
    return i + 2


def _class_end(pat: str, i: int) -> int:
    """Index after the (valid) bracket expression at ``pat[i] == '['``."""
    j = i + 1
    if pat.startswith("^", j):
        j += 1
    if pat.startswith("]", j):  # a leading "]" is literal
        j += 1
    while pat[j] != "]":
        if pat.startswith("[:", j) and ":]" in pat[j + 2 :]:
            j = pat.index(":]", j + 2) + 2
        elif pat[j] == "\\":
            j = _escape_end(pat, j)
        else:
            j += 1
    return j + 1


def _repeat_end(pat: str, i: int) -> int:
    """Index after a ``{n}``, ``{n,}`` or ``{n,m}`` at ``i``, or ``i`` when it is a literal brace."""
    close = pat.find("}", i)
    low, _, high = pat[i + 1 : close].partition(",")
    if close > 0 and _is_number(low) and (high == "" or _is_number(high)):
        return close + 1
    return i


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


# Compiled expressions shared by every Matcher with the same pattern. Bounded in count, and
# large programs (up to RE2's 8 MiB each) are not kept, so hostile patterns cannot pile up.
_CACHE: OrderedDict[str, GoRegex] = OrderedDict()
_CACHE_SIZE = 1024
_CACHE_MAX_PROGRAM = 4096
_CACHE_LOCK = threading.Lock()


def compile_go_regex(pattern: str) -> GoRegex:
    """Compile a Go RE2 pattern as Alertmanager does (``^(?:pattern)$``).

    Raises MatcherError naming the pattern and Go's reason when Go would refuse it.
    """
    with _CACHE_LOCK:
        hit = _CACHE.get(pattern)
        if hit is not None:
            _CACHE.move_to_end(pattern)
            return hit
    compiled = _compile(pattern)
    if compiled.program_size <= _CACHE_MAX_PROGRAM:
        with _CACHE_LOCK:
            _CACHE[pattern] = compiled
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return compiled
