"""Loading and validating alertmanager.yml (pipeline.foundation.amconfig.load and the model)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from contracts.matchers import Matcher, MatchType
from pipeline.foundation.amconfig import (
    Config,
    ConfigError,
    HostPort,
    Secret,
    check_config_report,
    delivered_integrations,
    load_config,
    load_config_text,
)
from pipeline.foundation.amconfig.load import compose_section

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "alertmanager"
FULL = FIXTURE_DIR / "full.yml"
SECRETS = [
    "smtp-password-123",
    "XXXXSECRET",
    "pd-routing-key-secret",
    "pd-service-key-secret",
    "webhook-basic-secret",
    "opsgenie-api-key-secret",
    "https://hooks.example.org/db",
    "http://audit.internal:8080/alerts",  # webhook URLs are secrets in Alertmanager
]


@pytest.fixture(scope="module")
def full() -> Config:
    return load_config(FULL)


def test_full_global(full: Config) -> None:
    g = full.global_
    assert g.resolve_timeout == 600.0
    assert g.smtp_smarthost == HostPort("smtp.example.org", "587")
    assert g.smtp_hello == "am.example.org"
    assert g.http_config.follow_redirects is False
    assert g.http_config.enable_http2 is True  # default kept
    assert g.http_config.tls_config.min_version == "TLS12"
    assert g.pagerduty_url == "https://events.eu.pagerduty.com/v2/enqueue"
    assert g.opsgenie_api_url == "https://api.opsgenie.com/"  # default


def test_full_templates_resolved_against_file_dir(full: Config) -> None:
    assert full.templates == [str(FIXTURE_DIR / "templates" / "*.tmpl"), "/etc/alertmanager/extra/*.tmpl"]


def test_full_route(full: Config) -> None:
    route = full.route
    assert route is not None
    assert route.receiver == "team-ops-mails"
    assert route.group_by == ["alertname", "cluster", "service"]
    assert (route.group_wait, route.group_interval, route.repeat_interval) == (30.0, 300.0, 3 * 3600.0)
    first, second, third, fourth, fifth = route.routes
    assert first.match_re == {"service": "^(foo1|foo2|baz)$"}
    assert first.routes[0].match == {"severity": "critical"}
    assert second.matchers == [
        Matcher("service", MatchType.EQUAL, "files"),
        Matcher("severity", MatchType.REGEX, "warning|critical"),
    ]
    assert second.continue_ is True and second.group_by_all
    assert third.group_wait == 60.0 and third.mute_time_intervals == ["weekends"]
    assert fourth.matchers == [Matcher("service", MatchType.EQUAL, "database")]
    assert fourth.active_time_intervals == ["business-hours"]
    assert fifth.matchers == [Matcher("team", MatchType.EQUAL, "ops"), Matcher("env", MatchType.NOT_EQUAL, "staging")]


def test_full_inhibit_rules(full: Config) -> None:
    first, second = full.inhibit_rules
    assert first.all_source_matchers() == [Matcher("severity", MatchType.EQUAL, "critical")]
    assert first.all_target_matchers() == [Matcher("severity", MatchType.EQUAL, "warning")]
    assert first.equal == ["alertname", "cluster", "service"]
    assert second.name == "cluster-down"
    assert second.all_source_matchers() == [Matcher("alertname", MatchType.EQUAL, "ClusterDown")]
    assert second.all_target_matchers() == [Matcher("alertname", MatchType.REGEX, "^(?:.+)$")]


def test_full_email_gets_global_defaults(full: Config) -> None:
    ops = full.receiver("team-ops-mails").email_configs[0]
    assert ops.to == "ops@example.org"
    assert ops.from_ == "alertmanager@example.org"
    assert ops.smarthost == HostPort("smtp.example.org", "587")
    assert ops.hello == "am.example.org"
    assert ops.auth_username == "alertmanager"
    assert ops.auth_password is not None and ops.auth_password.value == "smtp-password-123"
    assert ops.require_tls is True
    assert ops.send_resolved is False
    assert ops.headers == {"Subject": "[{{ .Status }}] {{ .GroupLabels.alertname }}"}  # canonical key
    assert ops.html == '{{ template "email.default.html" . }}'
    team_x = full.receiver("team-x-mails").email_configs[0]
    assert team_x.send_resolved is True and team_x.require_tls is False


def test_full_pagerduty(full: Config) -> None:
    pd = full.receiver("team-x-pager").pagerduty_configs[0]
    assert pd.routing_key == Secret("pd-routing-key-secret")
    assert pd.url == "https://events.eu.pagerduty.com/v2/enqueue"
    assert pd.send_resolved is True
    assert pd.severity == "{{ .CommonLabels.severity }}"
    assert pd.details["runbook"] == "{{ .CommonAnnotations.runbook_url }}"
    assert pd.details["num_firing"] == "{{ .Alerts.Firing | len }}"
    assert pd.source == pd.client == '{{ template "pagerduty.default.client" . }}'
    assert pd.http_config is not None and pd.http_config.follow_redirects is False  # global http_config
    db = full.receiver("team-db-pager").pagerduty_configs[0]
    assert db.service_key == Secret("pd-service-key-secret") and db.routing_key is None


def test_full_slack(full: Config) -> None:
    sc = full.receiver("team-y-slack").slack_configs[0]
    assert sc.api_url is not None and sc.api_url.value == "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    assert sc.channel == "#team-y"
    assert sc.title == "{{ .CommonLabels.alertname }}"
    assert sc.username == '{{ template "slack.default.username" . }}'
    assert sc.send_resolved is False
    assert sc.fields[0].title == "Cluster" and sc.fields[0].short is True
    assert sc.actions[0].url == "{{ .CommonAnnotations.runbook_url }}"


def test_full_webhooks(full: Config) -> None:
    wh = full.receiver("team-db-pager").webhook_configs[0]
    assert wh.url == Secret("https://hooks.example.org/db")
    assert wh.max_alerts == 20 and wh.timeout == 10.0 and wh.send_resolved is True
    assert wh.http_config is not None and wh.http_config.basic_auth is not None
    assert wh.http_config.basic_auth.username == "tocsin"
    assert wh.http_config.follow_redirects is True  # its own http_config, not the global one
    audit = full.receiver("audit-webhook").webhook_configs[0]
    assert audit.send_resolved is False
    assert audit.http_config is not None and audit.http_config.follow_redirects is False


def test_full_integrations_listing(full: Config) -> None:
    kinds = [(kind, i) for kind, i, _ in delivered_integrations(full.receiver("team-db-pager"))]
    assert kinds == [("webhook", 0), ("pagerduty", 0)]
    og = full.receiver("ops-legacy-opsgenie").opsgenie_configs[0]
    assert og.api_key == Secret("opsgenie-api-key-secret") and og.priority == "P2"
    assert og.api_url == "https://api.opsgenie.com/" and og.send_resolved is True  # global and AM defaults


def test_full_time_intervals(full: Config) -> None:
    (business,) = full.time_intervals
    spec = business.time_intervals[0]
    assert business.name == "business-hours"
    assert spec.times is not None and (spec.times[0].start_minute, spec.times[0].end_minute) == (540, 1020)
    assert spec.location == "Europe/Paris"
    (weekends,) = full.mute_time_intervals
    assert [str(r) for r in weekends.time_intervals[0].weekdays or []] == ["6", "0"]
    assert [str(r) for r in weekends.time_intervals[1].days_of_month or []] == ["-1"]


def test_full_tocsin_section_is_opaque(full: Config) -> None:
    assert full.tocsin == {"default_org": "acme", "source": {"slot": "tocsin_full"}}
    node = compose_section(full.original, "tocsin")
    assert node is not None and node.start_mark.line + 1 == FULL.read_text().splitlines().index("tocsin:") + 2


def test_full_keeps_original_and_hides_secrets(full: Config) -> None:
    text = FULL.read_text()
    assert full.original == text
    assert full.filename == str(FULL)
    shown = repr(full)
    for secret in SECRETS:
        assert secret in text
        assert secret not in shown, secret
        assert secret not in full.redacted, secret
    assert full.redacted.count("<secret>") == len(SECRETS)
    # The redacted text is still the same YAML document apart from the values.
    assert yaml.safe_load(full.redacted).keys() == yaml.safe_load(text).keys()


def test_secret_wrapper() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and f"{s}" == "<secret>"
    assert s.value == "hunter2" and s == Secret("hunter2") and bool(Secret("")) is False


# --------------------------------------------------------------------------- invalid configs

MINI = "receivers:\n  - name: r\n"
ROUTE_KEYS = (
    "active_time_intervals, continue, group_by, group_interval, group_wait, labels, match, match_re, "
    "matchers, mute_time_intervals, receiver, repeat_interval, routes"
)

INVALID = [
    (
        "unknown-top-level",
        "route:\n  receiver: r\n" + MINI + "silences: []\n",
        [
            'am.yml:5: unknown field "silences" (allowed: event_recorder, global, inhibit_rules, mute_time_intervals, '
            "receivers, route, templates, time_intervals, tocsin, tracing)"
        ],
    ),
    (
        "bad-duration",
        "route:\n  receiver: r\n  routes:\n    - receiver: r\n      group_wait: 5x\n" + MINI,
        ['am.yml:5: route.routes[0].group_wait: invalid duration "5x": unknown unit "x"'],
    ),
    (
        "unknown-route-key",
        "route:\n  receiver: r\n  routes:\n    - grop_by: [a]\n" + MINI,
        [f'am.yml:4: route.routes[0]: unknown field "grop_by" (allowed: {ROUTE_KEYS})'],
    ),
    ("no-route", MINI, ["am.yml:1: no route provided in config"]),
    (
        "root-without-receiver",
        "route:\n  group_by: [a]\n" + MINI,
        ["am.yml:2: route: root route must specify a default receiver"],
    ),
    (
        "undefined-receiver",
        "route:\n  receiver: r\n  routes:\n    - matchers: [a=b]\n      routes:\n        - receiver: nope\n" + MINI,
        ['am.yml:6: route.routes[0].routes[0].receiver: undefined receiver "nope" used in route'],
    ),
    (
        "duplicate-receiver",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n  - name: r\n",
        ['am.yml:5: receivers[1].name: notification config name "r" is not unique'],
    ),
    (
        "root-continue-and-match",
        "route:\n  receiver: r\n  continue: true\n  match:\n    a: b\n" + MINI,
        [
            "am.yml:3: route.continue: cannot have continue in root route",
            "am.yml:4: route.match: root route must not have any matchers",
        ],
    ),
    (
        "root-mute",
        "route:\n  receiver: r\n  mute_time_intervals: [t]\n"
        + MINI
        + "time_intervals:\n  - name: t\n    time_intervals: []\n",
        ["am.yml:3: route.mute_time_intervals: root route must not have any mute time intervals"],
    ),
    (
        "group-by-wildcard-and-labels",
        "route:\n  receiver: r\n  group_by: ['...', a]\n" + MINI,
        ["am.yml:3: route.group_by: cannot have wildcard group_by (`...`) and other labels at the same time"],
    ),
    (
        "group-by-duplicate",
        "route:\n  receiver: r\n  group_by: [a, b, a]\n" + MINI,
        ['am.yml:3: route.group_by: duplicated label "a" in group_by'],
    ),
    (
        "group-interval-zero",
        "route:\n  receiver: r\n  group_interval: 0s\n" + MINI,
        ["am.yml:3: route.group_interval: group_interval cannot be zero"],
    ),
    (
        "match-label-name",
        "route:\n  receiver: r\n  routes:\n    - match:\n        bad-name: x\n" + MINI,
        ['am.yml:4: route.routes[0].match: invalid label name "bad-name"'],
    ),
    (
        "matcher-syntax",
        "route:\n  receiver: r\n  routes:\n    - matchers:\n        - a=b\n        - 'c=~\"(\"'\n" + MINI,
        [
            'am.yml:6: route.routes[0].matchers[1]: invalid matchers "c=~\\"(\\"": failed to create matcher: '
            'invalid regular expression "(": missing closing )'
        ],
    ),
    (
        "match-re-regex",
        "route:\n  receiver: r\n  routes:\n    - match_re:\n        a: '('\n" + MINI,
        ['am.yml:5: route.routes[0].match_re.a: invalid regular expression "(": missing closing )'],
    ),
    (
        "undefined-interval",
        "route:\n  receiver: r\n  routes:\n    - receiver: r\n      active_time_intervals: [x]\n" + MINI,
        ['am.yml:5: route.routes[0].active_time_intervals: undefined time interval "x" used in route'],
    ),
    (
        "duplicate-interval",
        "route:\n  receiver: r\n" + MINI + "mute_time_intervals:\n  - name: t\ntime_intervals:\n  - name: t\n",
        ['am.yml:8: time_intervals[0].name: time interval "t" is not unique'],
    ),
    (
        "email-no-smarthost-no-from",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    email_configs:\n      - to: a@example.org\n",
        [
            "am.yml:6: receivers[0].email_configs[0].smarthost: no global SMTP smarthost set",
            "am.yml:6: receivers[0].email_configs[0].from: no global SMTP from set",
        ],
    ),
    (
        "email-no-to",
        "global:\n  smtp_smarthost: h:25\n  smtp_from: a@b\nroute:\n  receiver: r\nreceivers:\n"
        "  - name: r\n    email_configs:\n      - html: x\n",
        ["am.yml:9: receivers[0].email_configs[0]: missing to address in email config"],
    ),
    (
        "email-duplicate-header",
        "global:\n  smtp_smarthost: h:25\n  smtp_from: a@b\nroute:\n  receiver: r\n"
        "receivers:\n  - name: r\n    email_configs:\n      - to: x@y\n        headers:\n          subject: a\n"
        "          Subject: b\n",
        ['am.yml:10: receivers[0].email_configs[0].headers: duplicate header "Subject" in email config'],
    ),
    (
        "email-unknown-key",
        "global:\n  smtp_smarthost: h:25\n  smtp_from: a@b\nroute:\n  receiver: r\nreceivers:\n"
        "  - name: r\n    email_configs:\n      - to: x@y\n        smtp_host: z\n",
        [
            'am.yml:10: receivers[0].email_configs[0]: unknown field "smtp_host" (allowed: auth_identity, '
            "auth_password, auth_password_file, auth_secret, auth_secret_file, auth_username, "
            "force_implicit_tls, from, headers, hello, html, require_tls, send_resolved, smarthost, text, "
            "threading, tls_config, to)"
        ],
    ),
    (
        "webhook-url-and-file",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n"
        "      - url: http://x/\n        url_file: /f\n",
        ["am.yml:7: receivers[0].webhook_configs[0].url_file: at most one of url & url_file must be configured"],
    ),
    (
        "webhook-no-url",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - send_resolved: false\n",
        ["am.yml:6: receivers[0].webhook_configs[0]: one of url or url_file must be configured"],
    ),
    (
        "webhook-bad-scheme",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: ftp://x/\n",
        ['am.yml:6: receivers[0].webhook_configs[0].url: invalid URL: unsupported scheme "ftp" for URL'],
    ),
    (
        "webhook-bool",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n"
        "      - url: http://x/\n        send_resolved: 'yes please'\n",
        ['am.yml:7: receivers[0].webhook_configs[0].send_resolved: expected a boolean, got "yes please"'],
    ),
    (
        "pagerduty-no-key",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    pagerduty_configs:\n      - severity: x\n",
        ["am.yml:6: receivers[0].pagerduty_configs[0]: missing service or routing key in PagerDuty config"],
    ),
    (
        "slack-no-url",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    slack_configs:\n      - channel: x\n",
        ["am.yml:6: receivers[0].slack_configs[0]: no Slack API URL nor App token set either inline or in a file"],
    ),
    (
        "slack-field-without-value",
        "global:\n  slack_api_url: http://s/\nroute:\n  receiver: r\nreceivers:\n"
        "  - name: r\n    slack_configs:\n      - fields:\n          - title: t\n",
        ["am.yml:9: receivers[0].slack_configs[0].fields[0]: missing value in Slack field configuration"],
    ),
    (
        "group-by-scalar",
        "route:\n  receiver: r\n  group_by: alertname\n" + MINI,
        ['am.yml:3: route.group_by: expected a list, got "alertname"'],
    ),
    (
        "duplicate-key",
        "route:\n  receiver: r\n  receiver: s\n" + MINI,
        ['am.yml:3: route: duplicate key "receiver" (first set on line 2)'],
    ),
    (
        "yaml-syntax",
        "route:\n  receiver: [r\n" + MINI,
        ["am.yml:3: YAML syntax error: expected ',' or ']', but got ':'"],
    ),
    (
        "tls-version",
        "global:\n  http_config:\n    tls_config:\n      min_version: TLS9\nroute:\n  receiver: r\n" + MINI,
        ["am.yml:4: global.http_config.tls_config.min_version: unknown TLS version: TLS9"],
    ),
    (
        "no-proxy-without-proxy",
        "global:\n  http_config:\n    no_proxy: localhost\nroute:\n  receiver: r\n" + MINI,
        ["am.yml:3: global.http_config.no_proxy: if no_proxy is configured, proxy_url must also be configured"],
    ),
    (
        "receiver-label-name",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    labels:\n      name: other\n",
        ['am.yml:5: receivers[0].labels: receiver label "name" must match receiver name "r", got "other"'],
    ),
    (
        "receiver-without-name",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n  - webhook_configs: []\n",
        ["am.yml:5: receivers[1]: missing name in receiver"],
    ),
    (
        "oauth2-refused",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://x\n"
        "        http_config:\n          oauth2: {client_id: a, client_secret: b, token_url: http://t}\n",
        ["am.yml:8: receivers[0].webhook_configs[0].http_config.oauth2: oauth2 is not supported by Tocsin: use "
         "authorization (a bearer token from credentials_file) or basic_auth"],
    ),
    (
        "webhook-payload-refused",
        "route:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://x\n"
        "        payload: {a: b}\n",
        ["am.yml:7: receivers[0].webhook_configs[0].payload: a custom webhook payload is not supported by Tocsin: "
         "the standard message (version 4) is sent; remove payload"],
    ),
    (
        "empty-list-item",  # Go's zero value of a receiver, as Alertmanager reads it
        "route:\n  receiver: r\nreceivers:\n  - name: r\n  -\n",
        ["am.yml:5: receivers[1]: missing name in receiver"],
    ),
    (
        "bad-weekday",
        "route:\n  receiver: r\n" + MINI + "time_intervals:\n  - name: t\n    time_intervals:\n"
        "      - weekdays: [monday, funday]\n",
        ["am.yml:8: time_intervals[0].time_intervals[0].weekdays[1]: funday is not a valid weekday"],
    ),
    (
        "inhibit-label",
        "route:\n  receiver: r\n" + MINI + "inhibit_rules:\n  - source_match:\n      a-b: c\n",
        ['am.yml:6: inhibit_rules[0].source_match: invalid label name "a-b"'],
    ),
    (
        "smarthost-port",
        "global:\n  smtp_smarthost: localhost\nroute:\n  receiver: r\n" + MINI,
        ["am.yml:2: global.smtp_smarthost: address localhost: missing port in address"],
    ),
    (
        "global-pair",
        "global:\n  smtp_auth_password: a\n  smtp_auth_password_file: /b\nroute:\n  receiver: r\n" + MINI,
        [
            "am.yml:3: global.smtp_auth_password_file: at most one of smtp_auth_password & smtp_auth_password_file "
            "must be configured"
        ],
    ),
    (
        "several-at-once",
        "global:\n  resolve_timeout: soon\nroute:\n  receiver: r\n  group_wait: 1q\n"
        "receivers:\n  - name: r\n    webhook_configs:\n      - url: http://x/\n        max_alerts: many\n",
        [
            'am.yml:2: global.resolve_timeout: invalid duration "soon"',
            'am.yml:5: route.group_wait: invalid duration "1q": unknown unit "q"',
            'am.yml:10: receivers[0].webhook_configs[0].max_alerts: expected an integer, got "many"',
        ],
    ),
]


@pytest.mark.parametrize(("text", "errors"), [(t, e) for _, t, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_configs(text: str, errors: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "am.yml")
    assert info.value.errors == errors
    assert str(info.value) == "\n".join(errors)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_config_text("route: 3\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yml")
    assert str(tmp_path / "absent.yml") in str(info.value)


# --------------------------------------------------------------------------- YAML and defaults details


def test_yaml_scalars_read_as_go_strings_and_merge_keys() -> None:
    text = textwrap.dedent("""
        defaults: &wh
          send_resolved: false
          max_alerts: 3
        route:
          receiver: r
          routes:
            - match: {code: 503, flag: true}
              receiver: r
        receivers:
          - name: r
            webhook_configs:
              - <<: *wh
                url: http://x/
    """)
    with pytest.raises(ConfigError, match='unknown field "defaults"'):
        load_config_text(text)
    config = load_config_text(text.replace("defaults:", "tocsin:"))
    assert config.route is not None and config.route.routes[0].match == {"code": "503", "flag": "true"}
    wh = config.receivers[0].webhook_configs[0]
    assert (wh.send_resolved, wh.max_alerts) == (False, 3)


def test_slack_app_token_becomes_bearer_authorization() -> None:
    config = load_config_text(
        textwrap.dedent("""
        global:
          slack_app_token: xoxb-secret-token
        route: {receiver: r}
        receivers:
          - name: r
            slack_configs: [{channel: '#c'}]
    """)
    )
    sc = config.receivers[0].slack_configs[0]
    assert sc.http_config is not None and sc.http_config.authorization is not None
    assert sc.http_config.authorization.type == "Bearer"
    assert sc.http_config.authorization.credentials == Secret("xoxb-secret-token")
    assert sc.api_url == Secret("https://slack.com/api/chat.postMessage")
    assert config.global_.http_config.authorization is None  # the global config is left alone
    assert "xoxb-secret-token" not in config.redacted


def test_legacy_bearer_token_becomes_authorization() -> None:
    config = load_config_text(
        textwrap.dedent("""
        route: {receiver: r}
        receivers:
          - name: r
            webhook_configs:
              - url: http://x/
                http_config: {bearer_token: abc}
    """)
    )
    http = config.receivers[0].webhook_configs[0].http_config
    assert http is not None and http.authorization is not None
    assert (http.authorization.type, http.authorization.credentials, http.bearer_token) == (
        "Bearer",
        Secret("abc"),
        None,
    )


def test_templated_webhook_url_is_accepted() -> None:
    config = load_config_text(
        "route: {receiver: r}\nreceivers:\n  - name: r\n    webhook_configs:\n"
        "      - url: 'https://x/{{ .GroupLabels.team }}'\n"
    )
    assert config.receivers[0].webhook_configs[0].url == Secret("https://x/{{ .GroupLabels.team }}")


def test_empty_global_keeps_defaults() -> None:
    config = load_config_text("global:\nroute: {receiver: r}\nreceivers: [{name: r}]\n")
    assert config.global_.resolve_timeout == 300.0
    assert config.global_.smtp_require_tls is True
    assert config.receivers[0].labels == {"name": "r"}


# --------------------------------------------------------------------------- amtool check-config


def test_check_config_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("route:\n  receiver: nope\nreceivers:\n  - name: r\n")
    ok, text = check_config_report([FULL, bad])
    assert ok is False
    assert text == (
        f"Checking '{FULL}'  SUCCESS\n"
        "Found:\n"
        " - global config\n"
        " - route\n"
        " - 2 inhibit rules\n"
        " - 7 receivers\n"
        " - 2 templates\n"
        "Receivers:\n"
        " - team-ops-mails: email[0]\n"
        " - team-x-mails: email[0]\n"
        " - team-x-pager: pagerduty[0]\n"
        " - team-y-slack: slack[0]\n"
        " - team-db-pager: webhook[0], pagerduty[0]\n"
        " - audit-webhook: webhook[0]\n"
        " - ops-legacy-opsgenie: opsgenie[0]\n"
        "\n"
        f"Checking '{bad}'  FAILED: {bad}:2: route.receiver: undefined receiver \"nope\" used in route\n"
        "\n"
    )


def test_check_config_report_with_template_checker() -> None:
    seen: list[list[str]] = []

    def checker(globs: list[str]) -> str | None:
        seen.append(globs)
        return "template: bad.tmpl:1: unexpected EOF"

    ok, text = check_config_report([FULL], check_templates=checker)
    assert ok is False
    assert seen == [[str(FIXTURE_DIR / "templates" / "*.tmpl"), "/etc/alertmanager/extra/*.tmpl"]]
    assert " - 2 templates\n  FAILED: template: bad.tmpl:1: unexpected EOF\nReceivers:\n" in text
