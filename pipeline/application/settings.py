"""Loading the configuration once: Alertmanager's file plus Tocsin's own ``tocsin:`` section.

The Alertmanager part loads unchanged (``pipeline.foundation.amconfig``). Tocsin's settings live in a
separate top-level ``tocsin:`` key, validated here with the same line-numbered errors;
each stage section is handed to that stage's own strict config type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from contracts.ids import check_org
from pipeline.application.config.auth import AuthConfig
from pipeline.application.config.ingest import IngestConfig
from pipeline.application.config.jwt_keys import KeySource, load_key_files
from pipeline.application.config.limits import LimitsConfig
from pipeline.application.config.static_tokens import TokenTable, parse_static_tokens
from pipeline.foundation.amconfig import Config, ConfigError, load_config, load_config_text
from pipeline.foundation.amconfig.decode import Decoder, compose
from pipeline.foundation.amconfig.load import compose_section
from pipeline.foundation.amconfig.model import PromDuration
from stages.filter.config import filter_options
from stages.filter.escalation import escalation_policies
from stages.notifier.config import check_fallbacks, load_notifier_config
from stages.notifier.templates import TEMPLATE_CHECK
from stages.rules.effective import load_checked_rules
from stages.source.config import load_source_config

__all__ = ["DEFAULT_CONFIG", "SIDECAR_NAME", "Loaded", "TocsinSection", "load", "load_text", "sidecar_of"]

SIDECAR_NAME = "tocsin.yml"  # Tocsin's settings beside alertmanager.yml, which then stays valid for Alertmanager
DEFAULT_CONFIG = """\
# Tocsin's built-in configuration, used when no --config.file is given.
route:
  receiver: default
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: default
"""


class TocsinSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The ``tocsin:`` section. Stage sections are validated by the stages' own config types."""

    default_org: str = "default"  # the organisation of alerts with no org_id label and no X-Scope-OrgID
    rules: dict[str, Any] | None = None  # stages.rules.rules.RuleSet
    source: dict[str, Any] | None = None  # stages.source.config.SourceConfig
    filter: dict[str, Any] | None = None
    notifier: dict[str, Any] | None = None
    escalation: dict[str, Any] | None = None  # stages.filter.escalation (policies)
    orgs: dict[str, str] | None = None  # organisation -> its own alertmanager.yml (path relative to this file)
    external_url: str = ""
    history_retention: PromDuration = 7 * 24 * 3600.0  # how long alert changes (the history) are kept, e.g. 30d
    auth: AuthConfig | None = None  # API authentication (default: none, as Alertmanager)
    limits: LimitsConfig | None = None  # API abuse limits
    ingest: IngestConfig | None = None  # POST /api/tocsin/ingest/<source> (docs/ingest.md)
    # /-/healthy fails once NATS has been unreachable this long (nats-py reconnects meanwhile)
    nats_disconnect_grace: PromDuration = 30.0


@dataclass(frozen=True)
class Loaded:
    config: Config
    tocsin: TocsinSection
    orgs: dict[str, Config] = field(default_factory=dict)  # organisations with their own configuration
    # The API's credentials, read once at load so a bad file is a start-up error (None: not used,
    # or a Loaded built in code; the process then reads them itself before it serves).
    tokens: TokenTable | None = None
    keys: KeySource | None = None

    def config_for(self, org: str) -> Config:
        return self.orgs.get(org, self.config)


def _line_of(node: Any, key: str) -> int:
    for k, _ in getattr(node, "value", []) or []:
        if getattr(k, "value", None) == key:
            return int(k.start_mark.line) + 1
    return int(node.start_mark.line) + 1 if node is not None else 0


def _child(node: Any, key: str) -> Any:
    for k, v in getattr(node, "value", []) or []:
        if getattr(k, "value", None) == key:
            return v
    return None


