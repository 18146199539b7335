"""The errors of the Go template engine: one base class, so callers catch exactly one type."""

from __future__ import annotations

__all__ = ["ExecError", "ParseError", "TemplateError"]


class TemplateError(Exception):
    """Any failure of a Go template, at parse or at execution time."""


class ParseError(TemplateError):
    """A template text that does not parse; ``name`` and ``line`` say where."""

    def __init__(self, name: str, line: int, message: str) -> None:
        self.name = name
        self.line = line
        self.message = message
        super().__init__(f"template: {name}:{line}: {message}")


class ExecError(TemplateError):
    """A failure while executing a parsed template (a missing field, a bad function argument...)."""
