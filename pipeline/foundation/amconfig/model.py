"""The alertmanager.yml model: one frozen msgspec Struct per YAML mapping.

Attribute names are Alertmanager's YAML keys; Python keywords get a trailing underscore
(``continue_``, ``from_``, ``global_``, ``class_``) and keep their YAML name as the field's
encode name. Field types carry ``Conv`` directives (see ``values``) that the loader uses to
parse scalars; each Struct's ``_finish`` checks what Alertmanager checks while unmarshalling
that mapping and may normalise it (defaults that depend on other fields).

Secrets are ``Secret`` instances and opaque sections are ``Raw`` mappings, so ``repr()`` of a
loaded config shows no credentials. Every receiver kind Alertmanager knows has its Struct
(:data:`INTEGRATION_KINDS`), and an unknown field of any of them is an error.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, NamedTuple, Self

import msgspec

from contracts.matchers import Matcher, MatcherError, compile_go_regex, go_quote, legacy_match, parse_matchers
from pipeline.foundation.amconfig.durations import parse_duration, parse_go_duration
from pipeline.foundation.amconfig.timeintervals import (
    load_location,
    parse_day_of_month_range,
    parse_month_range,
    parse_time_of_day,
    parse_weekday_range,
    parse_year_range,
)
from pipeline.foundation.amconfig.values import (
    Conv,
    HostPort,
    InclusiveRange,
    Raw,
    Secret,
    canonical_mime_header,
    check_label_name,
    check_legacy_label_name,
    parse_host_port,
    parse_secret_template_url,
    parse_secret_url,
    parse_url,
)

__all__ = [
    "INTEGRATION_KINDS",
    "Authorization",
    "BasicAuth",
    "Config",
    "EmailConfig",
    "EmailThreading",
    "GlobalConfig",
    "HTTPConfig",
    "HTTPHeader",
    "IncidentioConfig",
    "InhibitRule",
    "JiraConfig",
    "JiraField",
    "Node",
    "OAuth2",
    "OpsgenieConfig",
    "OpsgenieResponder",
    "PagerdutyConfig",
    "PagerdutyImage",
    "PagerdutyLink",
    "Problem",
    "PushoverConfig",
    "Receiver",
    "RouteConfig",
    "SigV4Config",
    "SlackAction",
    "SlackConfig",
    "SlackConfirmationField",
    "SlackField",
    "SnsConfig",
    "TLSConfig",
    "TimeInterval",
    "TimeIntervalSpec",
    "TimeRange",
    "VictorOpsConfig",
    "WebhookConfig",
    "WechatConfig",
]

_q = go_quote

# (python field name or None for the whole mapping, message)
Problem = tuple[str | None, str]


def _check_regex(text: str) -> str:
    try:
        compile_go_regex(text)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None
    return text


def _check_matchers(text: str) -> list[Matcher]:
    try:
        return parse_matchers(text)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None


PromDuration = Annotated[float, Conv(parse_duration)]
GoDuration = Annotated[float, Conv(parse_go_duration)]
URL = Annotated[str, Conv(parse_url)]
SecretURL = Annotated[Secret, Conv(parse_secret_url)]
SecretTemplateURL = Annotated[Secret, Conv(parse_secret_template_url)]
Matchers = Annotated[list[Matcher], Conv(_check_matchers, each=True, flatten=True)]
RegexMap = dict[str, Annotated[str, Conv(_check_regex)]]
HostPortField = Annotated[HostPort | None, Conv(parse_host_port)]


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every config mapping."""

    # Fields that are not YAML keys (set by the loader, never read from the file).
    __not_yaml__: ClassVar[frozenset[str]] = frozenset()

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, []


def _at_most_one(obj: Node, *names: str) -> list[Problem]:
    set_names = [n for n in names if getattr(obj, n)]
    if len(set_names) > 1:
        return [(set_names[-1], f"at most one of {' & '.join(names)} must be configured")]
    return []


# --------------------------------------------------------------------------- HTTP client


class TLSConfig(Node, frozen=True):
    ca: str = ""
    ca_file: str = ""
    ca_ref: str = ""
    cert: str = ""
    cert_file: str = ""
    cert_ref: str = ""
    key: Secret | None = None
    key_file: str = ""
    key_ref: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""
    max_version: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = [
            *_at_most_one(self, "ca", "ca_file", "ca_ref"),
            *_at_most_one(self, "cert", "cert_file", "cert_ref"),
            *_at_most_one(self, "key", "key_file", "key_ref"),
        ]
        for name in ("min_version", "max_version"):
            value = getattr(self, name)
            if value and value not in ("TLS10", "TLS11", "TLS12", "TLS13"):
                problems.append((name, f"unknown TLS version: {value}"))
        has_cert = bool(self.cert or self.cert_file or self.cert_ref)
        has_key = bool(self.key or self.key_file or self.key_ref)
        if has_cert and not has_key:
            problems.append((None, "a client certificate needs a key (key, key_file or key_ref)"))
        if has_key and not has_cert:
            problems.append((None, "a client key needs a certificate (cert, cert_file or cert_ref)"))
        return self, problems


class BasicAuth(Node, frozen=True):
    username: str = ""
    username_file: str = ""
    username_ref: str = ""
    password: Secret | None = None
    password_file: str = ""
    password_ref: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, [
            *_at_most_one(self, "username", "username_file", "username_ref"),
            *_at_most_one(self, "password", "password_file", "password_ref"),
        ]


class Authorization(Node, frozen=True):
    type: str = ""
    credentials: Secret | None = None
    credentials_file: str = ""
    credentials_ref: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = _at_most_one(self, "credentials", "credentials_file", "credentials_ref")
        kind = self.type.strip() or "Bearer"
        if kind.lower() == "basic":
            problems.append(("type", 'authorization type cannot be set to "basic", use "basic_auth" instead'))
        return msgspec.structs.replace(self, type=kind), problems


