"""``POST /api/v2/silences`` bodies and the silence filter of ``GET /api/v2/silences`` (api.silences)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts import Silence, SilenceMatcher
from contracts.matchers import parse_matcher
from pipeline.application.api.push import PushError
from pipeline.application.api.silences import parse_silence, silence_has_matchers

M = {"name": "alertname", "value": "Disk", "isRegex": False}
GOOD: dict[str, Any] = {"matchers": [M], "startsAt": "2024-01-01T00:00:00Z", "endsAt": "2024-01-01T01:00:00Z",
                        "createdBy": "ops", "comment": "maintenance"}


def without(*names: str, **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k not in names} | changes


def parse(body: Any) -> Silence:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_silence(raw, "acme", 5000.0)


@pytest.mark.parametrize("body,code,message", [
    (b"", 602, "silence in body is required"),
    (b"{", 400, "parsing silence body from \"\" failed"),
    ([GOOD], 400, "silence in body must be of type object"),
    (without(createdBy=7), 400, "createdBy in body must be of type string"),
    (without(matchers={"a": "b"}), 400, "matchers in body must be of type array"),
    (without(matchers=["a"]), 400, "matchers.0 in body must be of type object"),
    (without(matchers=[M | {"isRegex": "no"}]), 400, "matchers.0.isRegex in body must be of type boolean"),
    (without(matchers=[M | {"value": 1}]), 400, "matchers.0.value in body must be of type string"),
    (without(endsAt="tomorrow"), 400, "endsAt in body must be of type date-time"),
    # go-swagger reports the first missing field in its order: comment, createdBy, endsAt, matchers, startsAt
    ({}, 602, "comment in body is required"),
    (without("createdBy", "startsAt"), 602, "createdBy in body is required"),
    (without("endsAt", "matchers"), 602, "endsAt in body is required"),
    (without("matchers", "startsAt"), 602, "matchers in body is required"),
    (without("startsAt"), 602, "startsAt in body is required"),
    (without(comment=None), 602, "comment in body is required"),
    (without(matchers=[]), 612, "matchers in body should have at least 1 items"),
    (without(matchers=[{"value": "x"}]), 602, "matchers.0.isRegex in body is required"),
    (without(matchers=[M, {"isRegex": True, "value": "x"}]), 602, "matchers.1.name in body is required"),
    (without(matchers=[{"isRegex": True, "name": "x"}]), 602, "matchers.0.value in body is required"),
    # types are checked before anything is required
    (without("comment", createdBy=1), 400, "createdBy in body must be of type string"),
], ids=["empty", "not-json", "not-object", "author-not-string", "matchers-not-array", "matcher-not-object",
        "isregex-not-bool", "value-not-string", "bad-time", "nothing", "no-author", "no-end", "no-matchers",
        "no-start", "null-comment", "zero-matchers", "matcher-no-isregex", "matcher-no-name", "matcher-no-value",
        "types-first"])
def test_bodies_refused(body: Any, code: int, message: str) -> None:
    with pytest.raises(PushError) as info:
        parse(body)
    assert info.value.code == code and message in str(info.value)


def test_a_good_body() -> None:
    s = parse(GOOD | {"id": "abc", "matchers": [M, {"name": "env", "value": "dev", "isRegex": True,
                                                     "isEqual": False}]})
    assert s == Silence(id="abc", org="acme", starts_at=1704067200.0, ends_at=1704070800.0, created_by="ops",
                        comment="maintenance", updated_at=5000.0, matchers=[
                            SilenceMatcher(name="alertname", value="Disk", is_regex=False, is_equal=True),
                            SilenceMatcher(name="env", value="dev", is_regex=True, is_equal=False)])


@pytest.mark.parametrize("changes,starts,ends", [
    ({"startsAt": "", "endsAt": ""}, 0.0, -62135596800.0),  # empty times decode to Go's zero time
    ({"startsAt": "1960-01-01T00:00:00Z"}, 0.0, 1704070800.0),
    ({"id": None, "comment": ""}, 1704067200.0, 1704070800.0),
], ids=["empty-times", "start-before-epoch", "null-id-empty-comment"])
def test_times_and_optional_fields(changes: dict[str, Any], starts: float, ends: float) -> None:
    s = parse(GOOD | changes)
    assert (s.starts_at, s.ends_at, s.id) == (starts, ends, "")


SIL = Silence(id="s", org="acme", starts_at=0, ends_at=1, matchers=[
    SilenceMatcher(name="alertname", value="Disk", is_regex=False, is_equal=True),
    SilenceMatcher(name="env", value="dev|test", is_regex=True, is_equal=True),
    SilenceMatcher(name="team", value="ops", is_regex=False, is_equal=False),
    SilenceMatcher(name="job", value="a.*", is_regex=True, is_equal=False)])


@pytest.mark.parametrize("filters,listed", [
    ([], True),
    (['alertname="Disk"'], True),
    (['env=~"dev|test"'], True),
    (['team!="ops"'], True),
    (['job!~"a.*"'], True),
    (['alertname="Disk"', 'team!="ops"'], True),
    (['env="dev"'], False),  # a label value the silence matches is not one of its matchers
    (['alertname=~"Disk"'], False),  # same name and value, another type
    (['alertname="Disk"', 'team="x"'], False),
    (['other="x"'], False),
], ids=["none", "equal", "regex", "not-equal", "not-regex", "two", "value-it-matches", "other-type",
        "one-of-two-missing", "other-name"])
def test_the_silence_filter_compares_matchers_not_labels(filters: list[str], listed: bool) -> None:
    assert silence_has_matchers(SIL, [parse_matcher(f) for f in filters]) is listed
