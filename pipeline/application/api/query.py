"""Query parameters and filters the alert reads share (``GET /alerts``, ``GET /alerts/groups``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from contracts.matchers import GoRegex, Matcher, MatcherError, compile_go_regex, parse_matcher

__all__ = ["alert_filters", "query_bool", "receivers_ok", "suppression_kept"]

# go-swagger's booleans (swag.ConvertBool): these spellings are true, any other is false
_TRUE = frozenset({"true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled"})


def alert_filters(request: Request) -> tuple[list[Matcher], GoRegex | None]:
    """The ``filter`` matchers (one per value) and the ``receiver`` regex (RE2, anchored) of an
    alerts read; ``MatcherError`` (a ValueError) names the bad one as Alertmanager does."""
    matchers = [parse_matcher(f) for f in request.query_params.getlist("filter")]
    receiver_re = request.query_params.get("receiver")
    try:
        return matchers, compile_go_regex(receiver_re) if receiver_re else None
    except MatcherError as exc:
        raise ValueError(f"failed to parse receiver param: {exc}") from exc


def query_bool(request: Request, name: str, default: bool = True) -> bool:
    """A boolean query parameter as go-swagger binds it: the last value counts, an empty or
    missing one is the default, and only swag's spellings of true are true."""
    values = request.query_params.getlist(name)
    if not values or values[-1] == "":
        return default
    return values[-1].lower() in _TRUE


def suppression_kept(status: dict[str, Any], *, active: bool, silenced: bool, inhibited: bool,
                     unprocessed: bool = True) -> bool:
    """Alertmanager's alert filter: each false flag excludes the alerts it names (an alert
    both silenced and inhibited is excluded by either flag)."""
    return not ((not active and status["state"] == "active") or (not silenced and status["silencedBy"])
                or (not inhibited and status["inhibitedBy"]) or (not unprocessed and status["state"] == "unprocessed"))


def receivers_ok(rx: GoRegex | None, receivers: Sequence[str]) -> bool:
    """No ``receiver`` regex, or one of ``receivers`` matches it."""
    return rx is None or any(rx.match(r) for r in receivers)