class OAuth2(Node, frozen=True):
    client_id: str = ""
    client_secret: Secret | None = None
    client_secret_file: str = ""
    client_secret_ref: str = ""
    client_certificate_key_id: str = ""
    client_certificate_key: Secret | None = None
    client_certificate_key_file: str = ""
    client_certificate_key_ref: str = ""
    grant_type: str = ""
    signature_algorithm: str = ""
    iss: str = ""
    audience: str = ""
    claims: dict[str, Any] = {}
    scopes: list[str] = []
    token_url: str = ""
    endpoint_params: dict[str, str] = {}
    tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)
    proxy_url: str = ""  # any URL Go can parse, as in Prometheus (no scheme check)
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[Secret]] = {}

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.client_id:
            problems.append((None, "oauth2 client_id must be configured"))
        if not self.token_url:
            problems.append((None, "oauth2 token_url must be configured"))
        if self.grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problems += _at_most_one(
                self, "client_certificate_key", "client_certificate_key_file", "client_certificate_key_ref"
            )
        else:
            problems += _at_most_one(self, "client_secret", "client_secret_file", "client_secret_ref")
        return self, problems


class HTTPHeader(Node, frozen=True):
    values: list[str] = []
    secrets: list[Secret] = []
    files: list[str] = []


_RESERVED_HTTP_HEADERS = frozenset(
    {
        "Authorization",
        "Host",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Www-Authenticate",
        "Accept-Encoding",
        "X-Prometheus-Remote-Write-Version",
        "X-Prometheus-Remote-Read-Version",
        "X-Prometheus-Scrape-Timeout-Seconds",
        "X-Amz-Date",
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
    }
)


