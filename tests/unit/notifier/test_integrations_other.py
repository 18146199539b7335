"""Pure parts of the SNS, Jira and incident.io integrations: SigV4, credentials, payloads, config checks."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.messages import Alert, Integration, SendRequest
from pipeline.application.settings import load_text
from pipeline.foundation.amconfig import ConfigError
from pipeline.foundation.amconfig.model import IncidentioConfig, JiraConfig, JiraField, SigV4Config, SnsConfig
from pipeline.foundation.amconfig.values import Secret
from stages.notifier.integrations.incidentio import INCIDENTIO_MAX_BYTES, incidentio_body
from stages.notifier.integrations.jira import is_api_v3, jira_issue, jira_search, search_url, transition_for
from stages.notifier.integrations.sigv4 import AwsCredentials, resolve_credentials, sign
from stages.notifier.integrations.sns import SNS_SMS_MAX_BYTES, sns_params, truncate_utf8
from stages.notifier.secrets import SecretError, SecretReader
from stages.notifier.templates import build_data

T0 = 1_700_000_000.0


def _req(*alerts: Alert, send_id: str = "s-1") -> SendRequest:
    alerts = alerts or (Alert(fingerprint="f1", org="acme", labels={"alertname": "Down", "instance": "a"},
                              annotations={}, starts_at=T0 - 60, ends_at=None, generator_url="http://prom"),)
    return SendRequest(id=send_id, org="acme", group_key='{}:{alertname="Down"}', group_id="g", receiver="r",
                       integration=Integration(kind="sns", index=0), flush_seq=1, status="firing",
                       group_labels={"alertname": "Down"}, alerts=list(alerts), created_at=T0)


# --------------------------------------------------------------------------- SigV4


def test_sign_matches_aws_documented_example() -> None:
    # AWS's "signature version 4" worked example (IAM ListUsers, 2015-08-30T12:36:00Z)
    now = datetime(2015, 8, 30, 12, 36, tzinfo=UTC).timestamp()
    headers = sign("GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
                   [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")], b"",
                   AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "us-east-1", "iam", now)
    assert dict(headers)["X-Amz-Date"] == "20150830T123600Z"
    assert dict(headers)["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=60, deadline=None)
@given(path=st.lists(st.sampled_from([".", "..", ""]) | st.text("abcXYZ09-_.~ %é", min_size=1, max_size=8), max_size=4),
       query=st.dictionaries(st.text("abkXY_", min_size=1, max_size=5), _text, max_size=3),
       body=st.binary(max_size=64), value=_text, token=st.sampled_from(["", "session/token+="]),
       now=st.floats(1e9, 4e9))
def test_sign_agrees_with_botocore(path: list[str], query: dict[str, str], body: bytes, value: str, token: str,
                                   now: float) -> None:
    url = "https://sns.eu-west-1.amazonaws.com:8443/" + "/".join(quote(p, safe="") for p in path)
    if query:
        url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    creds = AwsCredentials("AKID", "secret/key+", token)
    headers = sign("POST", url, [("Content-Type", "text/plain"), ("X-Custom", value)], body, creds, "eu-west-1",
                   "sns", now)
    got = dict(headers)
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={k: v for k, v in headers if k != "Authorization"})
    request.context["timestamp"] = got["X-Amz-Date"]
    signer = SigV4Auth(Credentials("AKID", "secret/key+", token or None), "sns", "eu-west-1")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert got["Authorization"].endswith(f"Signature={expected}")


# --------------------------------------------------------------------------- credentials


def _write(tmp: Path, credentials: str, config: str = "") -> dict[str, str]:
    (tmp / "credentials").write_text(textwrap.dedent(credentials))
    (tmp / "config").write_text(textwrap.dedent(config))
    return {"AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"), "AWS_CONFIG_FILE": str(tmp / "config"),
            "HOME": str(tmp)}


def _resolve(cfg: SigV4Config, env: dict[str, str]) -> tuple[AwsCredentials, str]:
    return resolve_credentials(cfg, SecretReader(env), env, "r/sns[0]")


def test_credentials_order(tmp_path: Path) -> None:
    files = _write(tmp_path, """
        [default]
        aws_access_key_id = K-DEFAULT
        aws_secret_access_key = s-default
        [ops]
        aws_access_key_id = K-OPS
        aws_secret_access_key = s-ops
        aws_session_token = t-ops
        """, """
        [default]
        region = eu-central-1
        [profile ops]
        region = us-west-2
        """)
    env_keys = {"AWS_ACCESS_KEY_ID": "K-ENV", "AWS_SECRET_ACCESS_KEY": "s-env"}
    inline = SigV4Config(access_key="K-INLINE", secret_key=Secret("s-inline"))
    assert _resolve(inline, {**files, **env_keys}) == (AwsCredentials("K-INLINE", "s-inline"), "eu-central-1")
    assert _resolve(SigV4Config(), {**files, **env_keys, "AWS_REGION": "sa-east-1"}) == (
        AwsCredentials("K-ENV", "s-env"), "sa-east-1")
    assert _resolve(SigV4Config(profile="ops"), {**files, **env_keys}) == (
        AwsCredentials("K-OPS", "s-ops", "t-ops"), "us-west-2")
    assert _resolve(SigV4Config(), {**files, **env_keys, "AWS_PROFILE": "ops"})[0].access_key == "K-OPS"
    assert _resolve(SigV4Config(region="ap-east-1"), files) == (AwsCredentials("K-DEFAULT", "s-default"), "ap-east-1")


def test_credentials_errors_say_what_to_do(tmp_path: Path) -> None:
    files = _write(tmp_path, "[sso]\nregion = x\n", "[profile sso]\nsso_session = corp\nregion = eu-west-1\n")
    with pytest.raises(SecretError, match="through sso_session, which Tocsin does not support"):
        _resolve(SigV4Config(profile="sso"), files)
    with pytest.raises(SecretError, match=r"no AWS credentials found: set sigv4\.access_key"):
        _resolve(SigV4Config(region="eu-west-1"), {"HOME": str(tmp_path / "none")})
    with pytest.raises(SecretError, match="region not configured"):
        _resolve(SigV4Config(), {"HOME": str(tmp_path / "none"), "AWS_ACCESS_KEY_ID": "k",
                                 "AWS_SECRET_ACCESS_KEY": "s"})


def test_credentials_repr_hides_secrets() -> None:
    text = repr(AwsCredentials("AKID", "very-secret", "tok-secret"))
    assert "very-secret" not in text and "tok-secret" not in text and "AKID" in text


# --------------------------------------------------------------------------- SNS payload


def _sns(**kw: Any) -> SnsConfig:
    return SnsConfig(**{"topic_arn": "arn:aws:sns:eu-west-1:1:t", **kw})


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40), limit=st.integers(0, 50))
def test_truncate_utf8_cuts_at_a_character_boundary(text: str, limit: int) -> None:
    out, cut = truncate_utf8(text, limit)
    assert len(out.encode()) <= limit or not cut
    assert text.startswith(out)
    assert cut == (len(text.encode()) > limit)
    if cut:  # as long as possible: one more character would not fit
        assert len(text[: len(out) + 1].encode()) > limit


def test_sms_is_cut_to_1600_bytes_and_marked_truncated() -> None:
    req = _req()
    cfg = _sns(topic_arn="", phone_number="+15555550100", message="é" * 1000, subject="")
    params = sns_params(req, cfg, build_data(req, "http://am"))
    assert len(params["Message"].encode()) == SNS_SMS_MAX_BYTES and params["Message"] == "é" * 800
    assert "Subject" not in params  # an empty subject is left out, as in Alertmanager
    assert params["MessageAttributes.entry.1.Name"] == "truncated"
    assert params["MessageAttributes.entry.1.Value.StringValue"] == "true"


def test_sns_addressing_template_error_fails_the_send_and_message_error_falls_back() -> None:
    req = _req()
    with pytest.raises(ValueError, match="execute 'topic_arn' template"):
        sns_params(req, _sns(topic_arn="{{ .Nope.Deeper }}"), build_data(req, "http://am"))
    errors: list[str] = []
    params = sns_params(req, _sns(message="{{ .Nope.Deeper }}"), build_data(req, "http://am"), errors=errors)
    assert params["Message"].startswith("\n\nAlerts Firing:\nLabels:") and len(errors) == 1


# --------------------------------------------------------------------------- Jira


def _jira(**kw: Any) -> JiraConfig:
    base: dict[str, Any] = {"api_url": "https://jira.example.org/rest/api/2/", "project": "OPS", "issue_type": "Bug",
                            "summary": JiraField('{{ template "jira.default.summary" . }}'),
                            "description": JiraField('{{ template "jira.default.description" . }}')}
    return JiraConfig(**{**base, **kw})


def test_jira_search_urls() -> None:
    assert search_url(_jira()) == "https://jira.example.org/rest/api/2/search"
    assert search_url(_jira(api_url="https://acme.atlassian.net/rest/api/2")) == \
        "https://acme.atlassian.net/rest/api/3/search/jql"
    assert search_url(_jira(api_type="datacenter", api_url="https://acme.atlassian.net/rest/api/2/")) == \
        "https://acme.atlassian.net/rest/api/2/search"
    assert is_api_v3("https://x/rest/api/3/") and not is_api_v3("https://x/rest/api/2")


def test_jira_search_reopen_window_only_for_firing_groups() -> None:
    cfg = _jira(reopen_transition="Reopen", reopen_duration=3600.0)
    assert jira_search(cfg, "OPS", "h", True)["jql"].startswith("(resolutiondate is EMPTY OR resolutiondate >= -60m)")
    assert jira_search(cfg, "OPS", "h", False)["jql"].startswith("statusCategory != Done and ")
    assert jira_search(_jira(reopen_duration=3600.0), "OPS", "h", True)["jql"].startswith("statusCategory != Done")


def test_jira_issue_v3_description_must_be_json_and_updates_skip_disabled_fields() -> None:
    req = _req()
    data = build_data(req, "http://am")
    adf = '{"type": "doc", "version": 1, "content": []}'
    cfg = _jira(api_url="https://jira.example.org/rest/api/3", description=JiraField(adf, False))
    assert jira_issue(cfg, data, "h", update=False)["fields"]["description"] == {
        "type": "doc", "version": 1, "content": []}
    assert "description" not in jira_issue(cfg, data, "h", update=True)["fields"]
    with pytest.raises(ValueError, match="invalid JSON for API v3"):
        jira_issue(_jira(api_url="https://jira.example.org/rest/api/3"), data, "h", update=False)
    with pytest.raises(ValueError, match="project template"):
        jira_issue(_jira(project="{{ .Nope.Deeper }}"), data, "h", update=False)


def test_jira_summary_is_cut_to_255_characters() -> None:
    req = _req()
    fields = jira_issue(_jira(summary=JiraField("x" * 300)), build_data(req, "http://am"), "h", update=False)["fields"]
    assert fields["summary"] == "x" * 254 + "…"


@pytest.mark.parametrize(("category", "firing", "expected"), [
    ("done", True, "Reopen"), ("new", True, ""), ("done", False, ""), ("indeterminate", False, "Done")])
def test_jira_transition_for(category: str, firing: bool, expected: str) -> None:
    issue = {"key": "OPS-1", "fields": {"status": {"statusCategory": {"key": category}}}}
    cfg = _jira(reopen_transition="Reopen", resolve_transition="Done")
    assert transition_for(cfg, issue, firing) == expected


# --------------------------------------------------------------------------- incident.io


def test_incidentio_body_too_large_keeps_the_first_alert() -> None:
    big = "x" * (INCIDENTIO_MAX_BYTES // 4)
    alerts = [Alert(fingerprint=f"f{i}", org="acme", labels={"alertname": "Down", "i": str(i)},
                    annotations={"description": big}, starts_at=T0 - 60, ends_at=None, generator_url="")
              for i in range(5)]
    body = msgspec.json.decode(incidentio_body(_req(*alerts), IncidentioConfig(), "http://am"))
    assert [a["labels"]["i"] for a in body["alerts"]] == ["0"]
    assert body["version"] == "1" and len(body["deduplication_key"]) == 64
    small = msgspec.json.decode(incidentio_body(_req(*alerts[:2]), IncidentioConfig(), "http://am"))
    assert len(small["alerts"]) == 2


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("yaml", "error"), [
    ("sns_configs: [{sigv4: {region: r}}]", "sns_configs[0]: must provide either a Target ARN"),
    ("sns_configs: [{topic_arn: a, target_arn: b}]", "sns_configs[0].target_arn: must provide either"),
    ("sns_configs: [{topic_arn: a, sigv4: {access_key: k}}]", "sigv4: must provide a AWS SigV4 Access key and Secret"),
    ("sns_configs: [{topic_arn: a, sigv4: {external_id: e}}]", "external_id can only be used with role_arn"),
    ("sns_configs: [{topic_arn: a, sigv4: {service_name: aps}}]", "service_name is not used by sns_configs"),
    ("jira_configs: [{api_url: 'http://j/', issue_type: Bug}]", "missing project in jira_config"),
    ("jira_configs: [{api_url: 'http://j/', project: P}]", "missing issue_type in jira_config"),
    ("jira_configs: [{project: P, issue_type: B}]", "api_url: no global Jira Cloud URL set"),
    ("jira_configs: [{api_url: 'http://j/', project: P, issue_type: B, api_type: x}]", "unknown api_type"),
    ("jira_configs: [{api_url: 'http://j/', project: P, issue_type: B, summary: [a]}]", "summary must be a string"),
    ("jira_configs: [{api_url: 'http://j/', project: P, issue_type: B, description: {template: '{{ .X '}}]",
     "description: template: line 1"),
    ("incidentio_configs: [{alert_source_token: t}]", "one of url or url_file must be configured"),
    ("incidentio_configs: [{url: 'http://i/', url_file: f, alert_source_token: t}]", "at most one of url & url_file"),
    ("incidentio_configs: [{url: 'http://i/', alert_source_token: t, http_config: {authorization: {credentials: c}}}]",
     "cannot specify alert_source_token"),
    ("incidentio_configs: [{url: 'http://i/', http_config: {follow_redirects: false}}]",
     "at least one of alert_source_token"),
])
def test_config_errors_name_the_line(yaml: str, error: str) -> None:
    text = f"route: {{receiver: r}}\nreceivers:\n- name: r\n  {yaml}\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, "am.yml")
    assert any(e.startswith("am.yml:4: receivers[0].") and error in e for e in info.value.errors), info.value.errors


def test_config_defaults_from_global() -> None:
    loaded = load_text(textwrap.dedent("""
        global:
          jira_api_url: 'https://acme.atlassian.net/rest/api/2/'
          http_config: {follow_redirects: false}
        route: {receiver: r}
        receivers:
        - name: r
          jira_configs: [{project: OPS, issue_type: Bug, summary: plain}]
          sns_configs: [{phone_number: '+1555'}]
        """), "am.yml")
    rcv = loaded.config.receivers[0]
    jira = rcv.jira_configs[0]
    assert jira.api_url == "https://acme.atlassian.net/rest/api/2/" and jira.summary == JiraField("plain")
    assert jira.description == JiraField('{{ template "jira.default.description" . }}')
    assert jira.http_config is not None and jira.http_config.follow_redirects is False
    sns = rcv.sns_configs[0]
    assert sns.send_resolved is True and sns.subject == '{{ template "sns.default.subject" . }}'
    assert sns.http_config is not None and sns.http_config.follow_redirects is False
