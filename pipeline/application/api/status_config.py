"""The configuration ``GET /api/v2/status`` shows: re-marshalled from the loaded objects.

As Alertmanager does, the YAML is produced from the configuration as loaded, never from the
file's text: comments (a commented-out old webhook URL) and formatting are gone, defaults
are filled in, and every secret (``Secret`` fields, and the credential-like keys of the
integrations Tocsin keeps undelivered) reads ``<secret>``. Fields keep the model's order,
which is Alertmanager's; empty values are left out. Tocsin's own ``tocsin:`` section is not
part of an Alertmanager configuration and is not shown.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, Final

import msgspec
import yaml

from contracts.matchers import Matcher
from pipeline.foundation.amconfig import Config
from pipeline.foundation.amconfig.decode import _SECRET_KEYS
from pipeline.foundation.amconfig.durations import format_duration, parse_duration, parse_go_duration
from pipeline.foundation.amconfig.timeintervals import WEEKDAYS, parse_weekday_range
from pipeline.foundation.amconfig.values import Conv, HostPort, InclusiveRange, Raw, Secret

__all__ = ["SECRET", "format_go_duration", "marshal_config"]

SECRET: Final = "<secret>"
_HIDDEN_TOP: Final = frozenset({"tocsin"})
_KEEP_FALSE: Final = frozenset({"send_resolved", "continue"})  # false is shown, as Alertmanager does


def format_go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for whole milliseconds and up (``1m30s``, ``500ms``, ``0s``)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return sign + (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


def _conv_of(tp: Any) -> Conv | None:
    """The ``Conv`` directive of a field type, looking inside ``X | None``."""
    if typing.get_origin(tp) is typing.Annotated:
        return next((m for m in typing.get_args(tp)[1:] if isinstance(m, Conv)), None)
    for arg in typing.get_args(tp):
        found = _conv_of(arg)
        if found is not None:
            return found
    return None


@functools.cache
def _fields(cls: type) -> list[tuple[str, str, Conv | None, bool]]:
    """(attribute, YAML key, converter, false may be left out) of every YAML field of a config
    Struct: a false flag is left out only where false is the default (or it would load back true)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    skip: frozenset[str] = getattr(cls, "__not_yaml__", frozenset())
    return [(f.name, f.encode_name, _conv_of(hints.get(f.name)),
             f.default is False and f.encode_name not in _KEEP_FALSE)
            for f in msgspec.structs.fields(cls) if f.name not in skip]


def _masked(value: Any) -> Any:
    """A mapping kept as loaded, with every credential-like key's value hidden."""
    if isinstance(value, dict):
        return {k: SECRET if str(k).lower() in _SECRET_KEYS and v not in (None, "") else _masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


# Fields of newer Alertmanagers than many deployed amtools know (0.25 parses strictly and
# refuses an unknown field): shown only when set to something else than their default, so
# `amtool config routes` against Tocsin keeps working.
_NEWER_DEFAULTS: Final = {
    "GlobalConfig": frozenset({"slack_app_url", "rocketchat_api_url", "jira_api_url", "webex_api_url",
                               "telegram_api_url", "mattermost_webhook_url", "incidentio_url"}),
}


def _default_of(value: msgspec.Struct, name: str) -> Any:
    field = next(f for f in msgspec.structs.fields(type(value)) if f.name == name)
    if field.default is not msgspec.NODEFAULT:
        return field.default
    return field.default_factory() if field.default_factory is not msgspec.NODEFAULT else None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _value(value: Any, conv: Conv | None = None) -> Any:
    if isinstance(value, Secret):
        return SECRET
    if isinstance(value, Raw):
        return _masked(value.data)
    if isinstance(value, Matcher | HostPort):
        return str(value)
    if isinstance(value, InclusiveRange):
        if conv is not None and conv.fn is parse_weekday_range:
            first, last = WEEKDAYS[value.begin], WEEKDAYS[value.end]
            return first if first == last else f"{first}:{last}"
        return str(value)
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        newer = _NEWER_DEFAULTS.get(type(value).__name__, frozenset())
        for name, key, field_conv, omit_false in _fields(type(value)):
            raw = getattr(value, name)
            if key in newer and raw == _default_of(value, name):
                continue
            v = _value(raw, field_conv)
            if not _empty(v) and not (v is False and omit_false):
                out[key] = v
        if type(value).__name__ == "Receiver" and out.get("labels") == {"name": out.get("name")}:
            del out["labels"]  # derived from the name on load: what the file had is nothing
        return out
    if isinstance(value, list):
        return [_value(v, conv) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, float) and conv is not None and not isinstance(value, bool):
        if conv.fn is parse_duration:
            return format_duration(value) if value else None
        if conv.fn is parse_go_duration:
            return format_go_duration(value) if value else None
    return value


def marshal_config(config: Config) -> str:
    """``config`` as YAML, with secrets hidden and no comments (see the module doc)."""
    doc = _value(config)
    for key in _HIDDEN_TOP:
        doc.pop(key, None)
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16))