class HTTPConfig(Node, frozen=True):
    """Prometheus' common ``http_config`` (client auth, TLS, proxy, redirects)."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    oauth2: OAuth2 | None = None
    bearer_token: Secret | None = None
    bearer_token_file: str = ""
    tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)
    follow_redirects: bool = True
    enable_http2: bool = True
    proxy_url: str = ""  # any URL Go can parse, as in Prometheus (no scheme check)
    no_proxy: str = ""
    proxy_from_environment: bool = False
    proxy_connect_header: dict[str, list[Secret]] = {}
    http_headers: dict[str, HTTPHeader] | None = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = _at_most_one(self, "bearer_token", "bearer_token_file")
        has_bearer = bool(self.bearer_token or self.bearer_token_file)
        if (self.basic_auth or self.oauth2) and has_bearer:
            problems.append(
                (None, "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured")
            )
        if self.authorization is not None:
            if has_bearer:
                problems.append(
                    ("authorization", "authorization is not compatible with bearer_token & bearer_token_file")
                )
            if self.basic_auth or self.oauth2:
                problems.append(
                    ("authorization", "at most one of basic_auth, oauth2 & authorization must be configured")
                )
        if self.oauth2 is not None and self.basic_auth is not None:
            problems.append(("oauth2", "at most one of basic_auth, oauth2 & authorization must be configured"))
        elif self.oauth2 is not None:  # refused at load, never a notification that fails at 3 a.m.
            problems.append(("oauth2", "oauth2 is not supported by Tocsin: use authorization (a bearer token from "
                             "credentials_file) or basic_auth"))
        if self.proxy_connect_header and not self.proxy_from_environment and not self.proxy_url:
            problems.append(
                (
                    "proxy_connect_header",
                    "if proxy_connect_header is configured, proxy_url or "
                    "proxy_from_environment must also be configured",
                )
            )
        if self.proxy_from_environment and self.proxy_url:
            problems.append(("proxy_url", "if proxy_from_environment is configured, proxy_url must not be configured"))
        if self.proxy_from_environment and self.no_proxy:
            problems.append(("no_proxy", "if proxy_from_environment is configured, no_proxy must not be configured"))
        if self.no_proxy and not self.proxy_url:
            problems.append(("no_proxy", "if no_proxy is configured, proxy_url must also be configured"))
        for name in self.http_headers or {}:
            if canonical_mime_header(name) in _RESERVED_HTTP_HEADERS:
                problems.append(("http_headers", f"setting header {_q(canonical_mime_header(name))} is not allowed"))
        out = self
        if self.authorization is None and has_bearer and not problems:
            # Like Prometheus: the legacy bearer fields become an Authorization header.
            auth = Authorization(type="Bearer", credentials=self.bearer_token, credentials_file=self.bearer_token_file)
            out = msgspec.structs.replace(self, authorization=auth, bearer_token=None, bearer_token_file="")
        return out, problems


# --------------------------------------------------------------------------- global


class GlobalConfig(Node, frozen=True):
    resolve_timeout: PromDuration = 300.0
    http_config: HTTPConfig = msgspec.field(default_factory=HTTPConfig)

    smtp_from: str = ""
    smtp_hello: str = "localhost"
    smtp_smarthost: HostPortField = None
    smtp_auth_username: str = ""
    smtp_auth_password: Secret | None = None
    smtp_auth_password_file: str = ""
    smtp_auth_secret: Secret | None = None
    smtp_auth_secret_file: str = ""
    smtp_auth_identity: str = ""
    smtp_require_tls: bool = True
    smtp_tls_config: TLSConfig = msgspec.field(default_factory=TLSConfig)
    smtp_force_implicit_tls: bool | None = None

    slack_api_url: SecretURL | None = None
    slack_api_url_file: str = ""
    slack_app_token: Secret | None = None
    slack_app_token_file: str = ""
    slack_app_url: URL = "https://slack.com/api/chat.postMessage"
    pagerduty_url: URL = "https://events.pagerduty.com/v2/enqueue"

    jira_api_url: URL = ""
    opsgenie_api_url: URL = "https://api.opsgenie.com/"
    opsgenie_api_key: Secret | None = None
    opsgenie_api_key_file: str = ""
    wechat_api_url: URL = "https://qyapi.weixin.qq.com/cgi-bin/"
    wechat_api_secret: Secret | None = None
    wechat_api_secret_file: str = ""
    wechat_api_corp_id: str = ""
    victorops_api_url: URL = "https://alert.victorops.com/integrations/generic/20131114/alert/"
    victorops_api_key: Secret | None = None
    victorops_api_key_file: str = ""
    telegram_api_url: URL = "https://api.telegram.org"
    telegram_bot_token: Secret | None = None
    telegram_bot_token_file: str = ""
    webex_api_url: URL = "https://webexapis.com/v1/messages"
    rocketchat_api_url: URL = "https://open.rocket.chat/"
    rocketchat_token: Secret | None = None
    rocketchat_token_file: str = ""
    rocketchat_token_id: Secret | None = None
    rocketchat_token_id_file: str = ""
    mattermost_webhook_url: SecretURL | None = None
    mattermost_webhook_url_file: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for name in (
            "slack_app_token",
            "slack_api_url",
            "opsgenie_api_key",
            "victorops_api_key",
            "telegram_bot_token",
            "smtp_auth_password",
            "rocketchat_token",
            "rocketchat_token_id",
            "smtp_auth_secret",
            "wechat_api_secret",
            "mattermost_webhook_url",
        ):
            problems += _at_most_one(self, name, name + "_file")
        has_token = bool(self.slack_app_token or self.slack_app_token_file)
        has_url = bool(self.slack_api_url or self.slack_api_url_file)
        if has_token and has_url:
            # Tolerated only when the URL is the app URL (a documented workaround).
            url = self.slack_api_url.value if self.slack_api_url else ""
            if url != self.slack_app_url:
                problems.append(
                    (
                        "slack_app_token",
                        "at most one of slack_app_token/slack_app_token_file & "
                        "slack_api_url/slack_api_url_file must be configured",
                    )
                )
        return self, problems


# --------------------------------------------------------------------------- integrations


class WebhookConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    url: SecretTemplateURL | None = None
    url_file: str = ""
    max_alerts: int = 0
    timeout: GoDuration = 0.0
    payload: Any = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.url and not self.url_file:
            problems.append((None, "one of url or url_file must be configured"))
        if self.url and self.url_file:
            problems.append(("url_file", "at most one of url & url_file must be configured"))
        if self.max_alerts < 0:
            problems.append(("max_alerts", "max_alerts must not be negative"))
        if self.payload is not None:  # refused rather than sending a message other than the one configured
            problems.append(("payload", "a custom webhook payload is not supported by Tocsin: the standard "
                             "message (version 4) is sent; remove payload"))
        return self, problems


class EmailThreading(Node, frozen=True):
    enabled: bool = False
    thread_by_date: str = ""


class EmailConfig(Node, frozen=True):
    send_resolved: bool = False
    to: str = ""
    from_: str = msgspec.field(default="", name="from")
    hello: str = ""
    smarthost: HostPortField = None
    auth_username: str = ""
    auth_password: Secret | None = None
    auth_password_file: str = ""
    auth_secret: Secret | None = None
    auth_secret_file: str = ""
    auth_identity: str = ""
    headers: dict[str, str] = {}
    html: str = '{{ template "email.default.html" . }}'
    text: str = ""
    require_tls: bool | None = None
    tls_config: TLSConfig | None = None
    force_implicit_tls: bool | None = None
    threading: EmailThreading = msgspec.field(default_factory=EmailThreading)

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.to:
            problems.append((None, "missing to address in email config"))
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            canon = canonical_mime_header(key)
            if canon in headers:
                problems.append(("headers", f"duplicate header {_q(canon)} in email config"))
            headers[canon] = value
        if self.threading.enabled:
            if "References" in headers:
                problems.append(
                    (
                        "threading",
                        "conflicting configuration: threading.enabled conflicts with custom References header",
                    )
                )
            if "In-Reply-To" in headers:
                problems.append(
                    (
                        "threading",
                        "conflicting configuration: threading.enabled conflicts with custom In-Reply-To header",
                    )
                )
            if self.threading.thread_by_date not in ("none", "daily"):
                problems.append(("threading", "threading.thread_by_date must be either 'none' or 'daily'"))
        return msgspec.structs.replace(self, headers=headers), problems


class SlackConfirmationField(Node, frozen=True):
    text: str = ""
    title: str = ""
    ok_text: str = ""
    dismiss_text: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, [] if self.text else [(None, "missing text in Slack confirmation configuration")]


class SlackAction(Node, frozen=True):
    type: str = ""
    text: str = ""
    url: str = ""
    style: str = ""
    name: str = ""
    value: str = ""
    confirm: SlackConfirmationField | None = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.type:
            problems.append((None, "missing type in Slack action configuration"))
        if not self.text:
            problems.append((None, "missing text in Slack action configuration"))
        if self.url:  # a link button: message-action fields are dropped, as Alertmanager does
            return msgspec.structs.replace(self, name="", value="", confirm=None), problems
        if not self.name:
            problems.append((None, "missing name or url in Slack action configuration"))
        return self, problems


class SlackField(Node, frozen=True):
    title: str = ""
    value: str = ""
    short: bool | None = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.title:
            problems.append((None, "missing title in Slack field configuration"))
        if not self.value:
            problems.append((None, "missing value in Slack field configuration"))
        return self, problems


class SlackConfig(Node, frozen=True):
    send_resolved: bool = False
    http_config: HTTPConfig | None = None
    api_url: SecretURL | None = None
    api_url_file: str = ""
    app_token: Secret | None = None
    app_token_file: str = ""
    app_url: URL = ""
    channel: str = ""
    username: str = '{{ template "slack.default.username" . }}'
    color: str = '{{ template "slack.default.color" . }}'
    title: str = '{{ template "slack.default.title" . }}'
    title_link: str = '{{ template "slack.default.titlelink" . }}'
    pretext: str = '{{ template "slack.default.pretext" . }}'
    text: str = '{{ template "slack.default.text" . }}'
    message_text: str = ""
    fields: list[SlackField] = []
    short_fields: bool = False
    footer: str = '{{ template "slack.default.footer" . }}'
    fallback: str = '{{ template "slack.default.fallback" . }}'
    callback_id: str = '{{ template "slack.default.callbackid" . }}'
    icon_emoji: str = '{{ template "slack.default.iconemoji" . }}'
    icon_url: str = '{{ template "slack.default.iconurl" . }}'
    image_url: str = ""
    thumb_url: str = ""
    link_names: bool = False
    mrkdwn_in: list[str] = []
    actions: list[SlackAction] = []
    update_message: bool = False
    timeout: GoDuration = 0.0

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = _at_most_one(self, "api_url", "api_url_file") + _at_most_one(self, "app_token", "app_token_file")
        if (self.api_url or self.api_url_file) and (self.app_token or self.app_token_file):
            problems.append(
                ("app_token", "at most one of api_url/api_url_file & app_token/app_token_file must be configured")
            )
        if self.update_message and (self.api_url.value if self.api_url else "") != (
            "https://slack.com/api/chat.postMessage"
        ):
            problems.append(
                (
                    "update_message",
                    "update_message can only be used with bot tokens. api_url must "
                    "be set to https://slack.com/api/chat.postMessage",
                )
            )
        return self, problems


class PagerdutyLink(Node, frozen=True):
    href: str = ""
    text: str = ""


class PagerdutyImage(Node, frozen=True):
    src: str = ""
    alt: str = ""
    href: str = ""


_PAGERDUTY_DEFAULT_DETAILS = {
    "firing": "{{ .Alerts.Firing | toJson }}",
    "resolved": "{{ .Alerts.Resolved | toJson }}",
    "num_firing": "{{ .Alerts.Firing | len }}",
    "num_resolved": "{{ .Alerts.Resolved | len }}",
}


class PagerdutyConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    service_key: Secret | None = None
    service_key_file: str = ""
    routing_key: Secret | None = None
    routing_key_file: str = ""
    url: URL = ""
    client: str = '{{ template "pagerduty.default.client" . }}'
    client_url: str = '{{ template "pagerduty.default.clientURL" . }}'
    description: str = '{{ template "pagerduty.default.description" .}}'
    details: dict[str, Any] = {}
    images: list[PagerdutyImage] = []
    links: list[PagerdutyLink] = []
    source: str = ""
    severity: str = ""
    class_: str = msgspec.field(default="", name="class")
    component: str = ""
    group: str = ""
    timeout: GoDuration = 0.0

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not (self.routing_key or self.service_key or self.routing_key_file or self.service_key_file):
            problems.append((None, "missing service or routing key in PagerDuty config"))
        problems += _at_most_one(self, "routing_key", "routing_key_file")
        problems += _at_most_one(self, "service_key", "service_key_file")
        details = {**_PAGERDUTY_DEFAULT_DETAILS, **self.details}
        return msgspec.structs.replace(self, details=details, source=self.source or self.client), problems


# Every receiver kind, in the order Alertmanager builds a receiver's integrations.
INTEGRATION_KINDS = (
    "webhook",
    "email",
    "pagerduty",
    "opsgenie",
    "wechat",
    "slack",
    "victorops",
    "pushover",
    "sns",
    "telegram",
    "discord",
    "webex",
    "msteams",
    "msteamsv2",
    "jira",
    "rocketchat",
    "mattermost",
    "incidentio",
)

# --------------------------------------------------------------------------- integrations: chat
# discord, mattermost, msteams, msteamsv2, rocketchat, webex, telegram: one Struct each.
# A kind's Struct may define ``with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]``
# (what Alertmanager's Config.UnmarshalYAML fills in from ``global``; ``receivers.apply_defaults``
# calls it).

__all__ += [
    "DiscordConfig",
    "MSTeamsConfig",
    "MSTeamsV2Config",
    "MattermostAttachment",
    "MattermostConfig",
    "MattermostField",
    "MattermostPriority",
    "MattermostProps",
    "RocketchatAction",
    "RocketchatConfig",
    "RocketchatField",
    "TelegramConfig",
    "WebexConfig",
]


def _webhook_url_problems(obj: DiscordConfig | MSTeamsConfig | MSTeamsV2Config) -> list[Problem]:
    """Alertmanager's check of ``webhook_url`` / ``webhook_url_file`` (Discord, Teams)."""
    if not obj.webhook_url and not obj.webhook_url_file:
        return [(None, "one of webhook_url or webhook_url_file must be configured")]
    return _at_most_one(obj, "webhook_url", "webhook_url_file")


class DiscordConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    webhook_url: SecretURL | None = None
    webhook_url_file: str = ""
    content: str = ""
    title: str = '{{ template "discord.default.title" . }}'
    message: str = '{{ template "discord.default.message" . }}'
    username: str = ""  # sent as written (not a template), as in Alertmanager
    avatar_url: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _webhook_url_problems(self)


class MSTeamsConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    webhook_url: SecretURL | None = None
    webhook_url_file: str = ""
    title: str = '{{ template "msteams.default.title" . }}'
    summary: str = '{{ template "msteams.default.summary" . }}'
    text: str = '{{ template "msteams.default.text" . }}'

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _webhook_url_problems(self)


class MSTeamsV2Config(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    webhook_url: SecretURL | None = None
    webhook_url_file: str = ""
    title: str = '{{ template "msteamsv2.default.title" . }}'
    text: str = '{{ template "msteamsv2.default.text" . }}'

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _webhook_url_problems(self)

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        http = self.http_config
        if http is None:
            http = g.http_config
        elif not http.proxy_url and not http.proxy_from_environment and g.http_config.proxy_url:
            # Alertmanager: an own http_config without a proxy still takes the global proxy_url
            http = msgspec.structs.replace(http, proxy_url=g.http_config.proxy_url)
        return msgspec.structs.replace(self, http_config=http), []


class TelegramConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_url: URL = ""
    bot_token: Secret | None = None
    bot_token_file: str = ""
    chat_id: int = 0
    chat_id_file: str = ""
    message_thread_id: int = 0
    message: str = '{{ template "telegram.default.message" . }}'
    disable_notifications: bool = False
    parse_mode: str = "HTML"

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = _at_most_one(self, "bot_token", "bot_token_file")
        if not self.chat_id and not self.chat_id_file:
            problems.append((None, "missing chat_id or chat_id_file on telegram_config"))
        problems += _at_most_one(self, "chat_id", "chat_id_file")
        if self.parse_mode not in ("", "Markdown", "MarkdownV2", "HTML"):
            problems.append(
                (
                    "parse_mode",
                    "unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string",
                )
            )
        return self, problems

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes: dict[str, Any] = {
            "http_config": self.http_config or g.http_config,
            "api_url": self.api_url or g.telegram_api_url,
        }
        problems: list[Problem] = []
        if not self.bot_token and not self.bot_token_file:
            if not g.telegram_bot_token and not g.telegram_bot_token_file:
                problems.append((None, "missing bot_token or bot_token_file on telegram_config"))
            changes["bot_token"] = g.telegram_bot_token
            changes["bot_token_file"] = g.telegram_bot_token_file
        return msgspec.structs.replace(self, **changes), problems


class WebexConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_url: URL = ""
    message: str = '{{ template "webex.default.message" . }}'
    room_id: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.room_id:
            problems.append(("room_id", "missing room_id on webex_config"))
        # the bot's token: http_config.authorization (bearer_token is turned into it)
        if self.http_config is None or self.http_config.authorization is None:
            problems.append(("http_config", "missing webex_configs.http_config.authorization"))
        return self, problems

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        return msgspec.structs.replace(
            self, http_config=self.http_config or g.http_config, api_url=self.api_url or g.webex_api_url
        ), []


class RocketchatField(Node, frozen=True):
    title: str = ""
    value: str = ""
    short: bool | None = None


class RocketchatAction(Node, frozen=True):
    """A button. Alertmanager reads these keys (Go's lower-cased field names) but sends only
    ``text``, ``url`` and ``msg`` (its type is always "button"); the others are accepted and
    unused there, as here."""

    type: str = ""
    text: str = ""
    url: str = ""
    msg: str = ""
    imageurl: str = ""
    iswebview: bool = False
    webviewheightratio: str = ""
    msginchatwindow: bool = False
    msgprocessingtype: str = ""


class RocketchatConfig(Node, frozen=True):
    send_resolved: bool = False
    http_config: HTTPConfig | None = None
    api_url: URL = ""
    token_id: Secret | None = None
    token_id_file: str = ""
    token: Secret | None = None
    token_file: str = ""
    channel: str = ""
    color: str = '{{ if eq .Status "firing" }}red{{ else }}green{{ end }}'
    title: str = '{{ template "rocketchat.default.title" . }}'
    title_link: str = '{{ template "rocketchat.default.titlelink" . }}'
    text: str = '{{ template "rocketchat.default.text" . }}'
    fields: list[RocketchatField] = []
    short_fields: bool = False
    emoji: str = '{{ template "rocketchat.default.emoji" . }}'
    icon_url: str = '{{ template "rocketchat.default.iconurl" . }}'
    image_url: str = ""
    thumb_url: str = ""
    link_names: bool = False  # accepted and unused, as in Alertmanager
    actions: list[RocketchatAction] = []

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _at_most_one(self, "token", "token_file") + _at_most_one(self, "token_id", "token_id_file")

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes: dict[str, Any] = {
            "http_config": self.http_config or g.http_config,
            "api_url": self.api_url or g.rocketchat_api_url,
        }
        problems: list[Problem] = []
        if not self.token_id and not self.token_id_file:
            changes["token_id"], changes["token_id_file"] = g.rocketchat_token_id, g.rocketchat_token_id_file
            if not g.rocketchat_token_id and not g.rocketchat_token_id_file:
                problems.append((None, "no global Rocketchat TokenID set either inline or in a file"))
        if not self.token and not self.token_file:
            changes["token"], changes["token_file"] = g.rocketchat_token, g.rocketchat_token_file
            if not g.rocketchat_token and not g.rocketchat_token_file:
                problems.append((None, "no global Rocketchat Token set either inline or in a file"))
        return msgspec.structs.replace(self, **changes), problems


class MattermostField(Node, frozen=True):
    title: str = ""
    value: str = ""
    short: bool | None = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.title:
            problems.append((None, "missing title in Mattermost field configuration"))
        if not self.value:
            problems.append((None, "missing value in Mattermost field configuration"))
        return self, problems


class MattermostAttachment(Node, frozen=True):
    fallback: str = ""
    color: str = ""
    pretext: str = ""
    text: str = ""
    author_name: str = ""
    author_link: str = ""
    author_icon: str = ""
    title: str = ""
    title_link: str = ""
    fields: list[MattermostField] = []
    thumb_url: str = ""
    footer: str = ""
    footer_icon: str = ""
    image_url: str = ""


class MattermostProps(Node, frozen=True):
    card: str = ""


class MattermostPriority(Node, frozen=True):
    priority: str = ""
    requested_ack: bool = False
    persistent_notifications: bool = False


class MattermostConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    webhook_url: SecretURL | None = None
    webhook_url_file: str = ""
    channel: str = ""
    username: str = '{{ template "mattermost.default.username" . }}'
    text: str = '{{ template "mattermost.default.text" . }}'
    fallback: str = '{{ template "mattermost.default.fallback" . }}'
    color: str = '{{ template "mattermost.default.color" . }}'
    pretext: str = ""
    author_name: str = ""
    author_link: str = ""
    author_icon: str = ""
    title: str = '{{ template "mattermost.default.title" . }}'
    title_link: str = '{{ template "mattermost.default.titlelink" . }}'
    fields: list[MattermostField] = []
    thumb_url: str = ""
    footer: str = ""
    footer_icon: str = ""
    image_url: str = ""
    icon_url: str = ""
    icon_emoji: str = ""
    attachments: list[MattermostAttachment] = []
    type: str = ""
    props: MattermostProps | None = None
    priority: MattermostPriority | None = None

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _at_most_one(self, "webhook_url", "webhook_url_file")

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes: dict[str, Any] = {"http_config": self.http_config or g.http_config}
        problems: list[Problem] = []
        if not self.webhook_url and not self.webhook_url_file:
            if not g.mattermost_webhook_url and not g.mattermost_webhook_url_file:
                problems.append((None, "missing webhook_url or webhook_url_file on mattermost_config"))
            changes["webhook_url"] = g.mattermost_webhook_url
            changes["webhook_url_file"] = g.mattermost_webhook_url_file
        return msgspec.structs.replace(self, **changes), problems


# (end of chat)

# --------------------------------------------------------------------------- integrations: incident
# opsgenie, victorops, pushover, wechat


def _secret_pair(obj: Node, name: str, g: GlobalConfig, gname: str) -> dict[str, Any]:
    """``name``/``name_file`` from global ``gname`` when neither is set locally (the pair moves together,
    so a local file is never shadowed by a global inline key)."""
    if getattr(obj, name) or getattr(obj, name + "_file"):
        return {}
    return {name: getattr(g, gname), name + "_file": getattr(g, gname + "_file")}


def _slash(url: str) -> str:
    return url if not url or url.endswith("/") else url + "/"


_OPSGENIE_TYPES = ("team", "teams", "user", "escalation", "schedule")


class OpsgenieResponder(Node, frozen=True):
    id: str = ""
    name: str = ""
    username: str = ""
    type: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not (self.id or self.username or self.name):
            problems.append((None, "opsgenie responder has to have at least one of id, username or name specified"))
        if "{{" in self.type:  # checked as a template at load, its value when sent
            return self, problems
        kind = self.type.lower()
        if kind not in _OPSGENIE_TYPES:
            problems.append(("type", f"opsgenie responder type {_q(self.type)} does not match valid options "
                                     "^(team|teams|user|escalation|schedule)$"))
        return msgspec.structs.replace(self, type=kind), problems


class OpsgenieConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_key: Secret | None = None
    api_key_file: str = ""
    api_url: URL = ""
    message: str = '{{ template "opsgenie.default.message" . }}'
    description: str = '{{ template "opsgenie.default.description" . }}'
    source: str = '{{ template "opsgenie.default.source" . }}'
    details: dict[str, str] = {}
    entity: str = ""
    responders: list[OpsgenieResponder] = []
    actions: str = ""
    tags: str = ""
    note: str = ""
    priority: str = ""
    update_alerts: bool = False

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, _at_most_one(self, "api_key", "api_key_file")

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes = _secret_pair(self, "api_key", g, "opsgenie_api_key")
        if not (changes.get("api_key") or changes.get("api_key_file") or self.api_key or self.api_key_file):
            return self, [(None, "no global OpsGenie API Key set either inline or in a file")]
        url = _slash(self.api_url or g.opsgenie_api_url)
        if not url:
            return self, [("api_url", "no global OpsGenie URL set")]
        return msgspec.structs.replace(self, http_config=self.http_config or g.http_config, api_url=url,
                                       **changes), []


_VICTOROPS_RESERVED = ("routing_key", "message_type", "state_message", "entity_display_name", "monitoring_tool",
                       "entity_id", "entity_state")


class VictorOpsConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_key: Secret | None = None
    api_key_file: str = ""
    api_url: URL = ""
    routing_key: str = ""
    message_type: str = "CRITICAL"
    state_message: str = '{{ template "victorops.default.state_message" . }}'
    entity_display_name: str = '{{ template "victorops.default.entity_display_name" . }}'
    monitoring_tool: str = '{{ template "victorops.default.monitoring_tool" . }}'
    custom_fields: dict[str, str] = {}

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = _at_most_one(self, "api_key", "api_key_file")
        if not self.routing_key:
            problems.append((None, "missing Routing key in VictorOps config"))
        for name in _VICTOROPS_RESERVED:
            if name in self.custom_fields:
                problems.append(("custom_fields", f"victorOps config contains custom field {name} which cannot be "
                                                  "used as it conflicts with the fixed/static fields"))
        return self, problems

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes = _secret_pair(self, "api_key", g, "victorops_api_key")
        if not (changes.get("api_key") or changes.get("api_key_file") or self.api_key or self.api_key_file):
            return self, [(None, "no global VictorOps API Key set")]
        url = _slash(self.api_url or g.victorops_api_url)
        if not url:
            return self, [("api_url", "no global VictorOps URL set")]
        return msgspec.structs.replace(self, http_config=self.http_config or g.http_config, api_url=url,
                                       **changes), []


class PushoverConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    user_key: Secret | None = None
    user_key_file: str = ""
    token: Secret | None = None
    token_file: str = ""
    title: str = '{{ template "pushover.default.title" . }}'
    message: str = '{{ template "pushover.default.message" . }}'
    url: str = '{{ template "pushover.default.url" . }}'
    url_title: str = ""
    device: str = ""
    sound: str = ""
    priority: str = '{{ if eq .Status "firing" }}2{{ else }}0{{ end }}'
    retry: GoDuration = 60.0
    expire: GoDuration = 3600.0
    ttl: GoDuration = 0.0
    html: bool = False
    monospace: bool = False

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for name in ("user_key", "token"):
            if not getattr(self, name) and not getattr(self, name + "_file"):
                problems.append((None, f"one of {name} or {name}_file must be configured"))
            problems += _at_most_one(self, name, name + "_file")
        if self.html and self.monospace:
            problems.append(("monospace", "at most one of monospace & html must be configured"))
        return self, problems


class WechatConfig(Node, frozen=True):
    send_resolved: bool = False
    http_config: HTTPConfig | None = None
    api_secret: Secret | None = None
    api_secret_file: str = ""
    corp_id: str = ""
    message: str = '{{ template "wechat.default.message" . }}'
    api_url: URL = ""
    to_user: str = '{{ template "wechat.default.to_user" . }}'
    to_party: str = '{{ template "wechat.default.to_party" . }}'
    to_tag: str = '{{ template "wechat.default.to_tag" . }}'
    agent_id: str = '{{ template "wechat.default.agent_id" . }}'
    message_type: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        kind = self.message_type or "text"
        problems = _at_most_one(self, "api_secret", "api_secret_file")
        if kind not in ("text", "markdown"):
            problems.append(("message_type", f"weChat message type {_q(kind)} does not match valid options "
                                             "^(text|markdown)$"))
        return msgspec.structs.replace(self, message_type=kind), problems

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        changes = _secret_pair(self, "api_secret", g, "wechat_api_secret")
        if not (changes.get("api_secret") or changes.get("api_secret_file") or self.api_secret
                or self.api_secret_file):
            return self, [(None, "no global Wechat Api Secret set either inline or in a file")]
        corp_id = self.corp_id or g.wechat_api_corp_id
        if not corp_id:
            return self, [("corp_id", "no global Wechat CorpID set")]
        url = _slash(self.api_url or g.wechat_api_url)
        if not url:
            return self, [("api_url", "no global Wechat URL set")]
        return msgspec.structs.replace(self, http_config=self.http_config or g.http_config, api_url=url,
                                       corp_id=corp_id, **changes), []


# (end of incident)

# --------------------------------------------------------------------------- integrations: other
# sns, jira, incidentio


class SigV4Config(Node, frozen=True):
    """``sigv4`` of an SNS integration (prometheus/sigv4). Empty fields come from the AWS
    environment: ``AWS_*`` variables, then the shared credentials/config files."""

    region: str = ""
    access_key: str = ""
    secret_key: Secret | None = None
    profile: str = ""
    role_arn: str = ""
    external_id: str = ""
    use_fips_sts_endpoint: bool = False
    service_name: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if bool(self.access_key) != bool(self.secret_key):
            problems.append((None, "must provide a AWS SigV4 Access key and Secret Key if credentials are "
                                   "specified in the SigV4 config"))
        if self.external_id and not self.role_arn:
            problems.append(("external_id", "external_id can only be used with role_arn"))
        if self.service_name not in ("", "sns"):  # Alertmanager's SNS client always signs for "sns"
            problems.append(("service_name", "service_name is not used by sns_configs (requests are signed for "
                                             "the sns service); remove it"))
        return self, problems


class SnsConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_url: str = ""  # a template, as in Alertmanager
    sigv4: SigV4Config = msgspec.field(default_factory=SigV4Config)
    topic_arn: str = ""
    phone_number: str = ""
    target_arn: str = ""
    subject: str = '{{ template "sns.default.subject" . }}'
    message: str = '{{ template "sns.default.message" . }}'
    attributes: dict[str, str] = {}
    use_aws_http_client: bool = False  # chooses Go's HTTP client in Alertmanager; nothing to choose here

    def _finish(self) -> tuple[Self, list[Problem]]:
        targets = [n for n in ("topic_arn", "phone_number", "target_arn") if getattr(self, n)]
        if len(targets) != 1:  # Alertmanager lets all three through; SNS then refuses every publish
            return self, [(targets[-1] if targets else None,
                           "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config")]
        return self, []


class JiraField(NamedTuple):
    """A Jira text field: its template and whether an update of an existing issue sets it.
    (A tuple: the loader's template check then reports errors at the field's line.)"""

    template: str = ""
    enable_update: bool | None = None

    @property
    def updates(self) -> bool:
        return self.enable_update is None or self.enable_update


def _jira_field(name: str, value: Any, default: str) -> tuple[JiraField, list[Problem]]:
    # Alertmanager takes a string (the template) or a mapping {template, enable_update}.
    if value is None:
        return JiraField(template=default), []
    if isinstance(value, str):
        return JiraField(template=value), []
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in ("template", "enable_update"))
        template, update = value.get("template", ""), value.get("enable_update")
        if unknown:
            return JiraField(template=default), [(name, f"unknown field {_q(unknown[0])} in {name} (allowed: "
                                                        "enable_update, template)")]
        if not isinstance(template, str) or not (update is None or isinstance(update, bool)):
            return JiraField(template=default), [(name, f"{name}.template must be a string and "
                                                        f"{name}.enable_update a boolean")]
        return JiraField(template=template, enable_update=update), []
    return JiraField(template=default), [(name, f"{name} must be a string or a mapping with template and "
                                                "enable_update")]


class JiraConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    api_url: URL = ""
    api_type: str = "auto"
    project: str = ""
    summary: Any = None  # JiraField after loading
    description: Any = None  # JiraField after loading
    labels: list[str] = []
    priority: str = '{{ template "jira.default.priority" . }}'
    issue_type: str = ""
    reopen_transition: str = ""
    resolve_transition: str = ""
    wont_fix_resolution: str = ""
    reopen_duration: PromDuration = 0.0
    fields: dict[str, Any] = {}

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.project:
            problems.append((None, "missing project in jira_config"))
        if not self.issue_type:
            problems.append((None, "missing issue_type in jira_config"))
        if self.api_type not in ("auto", "cloud", "datacenter"):
            problems.append(("api_type", "unknown api_type on jira_config, must be auto, cloud or datacenter"))
        summary, found = _jira_field("summary", self.summary, '{{ template "jira.default.summary" . }}')
        problems += found
        description, found = _jira_field("description", self.description,
                                         '{{ template "jira.default.description" . }}')
        problems += found
        return msgspec.structs.replace(self, summary=summary, description=description), problems

    def with_defaults(self, g: GlobalConfig) -> tuple[Self, list[Problem]]:
        api_url = self.api_url or g.jira_api_url
        problems: list[Problem] = [] if api_url else [("api_url", "no global Jira Cloud URL set")]
        return msgspec.structs.replace(self, http_config=self.http_config or g.http_config, api_url=api_url), problems


