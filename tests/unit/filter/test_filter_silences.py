"""Silences through the filter core: validation, states and timers, matching, updates, views."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from filter_fold import Fold, alert, core, expire, flush, fp, log_entries, matcher, sent_fps, silence, upsert

from contracts.messages import Silence, SilenceCommand, SilenceMatcher
from pipeline.foundation.runtime.step import Reject
from stages.filter.silences import SilenceError, plan_upsert, silence_state
from stages.filter.state import SilenceIndex, SilenceValue
from stages.filter.views import silence_view, silences_view

WEB1 = {"alertname": "HighCPU", "instance": "web-1", "env": "prod"}
WEB2 = {"alertname": "HighCPU", "instance": "web-2", "env": "prod"}
DB1 = {"alertname": "HighCPU", "instance": "db-1", "env": "dev"}
_replace = msgspec.structs.replace


VALIDATION = [
    ("no-matchers", silence("s1", [], 10.0, 20.0), "invalid silence: at least one matcher required"),
    ("only-matches-empty-equal", silence("s1", [matcher("env", "")], 10.0, 20.0),
     "invalid silence: at least one matcher must not match the empty string"),
    ("only-matches-empty-regex", silence("s1", [matcher("env", ".*", regex=True)], 10.0, 20.0),
     "invalid silence: at least one matcher must not match the empty string"),
    ("bad-regex", silence("s1", [matcher("env", "(", regex=True)], 10.0, 20.0),
     'invalid silence: invalid label matcher 0: invalid regular expression "('),
    ("empty-label-name", silence("s1", [matcher("", "x")], 10.0, 20.0),
     'invalid silence: invalid label matcher 0: invalid label name ""'),
    ("end-before-start", silence("s1", [matcher("env", "prod")], 20.0, 10.0),
     "invalid silence: end time must not be before start time"),
    ("zero-end", silence("s1", [matcher("env", "prod")], 10.0, 0.0), "invalid silence: invalid zero end timestamp"),
]


@pytest.mark.parametrize(("sil", "message"), [(s, m) for _, s, m in VALIDATION], ids=[v[0] for v in VALIDATION])
def test_invalid_silences_are_rejected(sil: Silence, message: str) -> None:
    f = Fold(core())
    with pytest.raises(Reject) as info:
        f.step(upsert(sil, 5.0))
    assert str(info.value).startswith(message)
    assert f.state == {}


def test_valid_alongside_matchers_that_match_empty() -> None:
    f = Fold(core())
    f.step(upsert(silence("s1", [matcher("team", ""), matcher("env", "prod")], 10.0, 20.0), 5.0))
    assert "silence/o1/s1" in f.state


def test_states_follow_time_and_retention_timer_deletes() -> None:
    f = Fold(core(silence_retention=1000.0))
    f.step(upsert(silence("s1", [matcher("env", "prod")], 100.0, 200.0), 0.0))
    states = [silences_view(f.state, "o1", t)[0].state for t in (50.0, 100.0, 199.9, 200.0, 250.0)]
    assert states == ["pending", "active", "active", "expired", "expired"]
    assert f.state["silences/o1"] == SilenceIndex(ids=["s1"])
    f.advance(1199.0)
    assert "silence/o1/s1" in f.state
    f.advance(1200.0)
    assert "silence/o1/s1" not in f.state and "silences/o1" not in f.state


def test_silence_mutes_while_active_only() -> None:
    f = Fold(core())
    f.step(upsert(silence("s1", [matcher("instance", "web-1")], 100.0, 200.0), 0.0))
    assert sent_fps(f.sends(flush([alert(WEB1)], 50.0, seq=1))) == [[fp(WEB1)]]  # pending: not muted
    f2 = Fold(core())
    f2.step(upsert(silence("s1", [matcher("instance", "web-1")], 100.0, 200.0), 0.0))
    assert f2.sends(flush([alert(WEB1)], 150.0, seq=1)) == []  # active: muted, nothing logged
    assert not log_entries(f2.state)
    # Expired: first notification as if it had never been silenced.
    assert sent_fps(f2.sends(flush([alert(WEB1)], 450.0, seq=2))) == [[fp(WEB1)]]


MATCHING = [
    ("regex-is-anchored", [matcher("instance", "web", regex=True)], []),
    ("regex-matches-whole-value", [matcher("instance", "web-.*", regex=True)], [WEB1, WEB2]),
    ("not-equal", [matcher("env", "prod", equal=False)], [DB1]),
    ("not-regex", [matcher("instance", "web-.*", regex=True, equal=False)], [DB1]),
    ("all-matchers-must-match", [matcher("env", "prod"), matcher("instance", "web-2")], [WEB2]),
    ("missing-label-is-empty", [matcher("alertname", "HighCPU"), matcher("team", "", equal=False)], []),
    ("alternation", [matcher("instance", "web-1|db-1", regex=True)], [WEB1, DB1]),
]


@pytest.mark.parametrize(("matchers", "silenced"), [(m, s) for _, m, s in MATCHING], ids=[c[0] for c in MATCHING])
def test_matching(matchers: list[SilenceMatcher], silenced: list[dict[str, str]]) -> None:
    f = Fold(core())
    f.step(upsert(silence("s1", matchers, 10.0, 1000.0), 0.0))
    everyone = [WEB1, WEB2, DB1]
    (req,) = f.sends(flush([alert(lb) for lb in everyone], 100.0)) or [None]
    sent = [a.fingerprint for a in req.alerts] if req else []
    assert sent == [fp(lb) for lb in everyone if lb not in silenced]


def test_update_in_place_extends_active_silence() -> None:
    f = Fold(core())
    s = silence("s1", [matcher("env", "prod")], 10.0, 100.0)
    f.step(upsert(s, 10.0))
    f.step(upsert(_replace(s, ends_at=500.0, comment="longer"), 50.0))
    stored = f.state["silence/o1/s1"]
    assert isinstance(stored, SilenceValue)
    assert (stored.silence.ends_at, stored.silence.comment, stored.silence.updated_at) == (500.0, "longer", 50.0)
    assert f.sends(flush([alert(WEB1)], 300.0)) == []


def test_active_silence_with_new_matchers_cannot_be_updated_in_place() -> None:
    f = Fold(core())
    s = silence("s1", [matcher("env", "prod")], 10.0, 100.0)
    f.step(upsert(s, 10.0))
    with pytest.raises(Reject, match="cannot be updated in place"):
        f.step(upsert(_replace(s, matchers=[matcher("env", "dev")]), 50.0))


def test_replace_expires_old_and_creates_new() -> None:
    f = Fold(core())
    s = silence("s1", [matcher("env", "prod")], 10.0, 100.0)
    f.step(upsert(s, 10.0))
    f.step(upsert(_replace(s, id="s2", matchers=[matcher("env", "dev")], starts_at=0.0), 50.0, cmd_id="s1"))
    views = {v.silence.id: v for v in silences_view(f.state, "o1", 60.0)}
    assert views["s1"].state == "expired" and views["s1"].silence.ends_at == 50.0
    assert views["s2"].state == "active" and views["s2"].silence.starts_at == 50.0  # never starts in the past
    assert f.state["silences/o1"] == SilenceIndex(ids=["s1", "s2"])


@pytest.mark.parametrize(
    ("starts", "ends", "at", "expected"),
    [
        (10.0, 100.0, 50.0, (10.0, 50.0)),  # active: ends now
        (80.0, 100.0, 50.0, (50.0, 50.0)),  # pending: starts and ends now
        (10.0, 40.0, 50.0, (10.0, 40.0)),  # expired: unchanged
    ],
    ids=["active", "pending", "expired"],
)
def test_expire(starts: float, ends: float, at: float, expected: tuple[float, float]) -> None:
    f = Fold(core())
    f.step(upsert(silence("s1", [matcher("env", "prod")], starts, ends), 5.0))
    f.step(expire("s1", at))
    view = silence_view(f.state, "o1", "s1", at)
    assert view is not None and view.state == "expired"
    assert (view.silence.starts_at, view.silence.ends_at) == expected


def test_expire_unknown_is_rejected() -> None:
    with pytest.raises(Reject, match="silence not found"):
        Fold(core()).step(expire("nope", 5.0))


def test_silence_of_other_org_does_not_mute() -> None:
    f = Fold(core())
    f.step(upsert(silence("s1", [matcher("env", "prod")], 0.0, 1000.0, org="o2"), 1.0))
    assert sent_fps(f.sends(flush([alert(WEB1)], 10.0))) == [[fp(WEB1)]]
    assert silences_view(f.state, "o1", 10.0) == []


@pytest.mark.parametrize(("notify_silenced_resolved", "expected"), [(False, []), (True, [[fp(WEB1)]])],
                         ids=["alertmanager-default-drops", "option-sends"])
def test_silenced_resolution(notify_silenced_resolved: bool, expected: list[list[str]]) -> None:
    f = Fold(core(notify_silenced_resolved=notify_silenced_resolved))
    assert sent_fps(f.sends(flush([alert(WEB1)], 0.0, seq=1))) == [[fp(WEB1)]]
    f.step(upsert(silence("s1", [matcher("instance", "web-1")], 10.0, 10000.0), 10.0))
    assert sent_fps(f.sends(flush([alert(WEB1, ends=250.0)], 300.0, seq=2))) == expected


def test_silenced_resolution_option_skips_alerts_never_notified() -> None:
    f = Fold(core(notify_silenced_resolved=True))
    f.step(upsert(silence("s1", [matcher("instance", "web-1")], 1.0, 10000.0), 1.0))
    assert f.sends(flush([alert(WEB1)], 10.0, seq=1)) == []
    assert f.sends(flush([alert(WEB1, ends=250.0)], 300.0, seq=2)) == []


def test_views_sort_like_alertmanager() -> None:
    f = Fold(core())
    m = [matcher("env", "prod")]
    for sid, starts, ends in [("a1", 1.0, 500.0), ("a2", 1.0, 300.0), ("p1", 900.0, 1000.0), ("p2", 800.0, 1000.0),
                              ("e1", 1.0, 50.0), ("e2", 1.0, 80.0)]:
        f.step(upsert(silence(sid, m, starts, ends), 1.0))
    order = [(v.silence.id, v.state) for v in silences_view(f.state, "o1", 100.0)]
    assert order == [("a2", "active"), ("a1", "active"), ("p2", "pending"), ("p1", "pending"),
                     ("e2", "expired"), ("e1", "expired")]


def test_silence_state_boundaries() -> None:
    s = silence("s", [matcher("a", "b")], 10.0, 20.0)
    assert [silence_state(s, t) for t in (9.99, 10.0, 19.99, 20.0)] == ["pending", "active", "active", "expired"]


def test_plan_upsert() -> None:
    ids = (f"new{i}" for i in itertools.count(1))
    f = Fold(core())
    created = plan_upsert(f.state, "o1", silence("", [matcher("env", "prod")], 10.0, 100.0), 5.0, lambda: next(ids))
    assert (created.id, created.silence and created.silence.id) == ("new1", "new1")
    f.step(created)
    s = f.state["silence/o1/new1"]
    assert isinstance(s, SilenceValue)
    in_place = plan_upsert(f.state, "o1", _replace(s.silence, ends_at=200.0), 50.0, lambda: next(ids))
    assert (in_place.id, in_place.silence and in_place.silence.id) == ("new1", "new1")
    replaced = plan_upsert(f.state, "o1", _replace(s.silence, matchers=[matcher("env", "dev")]), 50.0,
                           lambda: next(ids))
    assert (replaced.id, replaced.silence and replaced.silence.id) == ("new1", "new2")
    f.step(replaced)
    assert {v.silence.id: v.state for v in silences_view(f.state, "o1", 60.0)} == {"new1": "expired",
                                                                                  "new2": "active"}
    with pytest.raises(SilenceError, match="silence not found"):
        plan_upsert(f.state, "o1", silence("ghost", [matcher("env", "prod")], 10.0, 100.0), 50.0, lambda: "x")


def test_command_for_other_org_silence_is_rejected() -> None:
    cmd = SilenceCommand(action="upsert", org="o1", id="s1", at=1.0,
                         silence=silence("s1", [matcher("env", "prod")], 10.0, 20.0, org="o2"))
    with pytest.raises(Reject, match="organisation"):
        Fold(core()).step(cmd)