def _auth_files(section: TocsinSection, node: Any, filename: str,
                base_dir: Path) -> tuple[TokenTable | None, KeySource | None]:
    """The static tokens and JWT key files the ``auth`` section names, read now: a missing or
    invalid file is a configuration error with a file and a line, never a process that starts
    and then answers 500 to every request."""
    auth = section.auth
    if auth is None:
        return None, None
    auth_node = _child(node, "auth")
    tokens: TokenTable | None = None
    keys: KeySource | None = None
    errors: list[str] = []
    if auth.static is not None and "static" in auth.methods:
        static_node = _child(auth_node, "static")
        path = base_dir / auth.static.tokens_file
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            errors.append(f"{filename}:{_line_of(static_node, 'tokens_file')}: tocsin.auth.static.tokens_file: "
                          f"cannot read {path}: {reason}")
        else:
            try:
                tokens = parse_static_tokens(text, str(path))
            except ConfigError as exc:
                errors.extend(exc.errors)
    jwt = auth.jwt
    if jwt is not None and "jwt" in auth.methods and not jwt.jwks_url:  # a URL is fetched on first use
        jwt_node = _child(auth_node, "jwt")
        name = "jwks_file" if jwt.jwks_file else "secret_file"
        try:
            keys = load_key_files(jwt, base_dir=str(base_dir))
        except ConfigError as exc:
            line = _line_of(jwt_node, name)
            errors.extend(f"{filename}:{line}: tocsin.auth.jwt.{name}: {e}" for e in exc.errors)
    if errors:
        raise ConfigError(errors)
    return tokens, keys


def _check_stage_sections(section: TocsinSection, config: Config, node: Any, filename: str) -> list[str]:
    """Each stage validates its own section; errors name the file, the line and the section."""
    checks: list[tuple[str, Any]] = [
        ("rules", lambda: load_checked_rules(section.rules) if section.rules is not None else None),
        ("filter", lambda: filter_options(section.filter)),
        ("escalation", lambda: escalation_policies(section.escalation, {r.name for r in config.receivers})),
        ("source", lambda: load_source_config(section.source)),
        ("notifier", lambda: _fallbacks(load_notifier_config(config.tocsin), config)),
    ]
    errors = []
    for name, check in checks:
        try:
            check()
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            errors.append(f"{filename}:{_line_of(node, name)}: tocsin.{name}: {exc}")
    return errors


def _fallbacks(notifier: Any, config: Config) -> None:
    """Fallbacks naming unknown receivers or forming a cycle: a configuration error with its line."""
    problems = check_fallbacks(notifier, [r.name for r in config.receivers])
    if problems:
        raise ValueError("; ".join(problems))


def _tocsin(config: Config, text: str, filename: str) -> tuple[TocsinSection, Any]:
    """The section and its YAML node (for the line numbers of later checks)."""
    return _tocsin_node(config, compose_section(text, "tocsin") if config.tocsin is not None else None, filename)


def _tocsin_node(config: Config, node: Any, filename: str) -> tuple[TocsinSection, Any]:
    if node is None:
        return TocsinSection(), None
    decoder = Decoder(filename)
    section = decoder.decode(node, TocsinSection, "tocsin")
    if decoder.errors:
        raise ConfigError(decoder.errors)
    assert isinstance(section, TocsinSection)
    errors = _check_stage_sections(section, config, node, filename)
    for org_field, orgs in (("default_org", [section.default_org]), ("orgs", list(section.orgs or {}))):
        for org in orgs:
            problem = check_org(org)
            if problem:
                errors.append(f"{filename}:{_line_of(node, org_field)}: tocsin.{org_field}: {problem}")
    if section.nats_disconnect_grace <= 0:
        errors.append(f"{filename}:{_line_of(node, 'nats_disconnect_grace')}: tocsin.nats_disconnect_grace: "
                      "must be positive")
    if errors:
        raise ConfigError(errors)
    return section, node


