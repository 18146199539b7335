"""html/template's contextual escaping, tracked while the output is written.

Go's html/template works out, before execution, the HTML context of every action and adds
escapers to it. Here the writer follows the literal text as it is written (the text of
called templates too) and escapes each action's value for the context it lands in:

- element text: HTML-escaped (``&<>"'+`` and NUL), except ``safeHtml`` values;
- quoted attribute values: HTML-escaped; ``safeHtml`` values lose their tags first;
- URL attributes (``href``, ``src``...): a value at the start is checked for a safe scheme
  (else ``#ZgotmplZ``, unless ``safeUrl``) and normalised; after ``?`` or ``#`` it is
  query-escaped; then HTML-escaped;
- unquoted attribute values: also spaces and quotes escaped;
- ``<script>`` content: a JavaScript string; ``<style>`` content and ``style`` attributes:
  left as written;
- HTML comments in the template are removed, with any action inside them.

A pipeline that ends in ``html`` or ``urlquery`` counts as the equivalent escaper, as in Go.
Templates whose context differs between ``if`` branches are escaped by the branch taken
(Go rejects some of them at parse time).
"""

from __future__ import annotations

import re
from typing import Any

from ..functions import to_json
from .funcs import html_escape, query_escape
from .values import SafeHTML, SafeURL, printable

__all__ = ["HtmlOut"]

_HTML_TABLE = str.maketrans({"\0": "\ufffd", '"': "&#34;", "&": "&amp;", "'": "&#39;", "+": "&#43;",
                             "<": "&lt;", ">": "&gt;"})
_HTML_NORM_TABLE = str.maketrans({"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "+": "&#43;", "<": "&lt;",
                                  ">": "&gt;"})  # for safeHtml text in attributes: entities stay
_NOSPACE_TABLE = str.maketrans({"\0": "&#xfffd;", "\t": "&#9;", "\n": "&#10;", "\v": "&#11;", "\f": "&#12;",
                                "\r": "&#13;", " ": "&#32;", '"': "&#34;", "&": "&amp;", "'": "&#39;",
                                "+": "&#43;", "<": "&lt;", "=": "&#61;", ">": "&gt;", "`": "&#96;"})
_URL_ATTRS = frozenset({"action", "archive", "background", "cite", "classid", "codebase", "data", "formaction",
                        "href", "icon", "longdesc", "manifest", "poster", "profile", "src", "usemap", "xmlns"})
_TAGS = re.compile(r"<[^>]*>?")
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
_RESERVED = frozenset(b"!#$&*+,/:;=?@[]")
_SAFE_SCHEMES = ("http", "https", "mailto")

# states
_TEXT, _TAG, _ATTR_NAME, _AFTER_NAME, _BEFORE_VALUE, _VALUE, _COMMENT, _RAW = range(8)


def _url(s: str, norm: bool) -> str:
    out: list[str] = []
    for b in s.encode():
        if b in _UNRESERVED or (norm and (b in _RESERVED or b == 0x25)):
            out.append(chr(b))
        else:
            out.append(f"%{b:02x}")
    return "".join(out)


def _safe_scheme(s: str) -> bool:
    colon = s.find(":")
    if colon < 0 or "/" in s[:colon]:
        return True
    return s[:colon].lower() in _SAFE_SCHEMES


