"""Receivers after loading: global defaults applied, and what Tocsin delivers.

``apply_defaults`` does what Alertmanager's ``Config.UnmarshalYAML`` does to each
integration: inherit ``global`` SMTP settings, Slack URLs/tokens, the PagerDuty URL and the
HTTP client config. It returns the new config and the problems found (an email receiver
with no smarthost anywhere, a Slack receiver with no URL nor token...).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.foundation.amconfig.model import (
    INTEGRATION_KINDS,
    Authorization,
    Config,
    EmailConfig,
    GlobalConfig,
    Receiver,
    SlackConfig,
)
from pipeline.foundation.amconfig.values import Secret

__all__ = ["DELIVERED_KINDS", "DefaultsProblem", "apply_defaults", "delivered_integrations"]

# (the object the problem is about, its field or None, message)
DefaultsProblem = tuple[object, str | None, str]

DELIVERED_KINDS = INTEGRATION_KINDS  # every kind Alertmanager knows
_FIRST = frozenset({"webhook", "email", "slack", "pagerduty"})  # filled in below; the others fill themselves

_replace = msgspec.structs.replace


def _email(ec: EmailConfig, g: GlobalConfig, problems: list[DefaultsProblem]) -> EmailConfig:
    smarthost = ec.smarthost or g.smtp_smarthost
    if smarthost is None:
        problems.append((ec, "smarthost", "no global SMTP smarthost set"))
    from_ = ec.from_ or g.smtp_from
    if not from_:
        problems.append((ec, "from_", "no global SMTP from set"))
    changes: dict[str, Any] = {
        "tls_config": ec.tls_config or g.smtp_tls_config,
        "smarthost": smarthost,
        "from_": from_,
        "hello": ec.hello or g.smtp_hello,
        "auth_username": ec.auth_username or g.smtp_auth_username,
        "auth_identity": ec.auth_identity or g.smtp_auth_identity,
        "require_tls": g.smtp_require_tls if ec.require_tls is None else ec.require_tls,
        "force_implicit_tls": g.smtp_force_implicit_tls if ec.force_implicit_tls is None else ec.force_implicit_tls,
    }
    if not ec.auth_password and not ec.auth_password_file:
        changes["auth_password"] = g.smtp_auth_password
        changes["auth_password_file"] = g.smtp_auth_password_file
    if not ec.auth_secret and not ec.auth_secret_file:
        changes["auth_secret"] = g.smtp_auth_secret
        changes["auth_secret_file"] = g.smtp_auth_secret_file
    return _replace(ec, **changes)


def _slack(sc: SlackConfig, g: GlobalConfig, problems: list[DefaultsProblem]) -> SlackConfig:
    app_url = sc.app_url or g.slack_app_url
    app_token, app_token_file = sc.app_token, sc.app_token_file
    # The global app token applies only when nothing local says how to authenticate.
    no_local_auth = sc.http_config is None or sc.http_config.authorization is None
    if not app_token and not app_token_file and no_local_auth and sc.api_url is None:
        app_token, app_token_file = g.slack_app_token, g.slack_app_token_file
    api_url, api_url_file = sc.api_url, sc.api_url_file
    if api_url is None and not api_url_file:
        api_url, api_url_file = g.slack_api_url, g.slack_api_url_file
    if api_url is None and not api_url_file and not app_token and not app_token_file:
        problems.append((sc, None, "no Slack API URL nor App token set either inline or in a file"))
    http = sc.http_config or g.http_config
    if app_token or app_token_file:
        if http.authorization is not None:
            problems.append((sc, "http_config", "http authorization can't be set when using Slack App tokens"))
        else:
            auth = Authorization(type="Bearer", credentials=app_token, credentials_file=app_token_file)
            http = _replace(http, authorization=auth)
        api_url = Secret(app_url)
    return _replace(
        sc,
        app_url=app_url,
        app_token=app_token,
        app_token_file=app_token_file,
        api_url=api_url,
        api_url_file=api_url_file,
        http_config=http,
    )


def _receiver(rcv: Receiver, g: GlobalConfig, problems: list[DefaultsProblem]) -> Receiver:
    webhooks = [_replace(wh, http_config=wh.http_config or g.http_config) for wh in rcv.webhook_configs]
    emails = [_email(ec, g, problems) for ec in rcv.email_configs]
    slacks = [_slack(sc, g, problems) for sc in rcv.slack_configs]
    pagerduties = [
        _replace(pd, http_config=pd.http_config or g.http_config, url=pd.url or g.pagerduty_url)
        for pd in rcv.pagerduty_configs
    ]
    others: dict[str, list[Any]] = {}
    for kind in DELIVERED_KINDS:
        if kind in _FIRST:
            continue
        filled = []
        for cfg in getattr(rcv, f"{kind}_configs"):
            with_defaults = getattr(cfg, "with_defaults", None)
            if with_defaults is not None:
                filled_cfg, found = with_defaults(g)
                # the problem is about the config as written: the decoder knows its line
                problems.extend((cfg, field, message) for field, message in found)
                cfg = filled_cfg
            if cfg.http_config is None:  # every HTTP integration inherits global.http_config
                cfg = _replace(cfg, http_config=g.http_config)
            filled.append(cfg)
        others[f"{kind}_configs"] = filled
    return _replace(
        rcv, webhook_configs=webhooks, email_configs=emails, slack_configs=slacks, pagerduty_configs=pagerduties,
        **others,
    )


def apply_defaults(config: Config) -> tuple[Config, list[DefaultsProblem]]:
    """Fill every delivered integration from ``global``, as Alertmanager does on load."""
    problems: list[DefaultsProblem] = []
    receivers = [_receiver(rcv, config.global_, problems) for rcv in config.receivers]
    return _replace(config, receivers=receivers), problems




def delivered_integrations(receiver: Receiver) -> list[tuple[str, int, Any]]:
    """``(kind, index, config)`` for each integration Tocsin delivers, in Alertmanager's order."""
    return [(kind, i, c) for kind in DELIVERED_KINDS for i, c in enumerate(getattr(receiver, f"{kind}_configs"))]
