"""Rendering notification templates: Go templates with Alertmanager's semantics, never raising at send time.

Templates are Go's ``text/template`` (``{{ .CommonLabels.alertname }}``), with
``missingkey=zero`` and Alertmanager's functions; the email HTML body gets html/template's
contextual escaping. Jinja2 is gone: Go templates are the one template language, so an
``alertmanager.yml`` and its template files work unchanged.

A :class:`TemplateSet` is Alertmanager's default templates (``defaults.py``) with the
configuration's ``templates:`` files loaded on top, parsed and compiled once at
configuration load; a file that does not parse fails the load
(:class:`TemplateLoadError`, naming the file and line). At send time :meth:`TemplateSet.render`
returns ``(text, None)`` or, when the template fails, ``(default_text, error)``, never an
exception.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from typing import Final

from .data import Data
from .defaults import DEFAULT_FILES
from .gotemplate import GoTemplates, ParseError, TemplateError

__all__ = [
    "TEMPLATE_CHECK",
    "GoTemplateCheck",
    "TemplateLoadError",
    "TemplateSet",
    "compile_check",
    "default_templates",
    "load_template_files",
    "render",
    "render_html",
]


class TemplateLoadError(ValueError):
    """Template files that cannot be used; ``errors`` has one ``file:line: message`` per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ParseError):
        return f"line {exc.line}: {exc.message}"
    return str(exc)


def load_template_files(globs: Iterable[str]) -> list[tuple[str, str]]:
    """The ``(path, text)`` of every file the globs match, in Go's ``filepath.Glob`` order.

    A glob matching nothing is not an error (as in Alertmanager); an unreadable file is.
    """
    files: list[tuple[str, str]] = []
    errors: list[str] = []
    for pattern in globs:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    files.append((path, fh.read()))
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(f"{path}: {exc}")
    if errors:
        raise TemplateLoadError(errors)
    return files


class TemplateSet:
    """Alertmanager's default templates plus the configuration's template files.

    ``files`` are ``(path, text)`` pairs loaded after the defaults, so a ``define`` of a
    default's name replaces it, as in Alertmanager. Raises :class:`TemplateLoadError` when a
    file does not parse.
    """

    def __init__(self, files: Sequence[tuple[str, str]] = (), *, cache_size: int = 1024) -> None:
        try:
            self._go = GoTemplates([*DEFAULT_FILES, *files], cache_size=cache_size)
        except ParseError as exc:
            raise TemplateLoadError([f"{exc.name}:{exc.line}: {exc.message}"]) from None
        self.files = tuple(path for path, _ in files)

    @classmethod
    def from_globs(cls, globs: Iterable[str]) -> TemplateSet:
        """The set for a configuration's ``templates:`` globs (paths already resolved)."""
        return cls(load_template_files(globs))

    @property
    def names(self) -> frozenset[str]:
        """The named templates a template can call."""
        return self._go.names

    def render_named(self, name: str, data: Data, *, html: bool = False) -> str:
        """Render a named template; raises :class:`TemplateError` when it fails."""
        return self._go.execute_named(name, data, html=html)

    def _render(self, text: str, data: Data, default_text: str, html: bool) -> tuple[str, str | None]:
        if not text:
            return "", None
        try:
            return self._go.execute(text, data, html=html), None
        except TemplateError as exc:
            return default_text, _describe(exc)
        except Exception as exc:  # a template must never take a send down; report it as its error
            return default_text, f"{type(exc).__name__}: {exc}"

    def render(self, text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
        """``text`` rendered as a Go template, or ``(default_text, error)``. Never raises."""
        return self._render(text, data, default_text, False)

    def render_html(self, text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
        """As :meth:`render`, with html/template's contextual escaping (``safeHtml`` is kept)."""
        return self._render(text, data, default_text, True)

    def compile_check(self, text: str) -> str | None:
        """The parse error of ``text`` as ``line N: message``, or ``None`` when it parses."""
        if not text:
            return None
        try:
            self._go.check(text)
        except ParseError as exc:
            return _describe(exc)
        return None


_DEFAULT: TemplateSet | None = None


def default_templates() -> TemplateSet:
    """The shared template set with only Alertmanager's default templates."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TemplateSet()
    return _DEFAULT


def render(template_text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
    """Render with the default template set; on failure ``(default_text, error)``."""
    return default_templates().render(template_text, data, default_text)


def render_html(template_text: str, data: Data, default_text: str = "") -> tuple[str, str | None]:
    """HTML-escaping :func:`render`."""
    return default_templates().render_html(template_text, data, default_text)


def compile_check(template_text: str) -> str | None:
    """The parse error of a template text, for reporting at configuration load."""
    return default_templates().compile_check(template_text)


class GoTemplateCheck:
    """The configuration loader's template checks (``pipeline.foundation.amconfig.load.TemplateCheck``):
    one parser for load and send."""

    def check_text(self, text: str) -> str | None:
        return compile_check(text)

    def check_files(self, globs: Sequence[str]) -> list[str]:
        try:
            TemplateSet.from_globs(globs)
        except TemplateLoadError as exc:
            return exc.errors
        return []


TEMPLATE_CHECK: Final = GoTemplateCheck()
