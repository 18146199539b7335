"""Loading the configuration once: Alertmanager's file plus Tocsin's own ``tocsin:`` section.

The Alertmanager part loads unchanged (``pipeline.amconfig``). Tocsin's settings live in a
separate top-level ``tocsin:`` key, validated here with the same line-numbered errors;
each stage section is handed to that stage's own strict config type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pipeline.amconfig import Config, ConfigError, load_config, load_config_text
from pipeline.amconfig.decode import Decoder
from pipeline.amconfig.load import compose_section
from pipeline.amconfig.model import PromDuration
from pipeline.api.auth_config import AuthConfig
from pipeline.api.limits import LimitsConfig

__all__ = ["DEFAULT_CONFIG", "Loaded", "TocsinSection", "load", "load_text"]

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
    orgs: dict[str, str] | None = None  # organisation -> its own alertmanager.yml (path relative to this file)
    external_url: str = ""
    history_retention: PromDuration = 7 * 24 * 3600.0  # how long alert changes (the history) are kept, e.g. 30d
    auth: AuthConfig | None = None  # API authentication (default: none, as Alertmanager)
    limits: LimitsConfig | None = None  # API abuse limits


@dataclass(frozen=True)
class Loaded:
    config: Config
    tocsin: TocsinSection
    orgs: dict[str, Config] = field(default_factory=dict)  # organisations with their own configuration

    def config_for(self, org: str) -> Config:
        return self.orgs.get(org, self.config)


def _line_of(node: Any, key: str) -> int:
    for k, _ in getattr(node, "value", []) or []:
        if getattr(k, "value", None) == key:
            return int(k.start_mark.line) + 1
    return int(node.start_mark.line) + 1 if node is not None else 0


def _check_stage_sections(section: TocsinSection, config: Config, node: Any, filename: str) -> list[str]:
    """Each stage validates its own section; errors name the file, the line and the section."""
    from stages.filter.config import filter_options
    from stages.notifier.config import load_notifier_config
    from stages.rules.rules import load_rules
    from stages.source.config import load_source_config

    checks: list[tuple[str, Any]] = [
        ("rules", lambda: load_rules(section.rules) if section.rules is not None else None),
        ("filter", lambda: filter_options(section.filter)),
        ("source", lambda: load_source_config(section.source)),
        ("notifier", lambda: load_notifier_config(config.tocsin)),
    ]
    errors = []
    for name, check in checks:
        try:
            check()
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            errors.append(f"{filename}:{_line_of(node, name)}: tocsin.{name}: {exc}")
    return errors


def _tocsin(config: Config, text: str, filename: str) -> TocsinSection:
    node = compose_section(text, "tocsin") if config.tocsin is not None else None
    if node is None:
        return TocsinSection()
    decoder = Decoder(filename)
    section = decoder.decode(node, TocsinSection, "tocsin")
    if decoder.errors:
        raise ConfigError(decoder.errors)
    assert isinstance(section, TocsinSection)
    errors = _check_stage_sections(section, config, node, filename)
    if errors:
        raise ConfigError(errors)
    return section


def _org_configs(section: TocsinSection, base_dir: Path) -> dict[str, Config]:
    """Each organisation's own alertmanager.yml (its route tree, receivers, inhibit rules,
    time intervals); a `tocsin:` section there is not allowed (Tocsin's settings are global)."""
    out: dict[str, Config] = {}
    errors: list[str] = []
    for org, file in (section.orgs or {}).items():
        path = Path(file) if Path(file).is_absolute() else base_dir / file
        try:
            cfg = load_config(path)
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
    config = load_config_text(text, filename)
    section = _tocsin(config, text, filename)
    return Loaded(config, section, _org_configs(section, base_dir or Path(".")))


def load(path: Path | None) -> Loaded:
    """The configuration of ``path``, or the built-in one."""
    if path is None:
        return load_text(DEFAULT_CONFIG, "<built-in>")
    config = load_config(path)
    section = _tocsin(config, config.original, str(path))
    return Loaded(config, section, _org_configs(section, Path(path).parent))
