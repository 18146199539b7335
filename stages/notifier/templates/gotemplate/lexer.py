"""Tokens of a Go ``text/template`` text: literal text, actions ``{{ }}``, trim markers, comments.

The rules are Go's: ``{{-`` followed by a space trims the whitespace before the action,
a space followed by ``-}}`` trims the whitespace after it; ``{{/* */}}`` is a comment
(trim markers allowed around it); actions may span lines; strings use Go's escapes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import ParseError

__all__ = ["KEYWORDS", "Token", "tokenize"]

KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"})

_SPACE = " \t\r\n"
_ALNUM = re.compile(r"[A-Za-z0-9_\u0080-\U0010ffff]*")
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[bB][01_]+|0[oO][0-7_]+"
    r"|[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?)i?"
)
# characters that may follow a word inside an action (Go's atTerminator)
_TERMINATORS = frozenset(" \t\r\n.,|:()")


class Token(NamedTuple):
    """``kind``: text, left, right, field, var, ident, keyword, string, char, number, bool, nil,
    dot, pipe, lparen, rparen, declare, assign, comma, other, eof. ``space``: whitespace came
    before it inside the action (it separates arguments and ends field chains)."""

    kind: str
    value: str
    line: int
    space: bool = False


def _right_delim(src: str, pos: int) -> tuple[bool, bool]:
    """At ``pos``: (a closing ``}}``, with the `` -`` trim marker)."""
    if src.startswith("}}", pos):
        return True, False
    if pos + 1 < len(src) and src[pos] in _SPACE and src[pos + 1] == "-" and src.startswith("}}", pos + 2):
        return True, True
    return False, False


class _Lexer:
    def __init__(self, name: str, src: str) -> None:
        self.name = name
        self.src = src
        self.tokens: list[Token] = []

    def line_at(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    def fail(self, pos: int, message: str) -> ParseError:
        return ParseError(self.name, self.line_at(pos), message)

    def run(self) -> list[Token]:
        src = self.src
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            end = len(src) if start < 0 else start
            text = src[pos:end]
            if trim_next:
                text = text.lstrip(_SPACE)
            left_trim = (start >= 0 and src.startswith("-", start + 2) and start + 3 < len(src)
                         and src[start + 3] in _SPACE)
            if left_trim:
                text = text.rstrip(_SPACE)
            if text:
                self.tokens.append(Token("text", text, self.line_at(pos)))
            if start < 0:
                break
            pos = start + 2 + (2 if left_trim else 0)
            if src.startswith("/*", pos):
                pos, trim_next = self.comment(pos)
                continue
            self.tokens.append(Token("left", "{{", self.line_at(start)))
            pos, trim_next = self.action(pos)
        self.tokens.append(Token("eof", "", self.line_at(len(src))))
        return self.tokens

    def comment(self, pos: int) -> tuple[int, bool]:
        close = self.src.find("*/", pos + 2)
        if close < 0:
            raise self.fail(pos, "unclosed comment")
        pos = close + 2
        delim, trim = _right_delim(self.src, pos)
        if not delim:
            raise self.fail(pos, "comment ends before closing delimiter")
        return pos + (4 if trim else 2), trim

    def action(self, pos: int) -> tuple[int, bool]:
        src = self.src
        n = len(src)
        depth = 0
        space = False
        emit = self.tokens.append
        while True:
            delim, trim = _right_delim(src, pos)
            if delim:
                if depth:
                    raise self.fail(pos, "unclosed left paren")
                emit(Token("right", "}}", self.line_at(pos), space))
                return pos + (4 if trim else 2), trim
            if pos >= n:
                raise self.fail(pos, "unclosed action")
            c = src[pos]
            line = self.line_at(pos)
            if c in _SPACE:
                pos += 1
                space = True
                continue
            if c == "=":
                emit(Token("assign", "=", line, space))
                pos += 1
            elif c == ":":
                if not src.startswith(":=", pos):
                    raise self.fail(pos, "expected :=")
                emit(Token("declare", ":=", line, space))
                pos += 2
            elif c == "|":
                emit(Token("pipe", "|", line, space))
                pos += 1
            elif c == '"':
                pos = self.quoted(pos, line, space)
            elif c == "`":
                close = src.find("`", pos + 1)
                if close < 0:
                    raise self.fail(pos, "unterminated raw quoted string")
                emit(Token("string", src[pos + 1:close].replace("\r", ""), line, space))
                pos = close + 1
            elif c == "'":
                pos = self.char(pos, line, space)
            elif c == "$":
                m = _ALNUM.match(src, pos + 1)
                assert m is not None
                emit(Token("var", "$" + m.group(0), line, space))
                pos = self.terminated(m.end())
            elif c == "." and (pos + 1 >= n or not src[pos + 1].isdigit()):
                m = _ALNUM.match(src, pos + 1)
                assert m is not None
                if m.group(0):
                    emit(Token("field", m.group(0), line, space))
                else:
                    emit(Token("dot", ".", line, space))
                pos = self.terminated(m.end())
            elif c.isdigit() or c in "+-.":
                m = _NUMBER.match(src, pos)
                assert m is not None
                if not m.group(0) or m.group(0) in "+-" or (m.end() < n and _ALNUM.match(src, m.end()).group(0)):  # type: ignore[union-attr]
                    raise self.fail(pos, f"bad number syntax: {src[pos:_ALNUM.match(src, pos + 1).end()]!r}")  # type: ignore[union-attr]
                emit(Token("number", m.group(0), line, space))
                pos = m.end()
            elif c.isalpha() or c == "_":
                m = _ALNUM.match(src, pos)
                assert m is not None
                word = m.group(0)
                kind = ("keyword" if word in KEYWORDS else "bool" if word in ("true", "false")
                        else "nil" if word == "nil" else "ident")
                emit(Token(kind, word, line, space))
                pos = self.terminated(m.end())
            elif c == "(":
                depth += 1
                emit(Token("lparen", "(", line, space))
                pos += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.fail(pos, "unexpected right paren")
                emit(Token("rparen", ")", line, space))
                pos += 1
            elif c == ",":
                emit(Token("comma", ",", line, space))
                pos += 1
            elif c.isprintable() and ord(c) < 128:
                emit(Token("other", c, line, space))
                pos += 1
            else:
                raise self.fail(pos, f"unrecognized character in action: {c!r}")
            space = False

    def terminated(self, pos: int) -> int:
        if pos < len(self.src) and self.src[pos] not in _TERMINATORS and not _right_delim(self.src, pos)[0]:
            raise self.fail(pos, f"bad character {self.src[pos]!r}")
        return pos

    def quoted(self, pos: int, line: int, space: bool) -> int:
        src = self.src
        i = pos + 1
        while True:
            if i >= len(src) or src[i] == "\n":
                raise self.fail(pos, "unterminated quoted string")
            if src[i] == "\\":
                i += 2
                continue
            if src[i] == '"':
                break
            i += 1
        self.tokens.append(Token("string", unquote(src[pos + 1:i], '"', self.fail, pos), line, space))
        return i + 1

    def char(self, pos: int, line: int, space: bool) -> int:
        src = self.src
        i = pos + 1
        while True:
            if i >= len(src) or src[i] == "\n":
                raise self.fail(pos, "unterminated character constant")
            if src[i] == "\\":
                i += 2
                continue
            if src[i] == "'":
                break
            i += 1
        value = unquote(src[pos + 1:i], "'", self.fail, pos)
        if len(value) != 1:
            raise self.fail(pos, f"malformed character constant: {src[pos:i + 1]}")
        self.tokens.append(Token("char", value, line, space))
        return i + 1


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote(body: str, quote: str, fail: object, pos: int) -> str:
    """The value of a Go quoted string body (Go's ``strconv.Unquote``)."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < n else ""
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + size]
            if len(digits) != size or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise fail(pos, "invalid syntax")  # type: ignore[operator]
            code = int(digits, 16)
            if e != "x" and (code > 0x10FFFF or 0xD800 <= code < 0xE000):
                raise fail(pos, "invalid syntax")  # type: ignore[operator]
            out.append(chr(code))  # \xHH is a byte in Go; as a character here (same for ASCII)
            i += 2 + size
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits) or int(digits, 8) > 255:
                raise fail(pos, "invalid syntax")  # type: ignore[operator]
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise fail(pos, "invalid syntax")  # type: ignore[operator]
    return "".join(out)


def tokenize(name: str, src: str) -> list[Token]:
    """The tokens of ``src``; raises :class:`ParseError` naming ``name`` and the line."""
    return _Lexer(name, src).run()
