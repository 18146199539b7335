"""Rendering notification templates: Jinja2 in a sandbox, never raising at send time.

Tocsin's templates are Jinja2 (``{{ CommonLabels.alertname }}``), run in an immutable
sandbox: a template can read the data and call the functions of ``functions.py``, but not
reach Python internals or change the data.

Undefined names are lenient when rendering (``Labels.missing`` renders as an empty string,
like Alertmanager's ``missingkey=zero``, since labels legitimately differ between alerts)
and strict when loading: :meth:`TemplateSet.compile_check` reports syntax errors, unknown
filters, unknown top-level names and calls of unknown named templates, so typos surface
when ``alertmanager.yml`` is loaded rather than as empty fields in a page at 3 a.m.

Go templates from an existing ``alertmanager.yml`` fail to parse as Jinja2; at send time
:meth:`TemplateSet.render` then returns the caller's default text and the error, never an
exception. The one Go form that is understood is the whole-field reference to a named
template, ``{{ template "slack.default.title" . }}``, which is how Alertmanager's own
defaults are written and is often copied into configs.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from jinja2 import DictLoader, Template, TemplateError, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import TemplateRuntimeError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from .data import KV, Data
from .defaults import DEFAULTS
from .functions import FILTERS, GLOBALS, TESTS

__all__ = ["TemplateSet", "compile_check", "default_templates", "render", "render_html"]

_MAX_DEPTH = 16  # nested template() calls; a template calling itself stops here
_DEPTH = "__tocsin_depth"
_DATA_NAMES = frozenset(f.name for f in fields(Data))
_GO_TEMPLATE_CALL = re.compile(r'\s*\{\{-?\s*template\s+"([^"]+)"\s+\.\s*-?\}\}\s*')
_GO_OPENING = re.compile(
    r"\{\{-?\s*(?:\.|\$|/\*|(?:range|define|with|template|if|len|index|printf|eq|ne)\s|(?:end|else)\s*-?\}\})"
)
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_GO_FIELD = re.compile(r"(?:^|[\s(|{])\.[A-Za-z_]")  # " .Field": Go's field access, never written in Jinja


def _looks_like_go(text: str) -> bool:
    return bool(_GO_OPENING.search(text)) or any(_GO_FIELD.search(tag[2:]) for tag in _TAG.findall(text))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with label lookups winning over ``KV`` method names."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, KV) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@pass_context
def _template(ctx: Context, name: str, *dot: Any) -> str:
    """``template("name"[, value])``: render a named template, like Go's ``{{ template }}``."""
    if len(dot) > 1:
        raise TypeError("template() takes a name and at most one value")
    depth = int(ctx.get(_DEPTH, 0)) + 1
    if depth > _MAX_DEPTH:
        raise TemplateRuntimeError(f"template {name!r}: nesting deeper than {_MAX_DEPTH}")
    variables = dict(ctx.get_all())
    variables["dot"] = dot[0] if dot else ctx.get("dot")
    variables[_DEPTH] = depth
    out = ctx.environment.get_template(name).render(variables)
    return Markup(out) if ctx.eval_ctx.autoescape else out


@pass_context
def _now(ctx: Context) -> datetime:
    now: datetime = ctx["Now"]
    return now


@pass_context
def _since(ctx: Context, t: datetime) -> timedelta:
    now: datetime = ctx["Now"]
    return now - t


def _make_env(sources: Mapping[str, str], *, html: bool) -> _Environment:
    env = _Environment(
        loader=DictLoader(dict(sources)),
        autoescape=html,
        keep_trailing_newline=True,  # Go keeps every character of a template
        auto_reload=False,
    )
    del env.globals["lipsum"]  # random text: rendering must be deterministic
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    env.globals.update(GLOBALS)
    env.globals.update({"template": _template, "now": _now, "since": _since})
    return env


def _describe(exc: BaseException, text: str = "") -> str:
    if isinstance(exc, TemplateSyntaxError):
        msg = f"line {exc.lineno}: {exc.message}"
    else:
        msg = f"{type(exc).__name__}: {exc}"
    if text and _looks_like_go(text):
        msg += " (this looks like a Go template; Tocsin templates are Jinja2)"
    return msg


def _variables(data: Data) -> dict[str, Any]:
    variables: dict[str, Any] = {name: getattr(data, name) for name in _DATA_NAMES}
    variables["dot"] = data
    return variables


