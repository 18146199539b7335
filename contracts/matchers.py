"""Alertmanager label matchers: parsing, matching and rendering.

Parsing follows Alertmanager's default ("fallback") mode: the UTF-8 matcher grammar
(``{a="b", c=~"d.*"}``, braces optional, quoted names and values with Go escapes) is tried
first and the classic pkg/labels parser is used when the input is only valid classically,
or when both parse it differently (Alertmanager then trusts the classic result too).

Regular expressions are Go RE2 syntax anchored as ``^(?:...)$``. They are translated to
Python's ``re`` dialect where the two differ (``\\d``/``\\w``/``\\s`` are ASCII, ``$`` is end
of text, POSIX classes, ``\\z``, ``\\Q...\\E``, flags anywhere) and rejected where RE2 would
reject them (backreferences, lookaround) so a config valid here is valid in Alertmanager.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
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
        compiled: re.Pattern[str] = self._re  # type: ignore[attr-defined]
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

_CLASSIC_RE = re.compile(
    r"[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*",
    re.DOTALL,
)


def _parse_classic_one(text: str) -> Matcher:
    m = _CLASSIC_RE.fullmatch(text)
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


_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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
    if not _LEGACY_LABEL_NAME.fullmatch(name):
        raise MatcherError(f"invalid label name {_q(name)}")


# --------------------------------------------------------------------------- Go regexp


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
# Perl classes in Go are ASCII-only, unlike Python's Unicode defaults.
_PERL_CLASSES = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}
_GO_FLAGS = frozenset("imsU")


class _GoRegexError(Exception):
    pass


@dataclass
class _Group:
    flags: set[str]
    scopes: list[str]  # flag groups "(?i:" opened inside this group, closed with it


def _translate_go_regex(pat: str) -> str:
    out: list[str] = []
    stack: list[_Group] = [_Group(set(), [])]
    i, n = 0, len(pat)
    # 0: nothing to repeat-check, 1: just after a repetition, 2: after its lazy "?"
    rep = 0
    while i < n:
        ch = pat[i]
        last_rep, rep = rep, 0
        if ch == "\\":
            i, text = _translate_escape(pat, i, in_class=False)
            out.append(text)
        elif ch == "[":
            i, text = _translate_class(pat, i)
            out.append(text)
        elif ch == "(":
            i = _open_group(pat, i, out, stack)
        elif ch == ")":
            if len(stack) == 1:
                raise _GoRegexError("unexpected )")
            grp = stack.pop()
            out.append(")" * len(grp.scopes) + ")")
            i += 1
        elif ch == "|":
            cur = stack[-1]
            out.append(")" * len(cur.scopes) + "|" + "".join(cur.scopes))
            i += 1
        elif ch == "$":
            out.append("$" if "m" in stack[-1].flags else r"\Z")
            i += 1
        elif ch in "*+":
            if last_rep:
                raise _GoRegexError(f"invalid nested repetition operator: `{pat[max(0, i - 1) : i + 1]}`")
            out.append(ch)
            rep = 1
            i += 1
        elif ch == "?":
            if last_rep == 2:
                raise _GoRegexError(f"invalid nested repetition operator: `{pat[max(0, i - 1) : i + 1]}`")
            out.append(ch)
            rep = 2 if last_rep == 1 else 1
            i += 1
        elif ch == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", pat[i:])
            if m is None:
                out.append("\\{")  # Go reads a brace that is not a repeat as a literal
                i += 1
                continue
            low = int(m.group(1))
            high = int(m.group(3)) if m.group(3) else None
            if low > 1000 or (high is not None and (high > 1000 or high < low)):
                raise _GoRegexError(f"invalid repeat count: `{m.group(0)}`")
            if last_rep:
                raise _GoRegexError(f"invalid nested repetition operator: `{m.group(0)}`")
            out.append(m.group(0))
            rep = 1
            i += len(m.group(0))
        elif ch == "}":
            out.append("\\}")
            i += 1
        else:
            out.append(ch)
            i += 1
    if len(stack) != 1:
        raise _GoRegexError("missing closing )")
    out.append(")" * len(stack[0].scopes))
    return "".join(out)


def _open_group(pat: str, i: int, out: list[str], stack: list[_Group]) -> int:
    """Translate the group opening at ``pat[i] == '('``; return the next index."""
    n = len(pat)
    if not pat.startswith("(?", i):
        out.append("(")
        stack.append(_Group(set(stack[-1].flags), []))
        return i + 1
    j = i + 2
    if pat.startswith(("=", "!", "<=", "<!"), j):
        raise _GoRegexError("lookaround assertions are not supported")
    if pat.startswith(("P<", "<"), j):
        start = j + (2 if pat[j] == "P" else 1)
        end = pat.find(">", start)
        name = pat[start:end] if end > 0 else ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _GoRegexError(f"invalid named capture: `{pat[i : end + 1 if end > 0 else n]}`")
        out.append(f"(?P<{name}>")
        stack.append(_Group(set(stack[-1].flags), []))
        return end + 1
    end = j
    while end < n and pat[end] not in ":)":
        end += 1
    flags = pat[j:end]
    if end < n and flags == "" and pat[end] == ":":
        out.append("(?:")
        stack.append(_Group(set(stack[-1].flags), []))
        return end + 1
    if end >= n or flags in ("", "-") or not re.fullmatch(r"[imsU]*(-[imsU]*)?", flags):
        raise _GoRegexError(f"invalid or unsupported Perl syntax: `{pat[i : min(n, end + 1)]}`")
    if "U" in flags:
        raise _GoRegexError("the ungreedy flag (?U) is not supported")
    on, _, off = flags.partition("-")
    if pat[end] == ":":
        stack.append(_Group((set(stack[-1].flags) | set(on)) - set(off), []))
        out.append(f"(?{flags}:")
    else:  # "(?i)" applies to the rest of the enclosing group: open a scope closed with it
        cur = stack[-1]
        cur.flags = (cur.flags | set(on)) - set(off)
        cur.scopes.append(f"(?{flags}:")
        out.append(f"(?{flags}:")
    return end + 1


def _translate_escape(pat: str, i: int, *, in_class: bool) -> tuple[int, str]:
    """Translate the escape at ``pat[i] == '\\'``; return (next index, Python text)."""
    if i + 1 >= len(pat):
        raise _GoRegexError("trailing backslash at end of expression")
    c = pat[i + 1]
    if c in "1234567" and not (i + 2 < len(pat) and pat[i + 2] in "01234567"):
        raise _GoRegexError(f"invalid escape sequence: `\\{c}` (backreferences are not supported)")
    if c in "01234567":
        m = re.match(r"[0-7]{1,3}", pat[i + 1 :])
        assert m is not None
        return i + 1 + len(m.group(0)), f"\\U{int(m.group(0), 8):08x}"
    if c == "8" or c == "9":
        raise _GoRegexError(f"invalid escape sequence: `\\{c}`")
    if c == "Q":
        end = pat.find("\\E", i + 2)
        lit = pat[i + 2 :] if end < 0 else pat[i + 2 : end]
        nxt = len(pat) if end < 0 else end + 2
        return nxt, "".join(x if x.isalnum() or not x.isascii() else "\\" + x for x in lit)
    if c == "x":
        if pat.startswith("{", i + 2):
            end = pat.find("}", i + 3)
            digits = pat[i + 3 : end] if end > 0 else ""
            if not digits or not re.fullmatch(r"[0-9A-Fa-f]+", digits) or int(digits, 16) > 0x10FFFF:
                raise _GoRegexError("invalid escape sequence: `\\x{`")
            return end + 1, f"\\U{int(digits, 16):08x}"
        digits = pat[i + 2 : i + 4]
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
            raise _GoRegexError(f"invalid escape sequence: `\\x{digits}`")
        return i + 4, f"\\x{digits}"
    if c in "dsw":
        cls = _PERL_CLASSES[c]
        return i + 2, cls if in_class else f"[{cls}]"
    if c in "DSW":
        cls = _PERL_CLASSES[c.lower()]
        if in_class:
            return i + 2, "\\" + c  # cannot negate inside a set; Python's class is close enough
        return i + 2, f"[^{cls}]"
    if c in "pP":
        raise _GoRegexError(f"Unicode character classes (\\{c}) are not supported")
    if c == "z":
        if in_class:
            raise _GoRegexError("invalid escape sequence: `\\z`")
        return i + 2, r"\Z"
    if c in "AbB":
        if in_class:
            raise _GoRegexError(f"invalid escape sequence: `\\{c}`")
        return i + 2, "\\" + c
    if c in "aftnrv":
        return i + 2, "\\" + c
    if c.isascii() and not c.isalnum():
        return i + 2, "\\" + c
    raise _GoRegexError(f"invalid escape sequence: `\\{c}`")


def _translate_class(pat: str, i: int) -> tuple[int, str]:
    """Translate a bracket expression starting at ``pat[i] == '['``."""
    n = len(pat)
    out = ["["]
    j = i + 1
    if j < n and pat[j] == "^":
        out.append("^")
        j += 1
    first = True
    while j < n:
        ch = pat[j]
        if ch == "]" and not first:
            out.append("]")
            return j + 1, "".join(out)
        first = False
        if ch == "[" and pat.startswith("[:", j):
            end = pat.find(":]", j + 2)
            if end > 0:
                name = pat[j + 2 : end]
                if name.startswith("^"):
                    raise _GoRegexError(f"negated POSIX class [:{name}:] is not supported")
                if name not in _POSIX_CLASSES:
                    raise _GoRegexError(f"invalid character class range: `[:{name}:]`")
                out.append(_POSIX_CLASSES[name])
                j = end + 2
                continue
        if ch == "\\":
            j, text = _translate_escape(pat, j, in_class=True)
            out.append(text)
            continue
        if ch in "[&~|]":
            out.append("\\" + ch)  # literal in Go; escaped so Python sees no set operations
        else:
            out.append(ch)
        j += 1
    raise _GoRegexError(f"missing closing ]: `{pat[i:]}`")


@functools.lru_cache(maxsize=4096)
def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern anchored as Alertmanager does (``^(?:pattern)$``)."""
    try:
        translated = _translate_go_regex(pattern)
        return re.compile(rf"\A(?:{translated})\Z")
    except (_GoRegexError, re.error) as exc:
        raise MatcherError(f"invalid regular expression {_q(pattern)}: {exc}") from None