class IncidentioConfig(Node, frozen=True):
    send_resolved: bool = True
    http_config: HTTPConfig | None = None
    url: SecretURL | None = None
    url_file: str = ""
    alert_source_token: Secret | None = None
    alert_source_token_file: str = ""
    max_alerts: int = 0
    timeout: GoDuration = 0.0

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.url and not self.url_file:
            problems.append((None, "one of url or url_file must be configured"))
        if self.url and self.url_file:
            problems.append(("url_file", "at most one of url & url_file must be configured"))
        has_token = bool(self.alert_source_token or self.alert_source_token_file)
        problems += _at_most_one(self, "alert_source_token", "alert_source_token_file")
        http = self.http_config
        if http is not None and http.authorization is not None and has_token:
            problems.append(("alert_source_token", "cannot specify alert_source_token or alert_source_token_file "
                                                   "when using http_config.authorization"))
        if http is not None and http.authorization is None and not has_token:
            problems.append((None, "at least one of alert_source_token, alert_source_token_file or "
                                   "http_config.authorization must be configured"))
        if self.max_alerts < 0:
            problems.append(("max_alerts", "max_alerts must not be negative"))
        return self, problems


# (end of other)



class Receiver(Node, frozen=True):
    name: str = ""
    labels: dict[str, str] = {}
    webhook_configs: list[WebhookConfig] = []
    email_configs: list[EmailConfig] = []
    slack_configs: list[SlackConfig] = []
    pagerduty_configs: list[PagerdutyConfig] = []
    discord_configs: list[DiscordConfig] = []
    incidentio_configs: list[IncidentioConfig] = []
    jira_configs: list[JiraConfig] = []
    mattermost_configs: list[MattermostConfig] = []
    msteams_configs: list[MSTeamsConfig] = []
    msteamsv2_configs: list[MSTeamsV2Config] = []
    opsgenie_configs: list[OpsgenieConfig] = []
    pushover_configs: list[PushoverConfig] = []
    rocketchat_configs: list[RocketchatConfig] = []
    sns_configs: list[SnsConfig] = []
    telegram_configs: list[TelegramConfig] = []
    victorops_configs: list[VictorOpsConfig] = []
    webex_configs: list[WebexConfig] = []
    wechat_configs: list[WechatConfig] = []

    def _finish(self) -> tuple[Self, list[Problem]]:
        if not self.name:
            return self, [(None, "missing name in receiver")]
        label = self.labels.get("name", self.name)
        if label != self.name:
            return self, [
                ("labels", f'receiver label "name" must match receiver name {_q(self.name)}, got {_q(label)}')
            ]
        return msgspec.structs.replace(self, labels={**self.labels, "name": self.name}), []

