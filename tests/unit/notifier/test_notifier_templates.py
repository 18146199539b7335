"""Default templates, custom templates (Go), fallbacks, load-time checks and template functions."""

from __future__ import annotations

import pytest
from notifier_cases import EXTERNAL_URL, NOW, alert, request, resolved

from contracts.messages import Alert
from stages.notifier.templates import (
    Data,
    TemplateLoadError,
    TemplateSet,
    build_data,
    compile_check,
    default_templates,
    render,
    render_html,
)


def _data(alerts: list[Alert], **kw: object) -> Data:
    return build_data(request(alerts, **kw), EXTERNAL_URL)  # type: ignore[arg-type]


TWO_FIRING = [alert(), alert(instance="web-2:9100")]
MIXED = [alert(), resolved(instance="web-2:9100")]


@pytest.mark.parametrize(
    ("alerts", "group_labels", "subject"),
    [
        (TWO_FIRING, {"alertname": "HighCPU"}, "[FIRING:2] HighCPU (node)"),
        ([alert()], {"alertname": "HighCPU"}, "[FIRING:1] HighCPU (web-1:9100 node)"),
        ([resolved()], {"alertname": "HighCPU"}, "[RESOLVED] HighCPU (web-1:9100 node)"),
        (MIXED, {"alertname": "HighCPU"}, "[FIRING:1] HighCPU (node)"),
        (
            [alert()],
            {"alertname": "HighCPU", "instance": "web-1:9100", "job": "node"},
            "[FIRING:1] HighCPU web-1:9100 node ",
        ),
        (TWO_FIRING, {}, "[FIRING:2]  (HighCPU node)"),
    ],
    ids=["two-firing", "one-firing", "resolved", "mixed", "all-labels-grouped", "no-group-labels"],
)
def test_default_subject_matches_alertmanager(alerts: list[Alert], group_labels: dict[str, str], subject: str) -> None:
    data = _data(alerts, group_labels=group_labels)
    assert default_templates().render_named("__subject", data) == subject
    for name in ("slack.default.title", "pagerduty.default.description", "email.default.subject"):
        assert default_templates().render_named(name, data) == subject


def test_text_alert_list_matches_alertmanager() -> None:
    a = alert(annotations={"summary": "s", "description": "d"}, generator_url="http://p/g")
    text, err = render('{{ template "__text_alert_list" .Alerts }}', _data([a]), "")
    assert err is None
    assert text == (
        "Labels:\n - alertname = HighCPU\n - instance = web-1:9100\n - job = node\n"
        "Annotations:\n - description = d\n - summary = s\nSource: http://p/g\n"
    )


def test_alertmanager_url_quotes_the_receiver() -> None:
    data = _data([alert()], receiver="team ops/é.1")
    url = default_templates().render_named("__alertmanagerURL", data)
    assert url == EXTERNAL_URL + "/#/alerts?receiver=team+ops%2F%C3%A9%5C.1"


@pytest.mark.parametrize(
    ("alerts", "color"),
    [(TWO_FIRING, "danger"), (MIXED, "danger"), ([resolved()], "good")],
    ids=["firing", "mixed", "resolved"],
)
def test_slack_default_color(alerts: list[Alert], color: str) -> None:
    assert default_templates().render_named("slack.default.color", _data(alerts)) == color


def test_slack_default_fallback_is_title_and_link() -> None:
    data = _data(TWO_FIRING)
    fallback = default_templates().render_named("slack.default.fallback", data)
    assert fallback == f"[FIRING:2] HighCPU (node) | {EXTERNAL_URL}/#/alerts?receiver=team-ops"
    assert default_templates().render_named("slack.default.username", data) == "Alertmanager"
    assert default_templates().render_named("slack.default.text", data) == ""


