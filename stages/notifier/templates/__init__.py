"""Notification templates: Alertmanager's data model and default templates, rendered as Go templates.

``build_data`` turns a send request into the template data; ``render`` / ``render_html``
render a configured template text and fall back to a default on failure;
``compile_check`` validates a template text; ``TemplateSet`` holds the named templates
(Alertmanager's defaults plus the configuration's ``templates:`` files), compiled once.
The Go template engine itself is the ``gotemplate`` package.
"""

from .data import KV, Alerts, Data, Pair, Pairs, Strings, TemplateAlert, build_data, data_from_json, quote_meta
from .defaults import DEFAULT_FILES, SENDER_NAME
from .engine import (
    TEMPLATE_CHECK,
    GoTemplateCheck,
    TemplateLoadError,
    TemplateSet,
    compile_check,
    default_templates,
    load_template_files,
    render,
    render_html,
)
from .functions import to_json, to_jsonable
from .gotime import ZERO_TIME, GoTime, go_format, rfc3339

__all__ = [
    "DEFAULT_FILES",
    "TEMPLATE_CHECK",
    "GoTemplateCheck",
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
    "TemplateLoadError",
    "TemplateSet",
    "build_data",
    "compile_check",
    "data_from_json",
    "default_templates",
    "go_format",
    "load_template_files",
    "quote_meta",
    "render",
    "render_html",
    "rfc3339",
    "to_json",
    "to_jsonable",
]
