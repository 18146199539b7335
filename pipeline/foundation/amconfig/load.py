"""Loading alertmanager.yml: parse, validate like Alertmanager, report every error found.

Errors name the file, the line and the field path::

    alertmanager.yml:12: route.routes[0].group_wait: invalid duration "5x"

Go templates are checked at load, as ``tocsin up`` and ``check-config`` both load: every
templated receiver field must parse (``alertmanager.yml:12: receivers[0].slack_configs[0].title:
template: ...``) and so must every file the ``templates:`` globs match (``file.tmpl:3: ...``).
Apart from the config file, those template files are the only files read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from pipeline.foundation.amconfig.decode import Decoder, compose
from pipeline.foundation.amconfig.model import Config, HTTPConfig, OAuth2, TLSConfig
from pipeline.foundation.amconfig.receivers import DELIVERED_KINDS, apply_defaults, delivered_integrations
from pipeline.foundation.amconfig.validate import validate_config

__all__ = [
    "ConfigError",
    "TemplateCheck",
    "check_config_report",
    "compose_section",
    "load_config",
    "load_config_text",
    "redact",
]

_replace = msgspec.structs.replace


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` holds one ``file:line: path: message`` per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class TemplateCheck(Protocol):
    """The template language's checks at load (the notifier's engine, handed in by the
    application: this foundation layer knows no stage)."""

    def check_text(self, text: str) -> str | None:
        """Why a templated field's text does not parse (``line N: ...``), or ``None``."""
        ...

    def check_files(self, globs: Sequence[str]) -> list[str]:
        """The ``file:line: message`` errors of the files the ``templates:`` globs match."""
        ...


def load_config(path: str | os.PathLike[str], *, templates: TemplateCheck | None = None) -> Config:
    """Read and load a config file; relative template and HTTP file paths are resolved
    against the file's directory, as Alertmanager does. ``templates``: check templated
    fields and template files too (``tocsin up`` and ``check-config`` do)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{name}: {exc}"]) from None
    return load_config_text(text, name, base_dir=os.path.dirname(name) or ".", templates=templates)


def load_config_text(text: str, filename: str = "<string>", *, base_dir: str | None = None,
                     templates: TemplateCheck | None = None) -> Config:
    """Load a config from its text. ``base_dir`` resolves relative file paths when given;
    ``templates`` checks the templates (see :func:`load_config`)."""
    try:
        root = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{filename}:{mark.line + 1}" if mark else filename
        raise ConfigError([f"{line}: YAML syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}: YAML syntax error: {exc}"]) from None
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        raise ConfigError([f"{filename}: no route provided in config"])
    decoder = Decoder(filename)
    config = decoder.decode_struct(root, Config, "")
    if decoder.errors:
        raise ConfigError(decoder.errors)
    validate_config(config, decoder.error_at)
    if templates is not None:
        _check_field_templates(config, decoder, templates)
    config, problems = apply_defaults(config)
    for obj, field, message in problems:
        decoder.error_at(obj, field, message)
    if decoder.errors:
        raise ConfigError(decoder.errors)
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    if templates is not None and config.templates:
        errors = templates.check_files(config.templates)
        if errors:
            raise ConfigError([f"{e} (templates)" for e in errors])
    return _replace(config, original=text, redacted=redact(text, decoder.secret_spans), filename=filename)


# --------------------------------------------------------------------------- Go templates

def _check_field_templates(config: Config, decoder: Decoder, templates: TemplateCheck) -> None:
    """Report every string field of a delivered integration that is not a valid template."""

    def walk(obj: Any, field: str, value: Any, where: str = "") -> None:
        if isinstance(value, str):
            if "{{" in value:
                problem = templates.check_text(value)
                if problem is not None:
                    decoder.error_at(obj, field, f"{where}template: {problem}")
        elif isinstance(value, msgspec.Struct):
            for name in value.__struct_fields__:
                walk(value, name, getattr(value, name))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(obj, field, v, f"{where}{k}: ")
        elif isinstance(value, list | tuple):
            for v in value:
                walk(obj, field, v, where)

    for rcv in config.receivers:
        for kind, _, cfg in delivered_integrations(rcv):
            walk(rcv, f"{kind}_configs", cfg)


def redact(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with each ``(start, end)`` character span replaced by ``<secret>``."""
    out = text
    last_start = len(text) + 1
    for start, end in sorted(set(spans), reverse=True):
        while end > start and out[end - 1] in "\r\n \t":  # keep the newline after a block scalar
            end -= 1
        if end > last_start:  # overlapping span (aliases): already replaced
            continue
        out = out[:start] + "<secret>" + out[end:]
        last_start = start
    return out


