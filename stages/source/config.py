"""Settings of the source stage (hop A): which slot and publication to read, which tables, how hard to retry.

:class:`SourceConfig` is strict: unknown keys are rejected with the key's name, and values are
checked when the struct is built. :func:`load_source_config` turns a YAML/JSON mapping into one
with a message that says which key is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from pipeline.foundation.runtime.wire import MAX_BATCH
from stages.source.mapping import TableMapping

__all__ = ["SourceConfig", "SourceConfigError", "load_source_config"]

# Slot and publication names go into replication commands and string literals: keep them plain.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class SourceConfigError(ValueError):
    """A source setting that cannot work; the message names the setting."""


class SourceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the source stage reads Postgres.

    ``slot``: the logical replication slot (pgoutput). A slot keeps WAL until the source
    confirms it, so a stopped source makes Postgres retain WAL (see docs/source.md).
    ``publication``: the publication naming the tables. ``tables``: which tables become
    events and how (default: the reference ``public.events``). ``create_slot`` /
    ``create_publication``: create them when missing (else a missing one is an error).
    ``migrate``: apply the reference schema (``CREATE TABLE IF NOT EXISTS events``) on start.
    ``status_interval``: seconds between standby status updates (keep it well under the
    server's ``wal_sender_timeout``). ``reconnect_backoff`` / ``reconnect_backoff_max``: first
    and longest wait before reconnecting after a failure (doubling in between).
    ``lock_poll``: how often a standby replica tries to take the slot's lock.
    ``batch_messages``: messages per atomic batch including the checkpoint (the server caps
    batches at 1000).
    """

    slot: str = "tocsin"
    publication: str = "tocsin"
    tables: list[TableMapping] = msgspec.field(default_factory=lambda: [TableMapping()])
    create_slot: bool = True
    create_publication: bool = True
    migrate: bool = True
    status_interval: float = 10.0
    reconnect_backoff: float = 0.5
    reconnect_backoff_max: float = 10.0
    lock_poll: float = 1.0
    batch_messages: int = MAX_BATCH

    def __post_init__(self) -> None:
        for key in ("slot", "publication"):
            value = getattr(self, key)
            if _NAME.fullmatch(value) is None:
                raise SourceConfigError(
                    f"source.{key}: {value!r} must be lower-case letters, digits and _ (at most 63)"
                )
        if not self.tables:
            raise SourceConfigError("source.tables: name at least one table")
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.qualified_name in seen:
                raise SourceConfigError(f"source.tables[{i}]: table {t.qualified_name} is listed twice")
            seen.add(t.qualified_name)
        positive = {
            "status_interval": self.status_interval,
            "reconnect_backoff": self.reconnect_backoff,
            "reconnect_backoff_max": self.reconnect_backoff_max,
            "lock_poll": self.lock_poll,
        }
        for key, value in positive.items():
            if not value > 0:
                raise SourceConfigError(f"source.{key}: must be greater than 0, got {value}")
        if self.reconnect_backoff_max < self.reconnect_backoff:
            raise SourceConfigError("source.reconnect_backoff_max: must not be less than reconnect_backoff")
        if not 2 <= self.batch_messages <= MAX_BATCH:
            raise SourceConfigError(
                f"source.batch_messages: must be between 2 and {MAX_BATCH}, got {self.batch_messages}"
            )

    @property
    def rows_per_batch(self) -> int:
        """Events and dead letters per batch: one place is the checkpoint's."""
        return self.batch_messages - 1

    def mapping_for(self, schema: str, table: str) -> TableMapping | None:
        for t in self.tables:
            if t.schema == schema and t.table == table:
                return t
        return None


def load_source_config(raw: Mapping[str, Any] | SourceConfig | None) -> SourceConfig:
    """A :class:`SourceConfig` from a mapping (e.g. the ``source:`` section of a YAML file).

    ``None`` gives the defaults. Raises :class:`SourceConfigError` naming the offending key.
    """
    if raw is None:
        return SourceConfig()
    if isinstance(raw, SourceConfig):
        return raw
    try:
        return msgspec.convert(dict(raw), SourceConfig)
    except SourceConfigError:
        raise
    except (msgspec.ValidationError, ValueError) as exc:
        raise SourceConfigError(f"source config: {exc}") from None
