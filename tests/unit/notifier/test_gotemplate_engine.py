"""The Go template engine itself: parsing, execution rules the oracle cannot reach, and robustness.

Table-driven: texts with their output, texts with their parse error and line. Hypothesis:
any text either parses or raises ParseError; rendering raises nothing but TemplateError,
and ``TemplateSet.render`` never raises.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from notifier_cases import EXTERNAL_URL, alert, request, resolved

from stages.notifier.templates import TemplateSet, build_data
from stages.notifier.templates.gotemplate import GoTemplates, ParseError, TemplateError
from stages.notifier.templates.gotemplate.exec import MAX_DEPTH
from stages.notifier.templates.gotemplate.fmt import sprintf
from stages.notifier.templates.gotemplate.values import GoDuration, format_float, sprint

ENGINE = GoTemplates()
SET = TemplateSet()
DATA = build_data(request([alert(), resolved(instance="web-2:9100")]), EXTERNAL_URL)


def _render(text: str, data: Any = DATA, html: bool = False) -> str:
    return ENGINE.execute(text, data, html=html)


RENDERS = [
    ("text", "plain", "plain"),
    ("field-chain", "{{ .CommonLabels.job }}", "node"),
    ("root-in-template", '{{ define "t" }}{{ $ }}{{ end }}{{ template "t" "x" }}', "x"),
    ("template-vars-isolated", '{{ $x := 1 }}{{ define "t" }}{{ . }}{{ end }}{{ template "t" $x }}', "1"),
    ("range-var-reset-each-iteration", "{{ range .Alerts }}{{ $n := .Status }}{{ $n }},{{ end }}",
     "firing,resolved,"),
    ("range-two-vars-map", '{{ range $k, $v := .GroupLabels }}{{ $k }}={{ $v }}{{ end }}', "alertname=HighCPU"),
    ("break-in-nested-if", '{{ range $i, $e := stringSlice "a" "b" "c" }}{{ if eq $i 1 }}{{ if true }}{{ break }}'
                           '{{ end }}{{ end }}{{ $e }}{{ end }}', "a"),
    ("continue",
     '{{ range $i, $e := stringSlice "a" "b" "c" }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $e }}{{ end }}', "ac"),
    ("else-with", "{{ with .CommonLabels.nope }}a{{ else with .Status }}{{ . }}{{ end }}", "firing"),
    ("dict-missing-key", '{{ $d := dict "a" 1 }}{{ $d.b }}', "<no value>"),
    ("nil-in-list", "{{ list nil }}", "[<nil>]"),
    ("duration", "{{ since (index .Alerts 0).StartsAt }}", "10m0s"),
    ("duration-methods", "{{ (since (index .Alerts 0).StartsAt).Minutes }}", "10"),
    ("and-or-final", '{{ 0 | or "" }}|{{ 1 | and "x" }}', "0|1"),
    ("paren-decl-scope", "{{ ($x := 3) }}", "3"),
    ("html-script", '<script>var r = {{ .Receiver }};</script>', '<script>var r = "team-ops";</script>'),
    ("html-comment-in-called-template",
     '{{ define "c" }}<!-- hidden {{ .Status }} -->shown{{ end }}{{ template "c" . }}', "shown"),
]


@pytest.mark.parametrize(("case_id", "text", "expected"), RENDERS, ids=[c[0] for c in RENDERS])
def test_renders(case_id: str, text: str, expected: str) -> None:
    assert _render(text, html=case_id.startswith("html")) == expected


PARSE_ERRORS = [
    ("unclosed-action", "a\n{{ .X", 2, "unclosed action"),
    ("unknown-function", "{{ nope }}", 1, "function 'nope' not defined"),
    ("undefined-variable", "\n\n{{ $y }}", 3, "undefined variable '$y'"),
    ("variable-out-of-scope", "{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}", 1, "undefined variable '$x'"),
    ("assign-undeclared", "{{ $x = 1 }}", 1, "undefined variable '$x'"),
    ("missing-end", "{{ if .X }}\nx", 2, "unexpected EOF"),
    ("stray-end", "{{ end }}", 1, "unexpected {{end}}"),
    ("stray-else", "{{ else }}", 1, "unexpected {{else}}"),
    ("else-if-in-range", "{{ range .A }}{{ else if .B }}{{ end }}", 1, "{{else if}} outside {{if}}"),
    ("break-outside-range", "{{ if true }}{{ break }}{{ end }}", 1, "{{break}} outside {{range}}"),
    ("define-not-top", '{{ if true }}{{ define "x" }}{{ end }}{{ end }}', 1, "unexpected <define>"),
    ("define-without-name", "{{ define x }}{{ end }}", 1, "in define clause"),
    ("empty-pipeline", "{{ }}", 1, "missing value for command"),
    ("literal-in-stage-2", "{{ .X | 1 }}", 1, "non executable command in pipeline stage 2"),
    ("field-after-literal", '{{ "a".B }}', 1, "unexpected . after term"),
    ("bad-number", "{{ 1x }}", 1, "bad number syntax"),
    ("bad-escape", '{{ "\\q" }}', 1, "invalid syntax"),
    ("unterminated-raw", "{{ `abc }}", 1, "unterminated raw quoted string"),
    ("unclosed-comment", "{{/* x }}", 1, "unclosed comment"),
    ("comment-not-closing", "{{/* x */ .X }}", 1, "comment ends before closing delimiter"),
    ("unclosed-paren", "{{ (len .X }}", 1, "unclosed left paren"),
    ("unexpected-paren", "{{ len .X) }}", 1, "unexpected right paren"),
    ("three-range-vars", "{{ range $a, $b, $c := .X }}{{ end }}", 1, "range can only initialize variables"),
    ("two-vars-in-if", "{{ if $a, $b := .X }}{{ end }}", 1, "too many declarations in if"),
    ("complex-number", "{{ 1i }}", 1, "complex numbers are not supported"),
    ("nested-too-deeply", "{{ " + "(" * 400 + "1" + ")" * 400 + " }}", 1, "nested too deeply"),
]


@pytest.mark.parametrize(("case_id", "text", "line", "message"), PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors(case_id: str, text: str, line: int, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        ENGINE.check(text, "f.tmpl")
    assert exc.value.line == line and exc.value.name == "f.tmpl"
    assert message in exc.value.message


EXEC_ERRORS = [
    ("missing-field", "{{ .Nope }}", "can't evaluate field Nope in type template.Data"),
    ("field-of-nil", '{{ $d := dict }}{{ $d.a.b }}', "nil pointer evaluating"),
    ("undefined-template", '{{ template "zz" . }}', "template 'zz' not defined"),
    ("arg-to-non-function", "{{ .Status 1 }}", "Status is not a method but has arguments"),
    ("method-arity", "{{ .CommonLabels.Names 1 }}", "wrong number of args"),
    ("function-arity", '{{ toUpper "a" "b" }}', "wrong number of args for toUpper"),
    ("wrong-type", "{{ toUpper 1 }}", "expected string; got int"),
    ("index-out-of-range", "{{ index .Alerts 5 }}", "index out of range: 5"),
    ("range-over-string", '{{ range "abc" }}{{ end }}', "range can't iterate over abc"),
    ("recursion", '{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}',
     f"exceeded maximum template depth ({MAX_DEPTH})"),
]


@pytest.mark.parametrize(("case_id", "text", "message"), EXEC_ERRORS, ids=[c[0] for c in EXEC_ERRORS])
def test_exec_errors_name_template_and_line(case_id: str, text: str, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        _render(text)
    assert message in str(exc.value)
    assert str(exc.value).startswith("template: ")


def test_render_error_falls_back_to_the_default_text_with_the_error() -> None:
    out, err = TemplateSet().render("line 1\n{{ .Nope }}", DATA, "DEFAULT")
    assert out == "DEFAULT"
    assert err == "template: :2: executing \"\": can't evaluate field Nope in type template.Data"


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%5.1f|%-6d|%x", (3.14159, 42, "hi"), "  3.1|42    |6869"),
        ("%v %v", (GoDuration(90_500_000_000), [1, "a"]), "1m30.5s [1 a]"),
        ("%q", ("\x00é",), '"\\x00é"'),
        ("%08.3f|%+.2e", (-3.14159, 12345.678), "-003.142|+1.23e+04"),
        ("%s %d", ("a",), "a %!d(MISSING)"),
        ("abc%", (), "abc%!(NOVERB)"),
    ],
    ids=["width-precision", "duration-and-slice", "quote", "zero-pad-sign", "missing", "noverb"],
)
def test_sprintf(fmt: str, args: tuple[Any, ...], expected: str) -> None:
    assert sprintf(fmt, args) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05"), (0.0001, "0.0001"), (-2.5, "-2.5"),
     (float("inf"), "+Inf"), (1 / 3, "0.3333333333333333")],
)
def test_float_printing_is_gos(value: float, text: str) -> None:
    assert format_float(value) == text


def test_sprint_spaces_between_non_strings() -> None:
    assert sprint((1, 2, "a", "b", 3, None)) == "1 2ab3 <nil>"


def test_compile_once_then_cached() -> None:
    ts = TemplateSet()
    text = "{{ .Status }}-{{ len .Alerts }}"
    assert ts.render(text, DATA) == ("firing-2", None)
    assert ts._go._compiled(text, False) is ts._go._compiled(text, False)


_PIECES = ["{{", "}}", "{{-", "-}}", " ", ".", "Status", "Alerts", "Labels", "|", "(", ")", "$", "$x", ":=", "=",
           ",", "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", '"a"',
           "`r`", "'c'", "1", "-2", "1.5", "0x1F", "true", "nil", "len", "index", "printf", "eq", "and", "or", "not",
           "toUpper", "join", "/*", "*/", "\n", "\\", '"%d"', "slice", "since", "dict", "list", "<a href=\"", '">',
           "<!--", "-->", "<script>", "</script>", "'", "?", "safeHtml", "urlquery", "html"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=25).map("".join) | st.text(max_size=40))
def test_any_text_parses_or_raises_parse_error_and_render_never_raises(text: str) -> None:
    try:
        ENGINE.check(text)
    except ParseError:
        pass
    try:
        _render(text)
    except TemplateError:
        pass
    try:
        _render(text, html=True)
    except TemplateError:
        pass
    out, err = SET.render(text, DATA, "D")
    assert (out == "D") if err is not None else isinstance(out, str)
