"""Alertmanager configuration compatibility: load, validate and compile alertmanager.yml.

``load_config(path)`` returns a ``Config`` (frozen msgspec Structs, global defaults applied,
secrets hidden from ``repr``) or raises ``ConfigError`` listing every problem as
``file:line: field.path: message``. ``compile_routes(config)`` builds the route tree
Alertmanager evaluates; ``compile_time_intervals(config)`` the named time intervals.
"""

from pipeline.foundation.amconfig.durations import format_duration, parse_duration, parse_go_duration
from pipeline.foundation.amconfig.load import ConfigError, check_config_report, load_config, load_config_text
from pipeline.foundation.amconfig.model import (
    Config,
    EmailConfig,
    GlobalConfig,
    HTTPConfig,
    InhibitRule,
    PagerdutyConfig,
    Receiver,
    RouteConfig,
    SlackConfig,
    TimeInterval,
    WebhookConfig,
)
from pipeline.foundation.amconfig.receivers import delivered_integrations
from pipeline.foundation.amconfig.routes import (
    RouteNode,
    compile_routes,
    group_key,
    group_key_hash,
    group_labels,
    render_matching_tree,
    render_routes_test,
    render_routes_tree,
    route_index,
)
from pipeline.foundation.amconfig.timeintervals import TimeIntervals, compile_time_intervals, is_muted
from pipeline.foundation.amconfig.values import HostPort, Raw, Secret

__all__ = [
    "Config",
    "ConfigError",
    "EmailConfig",
    "GlobalConfig",
    "HTTPConfig",
    "HostPort",
    "InhibitRule",
    "PagerdutyConfig",
    "Raw",
    "Receiver",
    "RouteConfig",
    "RouteNode",
    "Secret",
    "SlackConfig",
    "TimeInterval",
    "TimeIntervals",
    "WebhookConfig",
    "check_config_report",
    "compile_routes",
    "compile_time_intervals",
    "delivered_integrations",
    "format_duration",
    "group_key",
    "group_key_hash",
    "group_labels",
    "is_muted",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_go_duration",
    "render_matching_tree",
    "render_routes_test",
    "render_routes_tree",
    "route_index",
]
