"""The ``tocsin: ingest:`` section: the sources ``POST /api/tocsin/ingest/<name>`` accepts.

::

    tocsin:
      ingest:
        sources:
          sns:                                  # POST /api/tocsin/ingest/sns
            kind: sns
            topics:                             # only these topics are taken (anyone can subscribe an endpoint)
              arn:aws:sns:eu-west-1:123456789012:alarms:
                org: acme
                labels: {severity: critical}
            insufficient_data: ignore           # ignore (default) | firing | resolved
          grafana:                              # POST /api/tocsin/ingest/grafana
            kind: grafana
            token_file: /run/secrets/grafana-token
            org: acme
          acme-monitor:                         # POST /api/tocsin/ingest/acme-monitor
            kind: generic
            token_env: ACME_MONITOR_TOKEN
            mapping:
              alerts: incidents
              alertname: check.name
              labels: {host: check.host, severity: "{{ .level | toLower }}"}
              status: state
              resolved: [closed]

``docs/ingest.md`` explains every field. A source name is also its path, so it is 1 to 64 of
``[A-Za-z0-9_-]``; ``kind`` defaults to the name when that is ``sns`` or ``grafana``.
"""

from __future__ import annotations

import re
from typing import Final, Self

import msgspec

from contracts.ids import check_org
from pipeline.application.config.ingest_expr import expression_problem, path_problem
from pipeline.foundation.amconfig.model import Node, Problem, PromDuration

__all__ = [
    "DEFAULT_SNS_HOSTS",
    "INSUFFICIENT_DATA",
    "KINDS",
    "IngestConfig",
    "IngestMapping",
    "IngestSource",
    "IngestTopic",
    "ingest_config_problems",
]

KINDS: Final = ("sns", "grafana", "generic")
INSUFFICIENT_DATA: Final = ("ignore", "firing", "resolved")
# Where AWS serves signing certificates and subscription confirmations (commercial and China partitions)
DEFAULT_SNS_HOSTS: Final = ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn")
DEFAULT_MAX_BODY_BYTES: Final = 1 << 20  # an SNS message is at most 256 KiB; a Grafana batch far less
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LABEL_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _org_problem(field: str, org: str) -> list[Problem]:
    problem = check_org(org) if org else None
    return [(field, f"{problem}: {org!r}")] if problem else []


class IngestTopic(Node, frozen=True, forbid_unknown_fields=True):
    """One SNS topic: whose alarms it carries and what they get."""

    org: str = ""  # "": the source's organisation
    labels: dict[str, str] = {}  # added to every alert (over the source's labels)
    insufficient_data: str = ""  # "": the source's setting

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems = _org_problem("org", self.org)
        if self.insufficient_data and self.insufficient_data not in INSUFFICIENT_DATA:
            problems.append(("insufficient_data", f"must be one of {', '.join(INSUFFICIENT_DATA)}"))
        return self, problems


class IngestMapping(Node, frozen=True, forbid_unknown_fields=True):
    """How a generic JSON payload becomes alerts. Every value is an expression: a field path
    (``check.host``, ``$.items[0].name``) or a Go template (``{{ .level | toLower }}``)."""

    alerts: str = ""  # field path of the list of alerts in the body ("": the body, an object or a list)
    alertname: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    status: str = ""  # "": every alert fires
    firing: list[str] = msgspec.field(default_factory=lambda: ["firing"])  # status values (case-insensitive) that fire
    resolved: list[str] = msgspec.field(default_factory=lambda: ["resolved"])  # and that resolve
    fingerprint: str = ""  # the sender's id of the alert, kept as the label fingerprint_label
    fingerprint_label: str = "fingerprint"
    starts_at: str = ""  # RFC 3339 or Unix seconds (milliseconds when above 1e12)
    ends_at: str = ""
    generator_url: str = ""

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if not self.alertname:
            problems.append(("alertname", "is required: the expression giving each alert's alertname"))
        if self.alerts and (p := path_problem(self.alerts)):
            problems.append(("alerts", p))
        for name in ("alertname", "status", "fingerprint", "starts_at", "ends_at", "generator_url"):
            text = getattr(self, name)
            if text and (p := expression_problem(text)):
                problems.append((name, p))
        for field in ("labels", "annotations"):
            for key, text in getattr(self, field).items():
                if field == "labels" and not _LABEL_NAME.fullmatch(key):
                    problems.append((field, f"{key!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"))
                if p := expression_problem(text):
                    problems.append((field, f"{key}: {p}"))
        if not _LABEL_NAME.fullmatch(self.fingerprint_label):
            problems.append(("fingerprint_label", "must be a label name"))
        if not self.firing and not self.resolved and self.status:
            problems.append(("status", "give the firing or the resolved values it maps"))
        return self, problems


