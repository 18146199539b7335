"""Read-only views of the router's state for the API (pure functions).

The API reads the state subjects under :func:`group_state_prefix` and hands the raw values
here (:func:`groups_of`), or decodes each with :func:`decode_value` and hands the mapping
to :func:`groups_of_state` (a reader that keeps decoded values between reads); it gets
:class:`GroupView` objects back and never looks inside the router's state layout
(``state.py``) itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from stages.router.groups import GroupView, groups_view
from stages.router.state import StateValue, group_prefix

__all__ = ["GroupView", "RouterValue", "decode_value", "group_state_prefix", "groups_of", "groups_of_state"]

RouterValue = StateValue  # a decoded state value: the API holds it, never looks inside
_decoder = msgspec.json.Decoder(StateValue)


def group_state_prefix(org: str) -> tuple[str, str]:
    """The state key prefix of the organisation's groups (``group/<org token>/``), as key tokens."""
    prefix, org_part, _ = group_prefix(org).split("/", 2)
    return prefix, org_part


def decode_value(data: bytes) -> RouterValue:
    """A state value as the router wrote it (``msgspec.DecodeError`` if it is not one)."""
    return _decoder.decode(data)


def groups_of_state(state: Mapping[str, RouterValue], org: str, now: float) -> list[GroupView]:
    """The groups of ``org`` holding alerts not resolved at ``now``, in Alertmanager's API order,
    from its decoded state values by key under :func:`group_state_prefix`."""
    return groups_view(state, org, now)


def groups_of(entries: Iterable[tuple[str, bytes]], org: str, now: float) -> list[GroupView]:
    """:func:`groups_of_state` from the raw values (key, raw value)."""
    return groups_view({key: _decoder.decode(data) for key, data in entries}, org, now)
