"""Silences with Alertmanager's model: validation, states, in-place updates, expiry, matching.

A silence is *pending* before ``starts_at``, *expired* from ``ends_at`` on, *active* in
between (Alertmanager counts the instant ``ends_at`` itself as active; Tocsin expires a
silence at the instant it is expired, so an expiry is effective at once). It mutes an
alert whose labels satisfy all its matchers (regular expressions anchored) while active.
Expired silences are kept for a retention period, then deleted by their timer.

Commands (``SilenceCommand``, times from ``cmd.at``):

- ``upsert`` with ``silence.id == cmd.id``: create it, or update it in place when
  Alertmanager's ``canUpdate`` allows (same matchers; an active silence keeps its start
  and cannot end in the past; a pending one cannot start in the past). Otherwise the
  command is refused: the API must replace it instead (see :func:`plan_upsert`).
- ``upsert`` with ``silence.id != cmd.id``: *replace*: expire silence ``cmd.id`` (kept as
  history) and create ``silence.id``, as Alertmanager does when an edit cannot be in place.
- ``expire``: end it now (a pending one starts and ends now); expiring an expired silence
  changes nothing.

A new silence never starts before ``cmd.at``. Problems raise :class:`SilenceError` with
Alertmanager's message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from contracts.matchers import Matcher, MatcherError, go_quote, matchers_match
from contracts.messages import Silence, SilenceCommand, SilenceMatcher
from stages.filter.state import SilenceIndex, SilenceValue, StateValue, silence_index_key, silence_key

__all__ = [
    "SilenceError",
    "SilenceState",
    "apply_silence_command",
    "can_update",
    "compiled_matchers",
    "delete_silence",
    "expire_silence",
    "org_silences",
    "plan_upsert",
    "silence_state",
    "silenced_by",
    "validate_silence",
]

SilenceState = Literal["pending", "active", "expired"]
Changes = dict[str, StateValue | None]
_replace = msgspec.structs.replace


class SilenceError(ValueError):
    """A silence command that can never be applied (Alertmanager's message)."""


def silence_state(s: Silence, t: float) -> SilenceState:
    if t < s.starts_at:
        return "pending"
    if s.ends_at <= t:
        return "expired"
    return "active"


@functools.lru_cache(maxsize=4096)
def _compile(specs: tuple[tuple[str, str, bool, bool], ...]) -> tuple[Matcher, ...]:
    return tuple(Matcher.from_api(name, value, is_regex, is_equal) for name, value, is_regex, is_equal in specs)


def compiled_matchers(s: Silence) -> tuple[Matcher, ...]:
    """The silence's matchers (compiled once per distinct matcher list)."""
    return _compile(tuple((m.name, m.value, m.is_regex, m.is_equal) for m in s.matchers))


def _validate_matcher(m: SilenceMatcher) -> Matcher:
    if not m.name or not _valid_utf8(m.name):
        raise SilenceError(f"invalid label name {go_quote(m.name)}")
    if not m.is_regex and not _valid_utf8(m.value):
        raise SilenceError(f"invalid label value {go_quote(m.value)}")
    try:
        return Matcher.from_api(m.name, m.value, m.is_regex, m.is_equal)
    except MatcherError as exc:
        raise SilenceError(str(exc)) from None


def _valid_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _matches_empty(m: Matcher) -> bool:
    # As Alertmanager: only the positive forms count ("!=" and "!~" never do).
    return m.is_equal and m.matches_value("")


def validate_silence(s: Silence) -> None:
    """Alertmanager's ``validateSilence`` (one matcher list)."""
    if not s.matchers:
        raise SilenceError("at least one matcher required")
    all_match_empty = True
    for i, raw in enumerate(s.matchers):
        try:
            m = _validate_matcher(raw)
        except SilenceError as exc:
            raise SilenceError(f"invalid label matcher {i}: {exc}") from None
        all_match_empty = all_match_empty and _matches_empty(m)
    if all_match_empty:
        raise SilenceError("at least one matcher must not match the empty string")
    if s.starts_at == 0:
        raise SilenceError("invalid zero start timestamp")
    if s.ends_at == 0:
        raise SilenceError("invalid zero end timestamp")
    if s.ends_at < s.starts_at:
        raise SilenceError("end time must not be before start time")


def can_update(prev: Silence, new: Silence, t: float) -> bool:
    """Alertmanager's ``canUpdate``: whether ``prev`` may become ``new`` without rewriting history."""
    if prev.matchers != new.matchers:
        return False
    state = silence_state(prev, t)
    if state == "active":
        # Alertmanager compares start times at second precision.
        return int(prev.starts_at // 1) == int(new.starts_at // 1) and not new.ends_at < t
    if state == "pending":
        return not new.starts_at < t
    return False


def expire_silence(s: Silence, t: float) -> Silence:
    """The silence ended at ``t`` (unchanged when already expired)."""
    state = silence_state(s, t)
    if state == "expired":
        return s
    if state == "pending":
        return _replace(s, starts_at=t, ends_at=t, updated_at=t)
    return _replace(s, ends_at=t, updated_at=t)


def org_silences(state: Mapping[str, StateValue], org: str) -> list[Silence]:
    """Every silence of ``org`` in the state, by id."""
    index = state.get(silence_index_key(org))
    if not isinstance(index, SilenceIndex):
        return []
    out = []
    for sid in index.ids:
        value = state.get(silence_key(org, sid))
        if isinstance(value, SilenceValue):
            out.append(value.silence)
    return out


def silenced_by(silences: list[Silence], labels: Mapping[str, str], t: float) -> list[str]:
    """Ids of the silences active at ``t`` that match ``labels`` (sorted)."""
    return sorted(s.id for s in silences
                  if silence_state(s, t) == "active" and matchers_match(compiled_matchers(s), labels))


def plan_upsert(state: Mapping[str, StateValue], org: str, silence: Silence, t: float,
                new_id: Callable[[], str]) -> SilenceCommand:
    """The command an API should publish for a posted silence (Alertmanager's ``Set``).

    ``silence.id`` empty: a new silence under ``new_id()``. An id that exists and can be
    updated in place: an in-place upsert. Otherwise a replacement under ``new_id()``.
    Raises :class:`SilenceError` ("silence not found") for an unknown id.
    """
    if not silence.id:
        sid = new_id()
        return SilenceCommand(action="upsert", org=org, id=sid, at=t, silence=_replace(silence, id=sid, org=org))
    prev = state.get(silence_key(org, silence.id))
    if not isinstance(prev, SilenceValue):
        raise SilenceError("silence not found")
    candidate = _replace(silence, org=org, starts_at=silence.starts_at or t)
    if can_update(prev.silence, candidate, t):
        return SilenceCommand(action="upsert", org=org, id=silence.id, at=t, silence=candidate)
    sid = new_id()
    return SilenceCommand(action="upsert", org=org, id=silence.id, at=t, silence=_replace(candidate, id=sid))


def _index_with(state: Mapping[str, StateValue], changes: Changes, org: str, sid: str) -> None:
    key = silence_index_key(org)
    old = changes.get(key) if key in changes else state.get(key)
    ids = set(old.ids) if isinstance(old, SilenceIndex) else set()
    if sid not in ids:
        changes[key] = SilenceIndex(ids=sorted(ids | {sid}))


def _put(changes: Changes, s: Silence, retention: float) -> None:
    changes[silence_key(s.org, s.id)] = SilenceValue(silence=s, expires_at=s.ends_at + retention)


def apply_silence_command(state: Mapping[str, StateValue], cmd: SilenceCommand, retention: float) -> Changes:
    """The state changes of one silence command (raises :class:`SilenceError`)."""
    org, t = cmd.org, cmd.at
    changes: Changes = {}
    if cmd.action == "expire":
        current = state.get(silence_key(org, cmd.id))
        if not isinstance(current, SilenceValue):
            raise SilenceError("silence not found")
        ended = expire_silence(current.silence, t)
        if ended is not current.silence:
            _put(changes, ended, retention)
        return changes
    if cmd.silence is None:
        raise SilenceError("upsert without a silence")
    sil = cmd.silence
    if sil.org and sil.org != org:
        raise SilenceError(f"silence of organisation {sil.org!r} in a command of {org!r}")
    sil = _replace(sil, org=org, id=sil.id or cmd.id, starts_at=sil.starts_at or t)
    if not sil.id:
        raise SilenceError("ID missing")
    validate_silence(sil)
    prev_value = state.get(silence_key(org, cmd.id)) if cmd.id else None
    prev = prev_value.silence if isinstance(prev_value, SilenceValue) else None
    if sil.id == cmd.id and prev is not None:
        if not can_update(prev, sil, t):
            raise SilenceError(f"silence {sil.id} cannot be updated in place at this time; replace it under a new id")
        _put(changes, _replace(sil, updated_at=t), retention)
        return changes
    if sil.id != cmd.id:
        if cmd.id and prev is None:
            raise SilenceError("silence not found")
        if isinstance(state.get(silence_key(org, sil.id)), SilenceValue):
            raise SilenceError(f"silence {sil.id} already exists")
        if prev is not None:
            ended = expire_silence(prev, t)
            if ended is not prev:
                _put(changes, ended, retention)
    created = _replace(sil, starts_at=max(sil.starts_at, t), updated_at=t)
    _put(changes, created, retention)
    _index_with(state, changes, org, created.id)
    return changes


def delete_silence(state: Mapping[str, StateValue], org: str, sid: str) -> Changes:
    """Delete a silence past its retention, and its id from the org's index."""
    changes: Changes = {silence_key(org, sid): None}
    index = state.get(silence_index_key(org))
    if isinstance(index, SilenceIndex) and sid in index.ids:
        ids = [i for i in index.ids if i != sid]
        changes[silence_index_key(org)] = SilenceIndex(ids=ids) if ids else None
    return changes
