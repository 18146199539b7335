"""Logging set up as Alertmanager's: ``--log.level`` (debug, info, warn, error) and
``--log.format`` (``logfmt``, the default, or ``json``), one record per line on stderr.

A record carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``caller`` (the logger's
name, where Go kit logs the file) and ``msg``, then any ``extra=`` fields of the call, so log
pipelines built for Alertmanager read Tocsin's lines as they are.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

from pipeline.foundation import telemetry

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "LogfmtFormatter", "TraceIdFilter", "setup_logging"]

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
                 "error": logging.ERROR}
FORMATS: Final = ("logfmt", "json")
# attributes every LogRecord has: anything else was passed with extra= and is logged as a field
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_LEVEL_NAMES: Final = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                       logging.ERROR: "error", logging.CRITICAL: "error"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    out: dict[str, Any] = {"ts": ts, "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
                           "caller": record.name, "msg": record.getMessage()}
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info:
        out["err"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    return json.dumps(text)  # quoted, with escapes (newlines of a traceback stay on one line)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` to a record logged inside a span (a step, a send): a line leads to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        if telemetry.enabled() and not hasattr(record, "trace_id"):
            trace_id = telemetry.current_trace_id()
            if trace_id:
                record.trace_id = trace_id
        return True


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger (replacing any handler); ValueError names a bad value."""
    if level.lower() not in LEVELS:
        raise ValueError(f"invalid log level {level!r} (one of debug, info, warn, error)")
    if fmt not in FORMATS:
        raise ValueError(f"invalid log format {fmt!r} (one of {', '.join(FORMATS)})")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