def test_default_email_text_lists_firing_then_resolved() -> None:
    text = default_templates().render_named("email.default.text", _data(MIXED))
    assert text.startswith("[FIRING:1] HighCPU (node)\n")
    firing_at, resolved_at = text.index("Alerts Firing:"), text.index("Alerts Resolved:")
    assert firing_at < text.index("web-1:9100") < resolved_at < text.index("web-2:9100")
    assert f"{EXTERNAL_URL}/#/alerts?receiver=team-ops" in text


@pytest.mark.parametrize(
    ("alerts", "present", "absent"),
    [
        (TWO_FIRING, ["[2] Firing", "2 alerts for", "alertname=HighCPU"], ["Resolved</strong>"]),
        ([resolved()], ["[1] Resolved", "1 alert for", "alertname=HighCPU"], ["Firing</strong>"]),
        (MIXED, ["[1] Firing", "[1] Resolved"], []),
    ],
    ids=["firing", "resolved", "mixed"],
)
def test_default_email_html_sections(alerts: list[Alert], present: list[str], absent: list[str]) -> None:
    html = default_templates().render_named("email.default.html", _data(alerts), html=True)
    for fragment in present:
        assert fragment in html
    for fragment in absent:
        assert fragment not in html
    assert "View in Alertmanager" in html
    assert "<!--" not in html  # html/template drops the template's comments


def test_html_rendering_escapes_values_and_safe_html_opts_out() -> None:
    data = _data([alert(annotations={"summary": "<b>hot</b> & loud"})])
    assert render_html("{{ .CommonAnnotations.summary }}", data) == ("&lt;b&gt;hot&lt;/b&gt; &amp; loud", None)
    assert render_html("{{ .CommonAnnotations.summary | safeHtml }}", data) == ("<b>hot</b> & loud", None)
    assert render("{{ .CommonAnnotations.summary }}", data) == ("<b>hot</b> & loud", None)
    html = default_templates().render_named("email.default.html", data, html=True)
    assert "&lt;b&gt;hot&lt;/b&gt; &amp; loud" in html and "<b>hot</b>" not in html


def test_the_issues_slack_templates_render() -> None:
    data = _data([alert(annotations={"summary": "a"}), alert(instance="web-2:9100", annotations={"summary": "b"})])
    title = "{{ .CommonLabels.alertname }} [{{ .Status | toUpper }}]"
    assert render(title, data, "D") == ("HighCPU [FIRING]", None)
    assert render("{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}", data, "D") == ("ab", None)


@pytest.mark.parametrize("name", ["slack.default.title", "__subject", "slack.default.color"], ids=lambda n: n)
def test_whole_field_reference_to_a_default_renders_it(name: str) -> None:
    data = _data(TWO_FIRING)
    for text in (f'{{{{ template "{name}" . }}}}', f'  {{{{- template "{name}" . -}}}}\n'):
        assert render(text, data, "DEFAULT") == (default_templates().render_named(name, data), None)
        assert compile_check(text) is None


def _loop_set() -> TemplateSet:
    return TemplateSet([("loop.tmpl", '{{ define "loop" }}{{ template "loop" . }}{{ end }}')])


@pytest.mark.parametrize(
    ("text", "templates"),
    [
        ("{{ .Nope }}", None),
        ('{{ .CommonLabels.Remove "job" }}', None),
        ("{{ index .Alerts 99 }}", None),
        ('{{ template "missing" . }}', None),
        ('{{ template "loop" . }}', _loop_set()),
        ('{{ .CommonLabels.job | reReplaceAll "(" "" }}', None),
        ('{{ (index .Alerts 0).StartsAt | tz "Nowhere/Atlantis" }}', None),
        ("{{ range 10 }}{{ end }}", None),
        ("{{ if }}", None),
        ("{% for %}{{ Status }}", None),
    ],
    ids=[
        "missing-field", "wrong-argument-type", "missing-alert", "unknown-named", "self-recursion", "bad-regex",
        "bad-zone", "range-int", "syntax", "jinja",
    ],
)  # fmt: skip
def test_failing_custom_template_returns_default_and_error(text: str, templates: TemplateSet | None) -> None:
    ts = templates or default_templates()
    out, err = ts.render(text, _data(TWO_FIRING), "DEFAULT TEXT")
    assert (out, err is not None) == ("DEFAULT TEXT", True)


