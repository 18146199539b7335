"""The alertmanager.yml model: one frozen msgspec Struct per YAML mapping.

Attribute names are Alertmanager's YAML keys; Python keywords get a trailing underscore
(``continue_``, ``from_``, ``global_``, ``class_``) and keep their YAML name as the field's
encode name. Field types carry ``Conv`` directives (see ``values``) that the loader uses to
parse scalars; each Struct's ``_finish`` checks what Alertmanager checks while unmarshalling
that mapping and may normalise it (defaults that depend on other fields).

Secrets are ``Secret`` instances and integrations Tocsin does not deliver are ``Raw``
mappings, so ``repr()`` of a loaded config shows no credentials.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

import msgspec

from contracts.matchers import Matcher, MatcherError, compile_go_regex, go_quote, legacy_match, parse_matchers
from pipeline.amconfig.durations import parse_duration, parse_go_duration
from pipeline.amconfig.timeintervals import (
    load_location,
    parse_day_of_month_range,
    parse_month_range,
    parse_time_of_day,
    parse_weekday_range,
    parse_year_range,
)
from pipeline.amconfig.values import (
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
    "RAW_INTEGRATION_KINDS",
    "Authorization",
    "BasicAuth",
    "Config",
    "EmailConfig",
    "EmailThreading",
    "GlobalConfig",
    "HTTPConfig",
    "HTTPHeader",
    "InhibitRule",
    "Node",
    "OAuth2",
    "PagerdutyConfig",
    "PagerdutyImage",
    "PagerdutyLink",
    "Problem",
    "Receiver",
    "RouteConfig",
    "SlackAction",
    "SlackConfig",
    "SlackConfirmationField",
    "SlackField",
    "TLSConfig",
    "TimeInterval",
    "TimeIntervalSpec",
    "TimeRange",
    "WebhookConfig",
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
# (end of chat)

# --------------------------------------------------------------------------- integrations: incident
# opsgenie, victorops, pushover, wechat
# (end of incident)

# --------------------------------------------------------------------------- integrations: other
# sns, jira, incidentio
# (end of other)



class Receiver(Node, frozen=True):
    name: str = ""
    labels: dict[str, str] = {}
    webhook_configs: list[WebhookConfig] = []
    email_configs: list[EmailConfig] = []
    slack_configs: list[SlackConfig] = []
    pagerduty_configs: list[PagerdutyConfig] = []
    discord_configs: list[Raw] = []
    incidentio_configs: list[Raw] = []
    jira_configs: list[Raw] = []
    mattermost_configs: list[Raw] = []
    msteams_configs: list[Raw] = []
    msteamsv2_configs: list[Raw] = []
    opsgenie_configs: list[Raw] = []
    pushover_configs: list[Raw] = []
    rocketchat_configs: list[Raw] = []
    sns_configs: list[Raw] = []
    telegram_configs: list[Raw] = []
    victorops_configs: list[Raw] = []
    webex_configs: list[Raw] = []
    wechat_configs: list[Raw] = []

    def _finish(self) -> tuple[Self, list[Problem]]:
        if not self.name:
            return self, [(None, "missing name in receiver")]
        label = self.labels.get("name", self.name)
        if label != self.name:
            return self, [
                ("labels", f'receiver label "name" must match receiver name {_q(self.name)}, got {_q(label)}')
            ]
        return msgspec.structs.replace(self, labels={**self.labels, "name": self.name}), []

    def raw_integrations(self) -> list[tuple[str, int, Raw]]:
        """``(kind, index, config)`` of every integration kept undelivered."""
        return [
            (kind, i, raw) for kind in RAW_INTEGRATION_KINDS for i, raw in enumerate(getattr(self, f"{kind}_configs"))
        ]


# Receiver kinds Alertmanager knows that Tocsin loads but does not deliver: those whose
# configurations are still kept as loaded (``Raw``).
RAW_INTEGRATION_KINDS = tuple(k for k in INTEGRATION_KINDS if Receiver.__annotations__[f"{k}_configs"] == "list[Raw]")


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