class HtmlOut:
    """An output list (``append`` for template text) that escapes values by context."""

    __slots__ = ("attr", "buf", "parts", "quote", "raw_end", "state", "tag", "url_part")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.state = _TEXT
        self.attr = ""  # the attribute being read, lower case
        self.quote = ""  # the attribute value's delimiter; "" when unquoted
        self.url_part = 0  # in a URL value: 0 nothing yet, 1 before the query, 2 query or fragment
        self.tag = ""
        self.raw_end = ""
        self.buf = ""

    def text(self) -> str:
        return "".join(self.parts)

    # ------------------------------------------------------------ literal text
    def append(self, text: str) -> None:
        if self.state == _TEXT and "<" not in text:
            self.parts.append(text)
            return
        keep: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            st = self.state
            c = text[i]
            if st == _TEXT:
                j = text.find("<", i)
                if j < 0:
                    keep.append(text[i:])
                    break
                keep.append(text[i:j])
                if text.startswith("<!--", j):
                    self.state = _COMMENT
                    i = j + 4
                    continue
                m = re.match(r"</?([A-Za-z][A-Za-z0-9:-]*)", text[j:])
                if m:
                    self.tag = m.group(1).lower() if not m.group(0).startswith("</") else ""
                    self.state = _TAG
                    keep.append(m.group(0))
                    i = j + m.end()
                    continue
                keep.append("<")
                i = j + 1
                continue
            if st == _COMMENT:
                j = text.find("-->", i)
                if j < 0:
                    break
                self.state = _TEXT
                i = j + 3
                continue
            if st == _RAW:
                j = text.lower().find(self.raw_end, i)
                if j < 0:
                    keep.append(text[i:])
                    break
                keep.append(text[i:j])
                self.state = _TEXT
                i = j
                continue
            keep.append(c)
            i += 1
            if st == _TAG:
                if c == ">":
                    self._end_tag()
                elif not c.isspace() and c != "/":
                    self.state = _ATTR_NAME
                    self.attr = c.lower()
            elif st == _ATTR_NAME:
                if c == "=":
                    self.state = _BEFORE_VALUE
                elif c == ">":
                    self._end_tag()
                elif c.isspace():
                    self.state = _AFTER_NAME
                else:
                    self.attr += c.lower()
            elif st == _AFTER_NAME:
                if c == "=":
                    self.state = _BEFORE_VALUE
                elif c == ">":
                    self._end_tag()
                elif not c.isspace():
                    self.state = _ATTR_NAME
                    self.attr = c.lower()
            elif st == _BEFORE_VALUE:
                if c.isspace():
                    continue
                self.state = _VALUE
                self.url_part = 0
                if c in "\"'":
                    self.quote = c
                else:
                    self.quote = ""
                    self._value_char(c)
            elif st == _VALUE:
                if (self.quote and c == self.quote) or (not self.quote and c.isspace()):
                    self.state = _TAG
                elif not self.quote and c == ">":
                    self._end_tag()
                else:
                    self._value_char(c)
        self.parts.append("".join(keep))

    def _value_char(self, c: str) -> None:
        if c in "?#":
            self.url_part = 2
        elif self.url_part == 0 and not c.isspace():
            self.url_part = 1

    def _end_tag(self) -> None:
        if self.tag in ("script", "style", "textarea", "title"):
            self.state = _RAW
            self.raw_end = "</" + self.tag
        else:
            self.state = _TEXT
        self.tag = ""

    # ------------------------------------------------------------ action values
    def value(self, v: Any, last: str | None = None) -> None:
        """Write an action's value for the current context.

        ``last`` is ``html`` or ``urlquery`` when the action's pipeline ended with that
        function: ``v`` is then the value before it, and the function takes the place of the
        context's equivalent escaper, as Go rewrites such pipelines.
        """
        st = self.state
        if st == _COMMENT:
            return
        if last is not None:
            s = _eval_args(v)
        elif v is None:
            s = ""  # html/template's escapers skip nil
        else:
            s = str.__str__(v) if isinstance(v, str) else printable(v)
        if st == _TEXT or (st == _RAW and self.raw_end not in ("</script", "</style")):
            if last == "html":
                self.parts.append(html_escape(s))
            elif isinstance(v, SafeHTML) and st == _TEXT:
                self.parts.append(s)
            else:
                self.parts.append(_apply(last, s).translate(_HTML_TABLE))
            return
        if st == _RAW:
            if self.raw_end == "</script":
                self.parts.append(_js_value(v if last is None else _apply(last, s)))
            else:
                self.parts.append(_apply(last, s))
            return
        if st == _VALUE or st == _BEFORE_VALUE:
            if st == _BEFORE_VALUE:
                self.state = _VALUE
                self.quote = ""
                self.url_part = 0
            if not self.quote:  # no escaper of Go's is equivalent to the unquoted one
                if self.attr in _URL_ATTRS:
                    s = self._url_value(v, _apply(last, s), None)
                elif isinstance(v, SafeHTML) and last is None:
                    s = _TAGS.sub("", s)
                else:
                    s = _apply(last, s)
                self.parts.append(s.translate(_NOSPACE_TABLE))
                return
            if self.attr in _URL_ATTRS:
                s = self._url_value(v, s, last)
            elif self.attr.startswith("on"):
                s = _js_value(v if last is None else _apply(last, s))
                last = None
            elif last == "urlquery":
                s = query_escape(s)
                last = None
            elif isinstance(v, SafeHTML) and last is None:
                self.parts.append(_TAGS.sub("", s).translate(_HTML_NORM_TABLE))
                return
            self.parts.append(html_escape(s) if last == "html" else s.translate(_HTML_TABLE))
            return
        self.parts.append(_apply(last, s).translate(_HTML_TABLE))  # a value in a tag or attribute name

    def _url_value(self, v: Any, s: str, last: str | None) -> str:
        part = self.url_part
        if part == 0:
            self.url_part = 1
            if not isinstance(v, SafeURL) and not _safe_scheme(s):
                return "#ZgotmplZ"
        if last == "urlquery":
            return query_escape(s)
        return _url(s, norm=part < 2)


def _eval_args(v: Any) -> str:
    """text/template's evalArgs of one value: nil is ``<no value>``."""
    if isinstance(v, str):
        return str.__str__(v)
    return printable(v)


def _apply(last: str | None, s: str) -> str:
    """The pipeline's own last function, where no escaper of the context stands for it."""
    if last == "html":
        return html_escape(s)
    if last == "urlquery":
        return query_escape(s)
    return s


def _js_value(v: Any) -> str:
    """html/template's JS value escaper: the value as JSON (HTML-safe), spaced when it could
    run into a neighbouring identifier."""
    text = to_json(str.__str__(v) if isinstance(v, str) else v)
    pad = bool(text) and (_js_ident(text[0]) or _js_ident(text[-1]))
    return f" {text} " if pad else text


def _js_ident(c: str) -> bool:
    return c.isalnum() or c in "_$"