class IngestSource(Node, frozen=True, forbid_unknown_fields=True):
    """One ingest endpoint, ``POST /api/tocsin/ingest/<name>``."""

    kind: str = ""  # sns | grafana | generic ("": the name, when it is sns or grafana)
    # The token the sender presents (``Authorization: Bearer <token>``, or as the password of
    # basic authentication). Never inline in the configuration: a file, or an environment variable.
    token_file: str = ""
    token_env: str = ""
    org: str = ""  # the organisation of its alerts ("": tocsin.default_org)
    # Other organisations its alerts may name (org_id label, X-Scope-OrgID); "*" for any
    orgs: list[str] = []
    labels: dict[str, str] = {}  # added to every alert
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # 0: limits.max_body_bytes
    rate: float = 20.0  # requests per second (0: unlimited), after authentication
    burst: int = 100
    # How long an alert that fires stays firing without news (0: until the sender resolves it).
    # CloudWatch and Grafana do not repeat a firing alert every minute, as Prometheus does.
    firing_ttl: PromDuration = 0.0
    mapping: IngestMapping | None = None  # generic
    # sns only
    topics: dict[str, IngestTopic] = {}
    insufficient_data: str = "ignore"
    cert_hosts: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SNS_HOSTS))
    confirm_hosts: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SNS_HOSTS))
    confirm: bool = True  # confirm subscriptions (false: dead-letter them for an operator)
    allow_http: bool = False  # certificate and confirmation URLs over plain HTTP (tests only)
    cert_cache_ttl: PromDuration = 24 * 3600.0
    max_age: PromDuration = 3600.0  # refuse signed messages older than this (0: any age)

    def kind_of(self, name: str) -> str:
        return self.kind or (name if name in ("sns", "grafana") else "")

    def _finish(self) -> tuple[Self, list[Problem]]:
        problems: list[Problem] = []
        if self.kind and self.kind not in KINDS:
            problems.append(("kind", f"must be one of {', '.join(KINDS)}"))
        if self.token_file and self.token_env:
            problems.append(("token_env", "give token_file or token_env, not both"))
        problems += _org_problem("org", self.org)
        for org in self.orgs:
            if org != "*":
                problems += _org_problem("orgs", org)
        for name in ("max_body_bytes", "rate", "burst", "firing_ttl", "cert_cache_ttl", "max_age"):
            if getattr(self, name) < 0:
                problems.append((name, "must not be negative"))
        if self.burst > 0 and self.rate == 0:
            problems.append(("burst", "a burst needs a rate"))
        if self.insufficient_data not in INSUFFICIENT_DATA:
            problems.append(("insufficient_data", f"must be one of {', '.join(INSUFFICIENT_DATA)}"))
        return self, problems


class IngestConfig(Node, frozen=True, forbid_unknown_fields=True):
    sources: dict[str, IngestSource] = {}

    def _finish(self) -> tuple[Self, list[Problem]]:
        return self, ingest_config_problems(self)


def ingest_config_problems(config: IngestConfig) -> list[Problem]:
    """What is wrong across a source's fields (kind-specific requirements)."""
    problems: list[Problem] = []
    for name, src in config.sources.items():
        where = f"sources.{name}"
        if not _NAME.fullmatch(name):
            problems.append(("sources", f"{name!r}: a source name is its path: 1 to 64 of [A-Za-z0-9_-]"))
        kind = src.kind_of(name)
        if not kind:
            problems.append(("sources", f"{where}: set kind (one of {', '.join(KINDS)})"))
            continue
        if kind not in KINDS:
            continue  # (the source's own check names it)
        if kind != "sns" and not (src.token_file or src.token_env):
            problems.append(("sources", f"{where}: a {kind} source needs token_file or token_env"))
        if kind == "generic" and src.mapping is None:
            problems.append(("sources", f"{where}: a generic source needs a mapping"))
        if kind != "generic" and src.mapping is not None:
            problems.append(("sources", f"{where}: mapping is for generic sources only"))
        if kind == "sns":
            if not src.topics:
                problems.append(("sources", f"{where}: list the SNS topics (TopicArn) it takes under topics"))
            if not src.cert_hosts:
                problems.append(("sources", f"{where}: cert_hosts must allow at least one host"))
        elif src.topics:
            problems.append(("sources", f"{where}: topics are for sns sources only"))
    return problems