def _org_configs(section: TocsinSection, base_dir: Path) -> dict[str, Config]:
    """Each organisation's own alertmanager.yml (its route tree, receivers, inhibit rules,
    time intervals); a `tocsin:` section there is not allowed (Tocsin's settings are global)."""
    out: dict[str, Config] = {}
    errors: list[str] = []
    for org, file in (section.orgs or {}).items():
        path = Path(file) if Path(file).is_absolute() else base_dir / file
        try:
            cfg = load_config(path, templates=TEMPLATE_CHECK)
        except ConfigError as exc:
            errors.extend(f"tocsin.orgs.{org}: {e}" for e in exc.errors)
            continue
        if cfg.tocsin is not None:
            errors.append(f"{path}: tocsin: an organisation's configuration cannot have a tocsin section")
        out[org] = cfg
    if errors:
        raise ConfigError(errors)
    return out


def load_text(text: str, filename: str = "<string>", base_dir: Path | None = None) -> Loaded:
    """``ConfigError`` (one ``file:line: field: problem`` per error) for an invalid
    configuration, or for a file its ``tocsin.auth`` section names that is missing or invalid."""
    config = load_config_text(text, filename, templates=TEMPLATE_CHECK)
    section, node = _tocsin(config, text, filename)
    base = base_dir or Path(".")
    tokens, keys = _auth_files(section, node, filename, base)
    return Loaded(config, section, _org_configs(section, base), tokens=tokens, keys=keys)


def sidecar_of(path: Path | None, tocsin_file: Path | None = None) -> Path | None:
    """The file holding Tocsin's settings beside ``alertmanager.yml``: ``tocsin_file`` when
    given, else ``tocsin.yml`` in the configuration's directory when there is one."""
    if tocsin_file is not None or path is None:
        return tocsin_file
    beside = Path(path).parent / SIDECAR_NAME
    return beside if beside.is_file() and beside.resolve() != Path(path).resolve() else None


def _with_sidecar(config: Config, path: Path, sidecar: Path) -> tuple[Config, Any, str]:
    """``config`` with the sidecar file's settings as its ``tocsin`` section; the file's root node
    and name (for line numbers). Settings in both places are an error naming both."""
    if config.tocsin is not None:
        raise ConfigError([f"{sidecar}: Tocsin's settings are given twice: in this file and in the tocsin: "
                           f"section of {path}; keep one (the separate file keeps {path} valid for Alertmanager)"])
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{sidecar}: cannot read Tocsin's settings: {exc}"]) from exc
    try:
        node, data = compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError([f"{sidecar}:{mark.line + 1 if mark else 0}: {exc}"]) from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"{sidecar}:1: Tocsin's settings must be a mapping (default_org:, auth:, ...)"])
    return msgspec.structs.replace(config, tocsin=data or {}), node, os.fspath(sidecar)


def load(path: Path | None, tocsin_file: Path | None = None) -> Loaded:
    """The configuration of ``path`` (or the built-in one) with Tocsin's settings from its
    ``tocsin:`` section or from the sidecar file (:func:`sidecar_of`)."""
    sidecar = sidecar_of(path, tocsin_file)
    if path is None:
        loaded = load_text(DEFAULT_CONFIG, "<built-in>")
        if sidecar is None:
            return loaded
        path, config = Path("<built-in>"), loaded.config
    else:
        config = load_config(path, templates=TEMPLATE_CHECK)
    if sidecar is not None:
        config, node, name = _with_sidecar(config, Path(path), sidecar)
        section, node = _tocsin_node(config, node, name)
        base = sidecar.parent
        tokens, keys = _auth_files(section, node, name, base)
        return Loaded(config, section, _org_configs(section, base), tokens=tokens, keys=keys)
    section, node = _tocsin(config, config.original, os.fspath(path))
    base = Path(path).parent
    tokens, keys = _auth_files(section, node, os.fspath(path), base)
    return Loaded(config, section, _org_configs(section, base), tokens=tokens, keys=keys)