def compose_section(text: str, key: str) -> Node | None:
    """The YAML node of a top-level section (e.g. ``tocsin``), for modules that validate
    their own section with line numbers using ``decode.Decoder``."""
    root = compose(text)
    if not isinstance(root, MappingNode):
        return None
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    return None


# --------------------------------------------------------------------------- file paths


def _join(base: str, path: str) -> str:
    return path if not path or os.path.isabs(path) else os.path.join(base, path)


def _tls_dir(tls: TLSConfig, base: str) -> TLSConfig:
    return _replace(
        tls, ca_file=_join(base, tls.ca_file), cert_file=_join(base, tls.cert_file), key_file=_join(base, tls.key_file)
    )


def _http_dir(http: HTTPConfig | None, base: str) -> HTTPConfig | None:
    if http is None:
        return None
    changes: dict[str, Any] = {
        "tls_config": _tls_dir(http.tls_config, base),
        "bearer_token_file": _join(base, http.bearer_token_file),
    }
    if http.basic_auth is not None:
        changes["basic_auth"] = _replace(
            http.basic_auth,
            password_file=_join(base, http.basic_auth.password_file),
            username_file=_join(base, http.basic_auth.username_file),
        )
    if http.authorization is not None:
        changes["authorization"] = _replace(
            http.authorization, credentials_file=_join(base, http.authorization.credentials_file)
        )
    if http.oauth2 is not None:
        oauth: OAuth2 = http.oauth2
        changes["oauth2"] = _replace(
            oauth, client_secret_file=_join(base, oauth.client_secret_file), tls_config=_tls_dir(oauth.tls_config, base)
        )
    if http.http_headers:
        changes["http_headers"] = {
            name: _replace(h, files=[_join(base, f) for f in h.files]) for name, h in http.http_headers.items()
        }
    return _replace(http, **changes)


def _resolve_paths(config: Config, base: str) -> Config:
    receivers = []
    for rcv in config.receivers:
        kinds = [f"{k}_configs" for k in DELIVERED_KINDS if k != "email"]  # every kind with an http_config
        receivers.append(
            _replace(
                rcv,
                **{
                    kind: [_replace(c, http_config=_http_dir(c.http_config, base)) for c in getattr(rcv, kind)]
                    for kind in kinds
                },
            )
        )
    g = config.global_
    http = _http_dir(g.http_config, base)
    assert http is not None
    return _replace(
        config,
        templates=[_join(base, t) for t in config.templates],
        global_=_replace(g, http_config=http),
        receivers=receivers,
    )


# --------------------------------------------------------------------------- amtool check-config


def check_config_report(
    paths: Sequence[str | os.PathLike[str]],
    *,
    check_templates: Callable[[list[str]], str | None] | None = None,
    loader: Callable[[str], Config] | None = None,
) -> tuple[bool, str]:
    """Validate files and describe them as ``amtool check-config`` does.

    ``check_templates`` receives a config's template globs and returns an error text or
    ``None``; without it templates are only counted. ``loader``: what loads one file (the
    application passes the loader ``tocsin up`` uses, so both check the same things);
    without it, :func:`load_config`.
    """
    load = loader or load_config
    ok = True
    lines: list[str] = []
    for path in paths:
        name = os.fspath(path)
        try:
            config: Config | None = load(name)
            lines.append(f"Checking '{name}'  SUCCESS")
        except ConfigError as exc:
            config = None
            ok = False
            lines.append(f"Checking '{name}'  FAILED: {exc.errors[0] if exc.errors else exc}")
            lines.extend(f"    {err}" for err in exc.errors[1:])
        if config is not None:
            lines.append("Found:")
            lines.append(" - global config")
            if config.route is not None:
                lines.append(" - route")
            lines.append(f" - {len(config.inhibit_rules)} inhibit rules")
            lines.append(f" - {len(config.receivers)} receivers")
            lines.append(f" - {len(config.templates)} templates")
            if config.templates and check_templates is not None:
                err = check_templates(list(config.templates))
                if err:
                    ok = False
                    lines.append(f"  FAILED: {err}")
                else:
                    lines.append("  SUCCESS")
            lines.extend(_receiver_lines(config))
        lines.append("")
    return ok, "\n".join(lines) + "\n"


def _receiver_lines(config: Config) -> list[str]:
    """Each receiver and its integrations (what a route to it notifies), after amtool's counts."""
    if not config.receivers:
        return []
    out = ["Receivers:"]
    for rcv in config.receivers:
        kinds = [f"{kind}[{i}]" for kind, i, _ in delivered_integrations(rcv)]
        out.append(f" - {rcv.name}: {', '.join(kinds) if kinds else 'no integrations (notifies nothing)'}")
    return out