def test_failing_field_is_counted_and_sent_with_the_default() -> None:
    from prometheus_client import REGISTRY

    from stages.notifier.payloads.common import Fields

    def count() -> float:
        return REGISTRY.get_sample_value("tocsin_notifier_template_errors_total", {"integration": "slack"}) or 0.0

    before = count()
    f = Fields("slack", _data(TWO_FIRING))
    assert f.text("title", "{{ .Nope }}", "slack.default.title") == "[FIRING:2] HighCPU (node)"
    assert f.errors == ["slack title: template: :1: executing \"\": can't evaluate field Nope in type template.Data"]
    assert count() == before + 1


def test_empty_template_renders_empty() -> None:
    assert render("", _data(TWO_FIRING), "DEFAULT") == ("", None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{ .CommonLabels.alertname }}", None),
        ("{{ range .Alerts.Firing }}{{ .Labels.instance }}{{ end }}", None),
        ('{{ template "__subject" . }} / {{ template "__text_alert_list" .Alerts.Resolved }}', None),
        ("{{ $n := len .Alerts }}{{ $n }} since {{ since (index .Alerts 0).StartsAt | humanizeDuration }}", None),
        ("plain text, no markup", None),
        ("", None),
        ("{{ .Status | nope }}", "function 'nope' not defined"),
        ("{{ range .Alerts }}", "line 1"),
        ("x\n{{ $undefined }}", "line 2: undefined variable '$undefined'"),
        ("{% for a in Alerts %}{{ a }}{% endfor %}", "function 'a' not defined"),
    ],
    ids=["label", "loop", "named", "variables-and-functions", "plain", "empty", "unknown-function", "unclosed",
         "undefined-variable", "jinja"],
)
def test_compile_check(text: str, problem: str | None) -> None:
    result = compile_check(text)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


def test_template_file_that_does_not_parse_fails_with_file_and_line() -> None:
    with pytest.raises(TemplateLoadError) as exc:
        TemplateSet([("good.tmpl", '{{ define "good" }}x{{ end }}'),
                     ("bad.tmpl", '\n{{ define "b" }}{{ if }}{{ end }}')])
    assert exc.value.errors == ["bad.tmpl:2: missing value for if"]


def test_configured_named_template_overrides_a_default() -> None:
    ts = TemplateSet([("mine.tmpl", '{{ define "__alertmanager" }}Tocsin{{ end }}')])
    data = _data(TWO_FIRING)
    assert ts.render_named("slack.default.username", data) == "Tocsin"
    assert default_templates().render_named("slack.default.username", data) == "Alertmanager"
    assert ts.render('{{ template "my" . }}', data, "D")[1] is not None  # not defined: error


def test_template_set_loads_globs(tmp_path: pytest.TempPathFactory) -> None:
    base = tmp_path  # type: ignore[assignment]
    (base / "a.tmpl").write_text('{{ define "team.title" }}{{ .Status | toUpper }}{{ end }}')  # type: ignore[operator]
    ts = TemplateSet.from_globs([str(base / "*.tmpl"), str(base / "none-*.tmpl")])  # type: ignore[operator]
    assert ts.render('{{ template "team.title" . }}', _data(TWO_FIRING), "D") == ("FIRING", None)


