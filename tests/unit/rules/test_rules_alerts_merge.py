"""Alertmanager's pushed-alert semantics as pure functions: prepare, overlaps, merge, put."""

from __future__ import annotations

import pytest

from contracts.messages import PushedAlert
from stages.rules.alerts import InvalidAlert, Posted, is_resolved, merge, overlaps, prepare, put

L = {"alertname": "A"}


def posted(
    starts: float,
    ends: float | None,
    *,
    updated: float = 0.0,
    timeout: bool = False,
    ann: str = "",
) -> Posted:
    return Posted(
        labels=L,
        annotations={"a": ann} if ann else {},
        starts_at=starts,
        ends_at=ends,
        timeout=timeout,
        updated_at=updated,
    )


@pytest.mark.parametrize(
    ("starts", "ends", "want_starts", "want_ends", "want_timeout"),
    [
        (None, None, 1000.0, 1300.0, True),  # both missing: now, now + resolve_timeout
        (900.0, None, 900.0, 1300.0, True),
        (None, 950.0, 950.0, 950.0, False),  # Alertmanager: a missing start is the given end
        (900.0, 2000.0, 900.0, 2000.0, False),
        (900.0, 900.0, 900.0, 900.0, False),  # an instant alert is valid
    ],
    ids=["none", "start-only", "end-only", "both", "instant"],
)
def test_prepare_fills_times(
    starts: float | None, ends: float | None, want_starts: float, want_ends: float, want_timeout: bool
) -> None:
    p = prepare(PushedAlert(labels=L, starts_at=starts, ends_at=ends), now=1000.0, resolve_timeout=300.0)
    assert (p.starts_at, p.ends_at, p.timeout, p.updated_at) == (want_starts, want_ends, want_timeout, 1000.0)


def test_prepare_drops_empty_label_values() -> None:
    p = prepare(PushedAlert(labels={"alertname": "A", "job": ""}), now=0.0, resolve_timeout=1.0)
    assert dict(p.labels) == {"alertname": "A"}


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        (PushedAlert(labels={}), "at least one label"),
        (PushedAlert(labels={"job": ""}), "at least one label"),
        (PushedAlert(labels={"": "x"}), "empty label name"),
        (PushedAlert(labels=L, annotations={"": "x"}), "empty annotation name"),
        (PushedAlert(labels=L, starts_at=10.0, ends_at=5.0), "start time must be before end time"),
        (PushedAlert(labels=L, starts_at=float("inf")), "finite"),
        (PushedAlert(labels=L, starts_at=2000.0), "start time must be before end time"),  # past now + timeout
    ],
    ids=["no-labels", "only-empty", "empty-name", "empty-annotation", "end-before-start", "inf", "future"],
)
def test_prepare_rejects_what_alertmanager_rejects(alert: PushedAlert, message: str) -> None:
    with pytest.raises(InvalidAlert, match=message):
        prepare(alert, now=1000.0, resolve_timeout=300.0)


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        ((100, 400), (200, 500), True),  # new start inside old span
        ((100, 400), (50, 300), True),  # new end inside old span
        ((100, 400), (100, 500), False),  # same start, later end: replaced (same result as a merge)
        ((100, 400), (400, 700), False),  # starts exactly when the old ended: a new occurrence
        ((100, 400), (500, 800), False),
        ((100, 400), (10, 50), False),  # entirely before
        ((100, None), (200, 500), True),  # an open-ended stored alert contains everything after its start
    ],
    ids=["start-inside", "end-inside", "same-start", "adjacent", "after", "before", "open-ended"],
)
def test_overlaps(old: tuple[float, float | None], new: tuple[float, float], want: bool) -> None:
    assert overlaps(posted(*old), posted(*new)) is want


@pytest.mark.parametrize(
    ("a", "o", "now", "want_starts", "want_ends"),
    [
        # earliest start always wins
        (posted(100, 400, updated=1), posted(200, 500, updated=2), 150, 100, 500),
        # younger firing, older has a later explicit end: the explicit end rules
        (posted(100, 900, updated=1), posted(100, 500, updated=2, timeout=True), 150, 100, 900),
        # ... but not when the older end came from a timeout
        (posted(100, 900, updated=1, timeout=True), posted(100, 500, updated=2), 150, 100, 500),
        # younger resolved, older still firing: the younger's resolve time
        (posted(100, 900, updated=1), posted(100, 200, updated=2), 250, 100, 200),
        # both resolved: the later explicit resolve wins
        (posted(100, 240, updated=1), posted(100, 200, updated=2), 250, 100, 240),
        (posted(100, 200, updated=1), posted(100, 240, updated=2), 250, 100, 240),
        # younger resolved, older resolved in the future (still firing at now): younger wins
        (posted(100, 300, updated=1), posted(100, 200, updated=2), 250, 100, 200),
    ],
    ids=["earliest-start", "explicit-end-rules", "timeout-end-loses", "resolve", "later-resolve-old",
         "later-resolve-new", "older-not-resolved"],
)
def test_merge_times(a: Posted, o: Posted, now: float, want_starts: float, want_ends: float) -> None:
    m = merge(a, o, now)
    assert (m.starts_at, m.ends_at) == (want_starts, want_ends)


def test_merge_takes_content_from_the_younger_either_way_round() -> None:
    older = posted(100, 900, updated=1, ann="old")
    younger = posted(200, 500, updated=2, ann="new", timeout=True)
    for m in (merge(older, younger, 150), merge(younger, older, 150)):
        assert m.annotations == {"a": "new"} and m.timeout is True and m.updated_at == 2
        assert (m.starts_at, m.ends_at) == (100, 900)


@pytest.mark.parametrize(
    ("old", "new", "now", "want"),
    [
        (None, posted(5, 10, updated=5), 5, (5, 10)),
        (posted(0, 300, updated=0), posted(60, 360, updated=60, timeout=True), 60, (0, 360)),  # merged
        (posted(0, 300, updated=0), posted(400, 700, updated=400), 400, (400, 700)),  # reactivated: new start
        (posted(0, 300, updated=0), posted(0, 60, updated=60), 60, (0, 60)),  # resolved
    ],
    ids=["first", "continue", "reactivate", "resolve"],
)
def test_put(old: Posted | None, new: Posted, now: float, want: tuple[float, float]) -> None:
    got = put(old, new, now)
    assert (got.starts_at, got.ends_at) == want


@pytest.mark.parametrize(
    ("ends", "now", "want"), [(None, 5, False), (5, 5, True), (4, 5, True), (6, 5, False)],
    ids=["none", "equal", "past", "future"],
)
def test_is_resolved(ends: float | None, now: float, want: bool) -> None:
    assert is_resolved(ends, now) is want