# --------------------------------------------------------------------------- routing


class RouteConfig(Node, frozen=True):
    """One node of the ``route`` tree as written (see ``routes`` for the compiled form)."""

    receiver: str = ""
    group_by: list[str] | None = None
    match: dict[str, str] = {}
    match_re: RegexMap = {}
    matchers: Matchers = []
    mute_time_intervals: list[str] = []
    active_time_intervals: list[str] = []
    continue_: bool = msgspec.field(default=False, name="continue")
    routes: list[RouteConfig] = []
    group_wait: PromDuration | None = None
    group_interval: PromDuration | None = None
    repeat_interval: PromDuration | None = None
    labels: dict[str, str] = {}

    @property
    def group_by_all(self) -> bool:
        return self.group_by is not None and "..." in self.group_by

    def all_matchers(self) -> list[Matcher]:
        """Legacy ``match``/``match_re`` and ``matchers`` together, sorted as Alertmanager does."""
        return sorted([*legacy_match(self.match, self.match_re), *self.matchers], key=Matcher.sort_key)

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for key in self.match:
            if err := check_legacy_label_name(key):
                problems.append(("match", err))
        for key in self.match_re:
            if err := check_legacy_label_name(key):
                problems.append(("match_re", err))
        for key in self.labels:
            if check_label_name(key):
                problems.append(("labels", f"invalid label name {_q(key)} in route labels"))
        seen: set[str] = set()
        for name in self.group_by or []:
            if name == "...":
                continue
            if check_label_name(name):
                problems.append(("group_by", f"invalid label name {_q(name)} in group_by list"))
            elif name in seen:
                problems.append(("group_by", f"duplicated label {_q(name)} in group_by"))
            seen.add(name)
        if self.group_by_all and seen:
            problems.append(("group_by", "cannot have wildcard group_by (`...`) and other labels at the same time"))
        if self.group_interval == 0:
            problems.append(("group_interval", "group_interval cannot be zero"))
        if self.repeat_interval == 0:
            problems.append(("repeat_interval", "repeat_interval cannot be zero"))
        return self, problems


