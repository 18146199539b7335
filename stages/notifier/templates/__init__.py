"""Notification templates: Alertmanager's data model and defaults, rendered with Jinja2.

``build_data`` turns a send request into the template data; ``render`` / ``render_html``
render a configured template text and fall back to a default on failure;
``compile_check`` validates a template at configuration load; ``TemplateSet`` holds the
named templates (Alertmanager's defaults plus the configuration's own).
"""

from .data import KV, Alerts, Data, Pair, Pairs, Strings, TemplateAlert, build_data, quote_meta
from .defaults import DEFAULTS, SENDER_NAME
from .engine import TemplateSet, compile_check, default_templates, render, render_html
from .functions import to_json, to_jsonable
from .gotime import ZERO_TIME, GoTime, go_format, rfc3339

__all__ = [
    "DEFAULTS",
    "KV",
    "SENDER_NAME",
    "ZERO_TIME",
    "Alerts",
    "Data",
    "GoTime",
    "Pair",
    "Pairs",
    "Strings",
    "TemplateAlert",
    "TemplateSet",
    "build_data",
    "compile_check",
    "default_templates",
    "go_format",
    "quote_meta",
    "render",
    "render_html",
    "rfc3339",
    "to_json",
    "to_jsonable",
]