class TemplateSet:
    """The default named templates plus any the configuration adds, for text and HTML.

    ``named`` maps names to Jinja2 sources; a name equal to a default replaces it, as a
    ``{{ define }}`` of the same name does in Alertmanager.
    """

    def __init__(self, named: Mapping[str, str] | None = None, *, cache_size: int = 512) -> None:
        sources = {**DEFAULTS, **(named or {})}
        self._names = frozenset(sources)
        self._sources = sources
        self._envs = {False: _make_env(sources, html=False), True: _make_env(sources, html=True)}
        self._cache: OrderedDict[tuple[bool, str], Template] = OrderedDict()
        self._cache_size = cache_size
        self._known = _DATA_NAMES | {"dot"} | set(self._envs[False].globals)

    @property
    def names(self) -> frozenset[str]:
        """The named templates a template can call."""
        return self._names

    def _compiled(self, text: str, html: bool) -> Template:
        key = (html, text)
        tmpl = self._cache.get(key)
        if tmpl is None:
            tmpl = self._envs[html].from_string(text)
            self._cache[key] = tmpl
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return tmpl

    def render_named(self, name: str, data: Data, *, html: bool = False) -> str:
        """Render a named template; raises :class:`jinja2.TemplateError` when it fails."""
        variables = _variables(data)
        return self._envs[html].get_template(name).render(variables)

    def _render(self, text: str, data: Data, default_text: str, html: bool) -> tuple[str, str | None]:
        if not text:
            return "", None
        try:
            go_call = _GO_TEMPLATE_CALL.fullmatch(text)
            if go_call:
                return self.render_named(go_call.group(1), data, html=html), None
            return self._compiled(text, html).render(_variables(data)), None
        except Exception as exc:  # any failure of a user template must fall back, not crash
            return default_text, _describe(exc, text)

    def render(self, text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
        """Render ``text``; on any failure return ``(default_text, error)``. Never raises."""
        return self._render(text, data, default_text, False)

    def render_html(self, text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
        """As :meth:`render`, with values HTML-escaped (``safeHtml`` marks text as safe)."""
        return self._render(text, data, default_text, True)

    def compile_check(self, text: str) -> str | None:
        """The first problem of ``text`` as a template, or ``None`` when it is usable."""
        if not text:
            return None
        go_call = _GO_TEMPLATE_CALL.fullmatch(text)
        if go_call:
            name = go_call.group(1)
            return None if name in self._names else f"unknown named template {name!r}"
        env = self._envs[False]
        try:
            env.compile(text)
            ast = env.parse(text)
        except TemplateError as exc:
            return _describe(exc, text)
        if _looks_like_go(text):  # parses by accident, as `{{ len .Alerts }}` does
            return "this looks like a Go template; Tocsin templates are Jinja2"
        unknown = meta.find_undeclared_variables(ast) - self._known
        if unknown:
            hint = f"data fields are {', '.join(sorted(_DATA_NAMES - {'Now'}))}"
            return f"unknown name(s) {', '.join(sorted(unknown))} ({hint})"
        for call in ast.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name == "template" and call.args:
                first = call.args[0]
                if isinstance(first, nodes.Const) and isinstance(first.value, str):
                    if first.value not in self._names:
                        return f"unknown named template {first.value!r}"
        return None

    def check_named(self) -> dict[str, str]:
        """Problems of the configured named templates, by name (empty when all are usable)."""
        problems: dict[str, str] = {}
        for name, source in self._sources.items():
            if name in DEFAULTS and DEFAULTS[name] == source:
                continue
            error = self.compile_check(source)
            if error is not None:
                problems[name] = error
        return problems


_DEFAULT = TemplateSet()


def default_templates() -> TemplateSet:
    """The shared template set with only the default named templates."""
    return _DEFAULT


def render(template_text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
    """Render with the default template set; on failure ``(default_text, error)``."""
    return _DEFAULT.render(template_text, data, default_text)


def render_html(template_text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
    """HTML-escaping :func:`render`."""
    return _DEFAULT.render_html(template_text, data, default_text)


def compile_check(template_text: str) -> str | None:
    """Syntax and name errors of a template, for reporting at configuration load."""
    return _DEFAULT.compile_check(template_text)
