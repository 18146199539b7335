"""Reading the secrets of an integration: inline, from a ``*_file``, or from the environment.

A ``*_file`` is read when a send needs it (so a rotated file is picked up) and cached until
its modification time or size changes; its content is stripped of surrounding whitespace,
as Alertmanager does. An inline value written exactly ``${NAME}`` is read from the
environment variable ``NAME`` (a Tocsin extension: keeps secrets out of the YAML file).

Errors name the file or variable, never the value. :class:`SecretError` is permanent for
the send that needed it (the configuration must change), so it is never retried.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Protocol

__all__ = ["SecretError", "SecretReader", "SecretValue"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretValue(Protocol):
    @property
    def value(self) -> str: ...


class SecretError(Exception):
    """A secret could not be read (missing file or variable); the message holds no secret."""


class SecretReader:
    """Resolves secrets; one per process, shared by every sender."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, tuple[int, int, str]] = {}

    def read_file(self, path: str, what: str) -> str:
        try:
            st = os.stat(path)
            cached = self._files.get(path)
            if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
                return cached[2]
            with open(path, encoding="utf-8") as fh:
                text = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"{what}: cannot read {path}: {detail}") from None
        self._files[path] = (st.st_mtime_ns, st.st_size, text)
        return text

    def resolve(self, inline: SecretValue | str | None, file: str, what: str) -> str:
        """The secret from ``inline`` (a ``Secret`` or text), else ``file``; ``""`` when neither is set."""
        value = inline if isinstance(inline, str) or inline is None else inline.value
        if value:
            m = _ENV.fullmatch(value)
            if m is None:
                return value
            name = m.group(1)
            if name not in self._environ:
                raise SecretError(f"{what}: environment variable {name} is not set")
            return self._environ[name]
        if file:
            return self.read_file(file, what)
        return ""