FUNCTION_CASES = [
    ("{{ .CommonLabels.job | toUpper }}", "NODE"),
    ('{{ "  x y  " | trimSpace }}', "x y"),
    ('{{ "Hello World" | toLower }}', "hello world"),
    ('{{ "disk usage high" | title }}', "Disk Usage High"),
    (r'{{ (index .Alerts 0).Labels.instance | reReplaceAll "(.*):(\\d+)" "$2@$1" }}', "9100@web-1"),
    ('{{ (index .Alerts 0).Labels.instance | reReplaceAll "(?P<host>[^:]+):.*" "${host}$$" }}', "web-1$"),
    ('{{ (index .Alerts 0).Labels.instance | reReplaceAll ":" "$9" }}', "web-19100"),
    ('{{ if match "^no" .CommonLabels.job }}yes{{ end }}', "yes"),
    ('{{ stringSlice "a" "b" | join "," }}', "a,b"),
    ('{{ dict "b" 2 "a" 1 | toJson }}', '{"a":1,"b":2}'),
    ("{{ append (list 1 2) 3 | toJson }}", "[1,2,3]"),
    ('{{ "<x&y>" | toJson }}', '"\\u003cx\\u0026y\\u003e"'),
    ('{{ "a%20b+c" | urlUnescape }}', "a b c"),
    ('{{ "a b/c" | urlquery }}', "a+b%2Fc"),
    ('{{ (index .Alerts 0).StartsAt | date "2006-01-02 15:04" }}', "2023-11-14 22:03"),
    ('{{ (index .Alerts 0).StartsAt | tz "Europe/Paris" | date "15:04 MST" }}', "23:03 CET"),
    ('{{ (index .Alerts 0).StartsAt.Format "Jan 2" }}', "Nov 14"),
    ("{{ (index .Alerts 0).StartsAt }}", "2023-11-14 22:03:20 +0000 UTC"),
    ("{{ (index .Alerts 0).EndsAt }}", "0001-01-01 00:00:00 +0000 UTC"),
    ("{{ now }}", "2023-11-14 22:13:20 +0000 UTC"),
    ("{{ since (index .Alerts 0).StartsAt | humanizeDuration }}", "10m 0s"),
    ("{{ humanizeDuration 3725 }}", "1h 2m 5s"),
    ("{{ .Alerts.Firing | len }}/{{ len .Alerts.Resolved }}/{{ len .Alerts }}", "1/1/2"),
    ("{{ .CommonLabels }}", "map[alertname:HighCPU job:node]"),
    ('{{ .CommonLabels.SortedPairs.Names | join "," }}', "alertname,job"),
    ('{{ (.CommonLabels.Remove (stringSlice "job")).Values | join "+" }}', "HighCPU"),
    ("{{ .GroupKey }}|{{ .Receiver }}|{{ .ExternalURL }}|{{ .TruncatedAlerts }}",
     '{}:{alertname="HighCPU"}|team-ops|' + EXTERNAL_URL + "|0"),
    ("[{{ (index .Alerts 0).Labels.missing }}]", "[]"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), FUNCTION_CASES, ids=[f"fn-{i}" for i in range(len(FUNCTION_CASES))])
def test_template_functions(text: str, expected: str) -> None:
    assert render(text, _data(MIXED), "DEFAULT") == (expected, None)


def test_methods_win_over_label_names_as_in_go() -> None:
    data = _data([alert(labels={"Values": "mine", "items": "also"})])
    text = ('{{ (index .Alerts 0).Labels.Values }}/{{ (index .Alerts 0).Labels.items }}/'
            '{{ index (index .Alerts 0).Labels "Values" }}')
    assert render(text, data) == ("[HighCPU mine web-1:9100 also node]/also/mine", None)  # Go's byte order


def test_rendering_is_deterministic_given_the_request() -> None:
    text = "{{ now }} {{ since (index .Alerts 0).StartsAt }} {{ .Alerts | toJson }}"
    first = render(text, _data(MIXED), "")
    second = render(text, _data(MIXED), "")
    later = render(text, build_data(request(MIXED, created_at=NOW + 5), EXTERNAL_URL), "")
    assert first == second and first[1] is None
    assert later != first