class InhibitRule(Node, frozen=True):
    name: str = ""
    source_match: dict[str, str] = {}
    source_match_re: RegexMap = {}
    source_matchers: Matchers = []
    target_match: dict[str, str] = {}
    target_match_re: RegexMap = {}
    target_matchers: Matchers = []
    equal: list[str] = []

    def all_source_matchers(self) -> list[Matcher]:
        return sorted(
            [*legacy_match(self.source_match, self.source_match_re), *self.source_matchers], key=Matcher.sort_key
        )

    def all_target_matchers(self) -> list[Matcher]:
        return sorted(
            [*legacy_match(self.target_match, self.target_match_re), *self.target_matchers], key=Matcher.sort_key
        )

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        for field in ("source_match", "source_match_re", "target_match", "target_match_re"):
            for key in getattr(self, field):
                if err := check_legacy_label_name(key):
                    problems.append((field, err))
        for name in self.equal:
            if check_label_name(name):
                problems.append(("equal", f"invalid label name {_q(name)} in equal list"))
        return self, problems


# --------------------------------------------------------------------------- time intervals


class TimeRange(Node, frozen=True):
    start_time: str = ""
    end_time: str = ""

    @property
    def start_minute(self) -> int:
        return parse_time_of_day(self.start_time)

    @property
    def end_minute(self) -> int:
        return parse_time_of_day(self.end_time)

    def _finish(self) -> tuple[Self, list[Problem]]:
        if not self.start_time or not self.end_time:
            return self, [(None, "both start and end times must be provided")]
        problems: list[Problem] = []
        for name in ("start_time", "end_time"):
            try:
                parse_time_of_day(getattr(self, name))
            except ValueError as exc:
                problems.append((name, str(exc)))
        if not problems and self.start_minute >= self.end_minute:
            problems.append((None, "start time cannot be equal or greater than end time"))
        return self, problems


def _location(text: str) -> str:
    load_location(text)
    return text


class TimeIntervalSpec(Node, frozen=True):
    """One entry of a named interval: all given fields must match."""

    times: list[TimeRange] | None = None
    weekdays: Annotated[list[InclusiveRange] | None, Conv(parse_weekday_range, each=True)] = None
    days_of_month: Annotated[list[InclusiveRange] | None, Conv(parse_day_of_month_range, each=True)] = None
    months: Annotated[list[InclusiveRange] | None, Conv(parse_month_range, each=True)] = None
    years: Annotated[list[InclusiveRange] | None, Conv(parse_year_range, each=True)] = None
    location: Annotated[str | None, Conv(_location)] = None


class TimeInterval(Node, frozen=True):
    """A named interval, from ``time_intervals`` or the deprecated ``mute_time_intervals``."""

    name: str = ""
    time_intervals: list[TimeIntervalSpec] = []

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, [] if self.name else [(None, "missing name in time interval")]


# --------------------------------------------------------------------------- top level


class Config(Node, frozen=True):
    """A whole alertmanager.yml, validated, with global defaults applied to receivers."""

    __not_yaml__: ClassVar[frozenset[str]] = frozenset({"original", "redacted", "filename"})

    global_: GlobalConfig = msgspec.field(default_factory=GlobalConfig, name="global")
    route: RouteConfig | None = None
    inhibit_rules: list[InhibitRule] = []
    receivers: list[Receiver] = []
    templates: list[str] = []
    mute_time_intervals: list[TimeInterval] = []
    time_intervals: list[TimeInterval] = []
    tracing: Raw | None = None
    event_recorder: Raw | None = None
    tocsin: Any = None  # Tocsin's own section, validated elsewhere
    original: str = ""  # the file's text as read; it holds secrets, so serve ``redacted``
    redacted: str = ""  # the same text with every secret value replaced by <secret>
    filename: str = ""

    def __repr__(self) -> str:
        shown = (
            "filename",
            "global_",
            "route",
            "inhibit_rules",
            "receivers",
            "templates",
            "mute_time_intervals",
            "time_intervals",
        )
        return "Config(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in shown) + ")"

    def receiver(self, name: str) -> Receiver:
        """The receiver called ``name`` (KeyError when absent)."""
        for rcv in self.receivers:
            if rcv.name == name:
                return rcv
        raise KeyError(name)

    def time_interval_names(self) -> list[str]:
        return [ti.name for ti in (*self.mute_time_intervals, *self.time_intervals)]
