"""The stages' views the API reads (stages/*/views.py): raw state values in, plain views out,
and the route binding of the API's resource modules (api.routing)."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from contracts import Alert, Silence, SilenceMatcher
from contracts.matchers import parse_matcher
from pipeline.application.api.context import ApiContext
from pipeline.application.api.routing import route
from pipeline.foundation.amconfig import load_config_text
from pipeline.foundation.runtime.subjects import token
from stages.filter.config import FilterOptions, filter_config
from stages.filter.escalation import Escalation, escalation_policies
from stages.filter.state import FiringAlert, GroupState, SilenceValue, firing_key, group_record_key
from stages.filter.views import (
    SilenceError,
    ack_refusal,
    decode_value,
    escalation_policies_view,
    plan_silence,
    silence_key,
    silence_matches,
    silence_status,
)
from stages.router.state import AlertEntry, GroupHead, head_key
from stages.router.views import group_state_prefix, groups_of
from stages.rules.state import AlertState, ResourceIndex
from stages.rules.views import alert_state_prefix, firing_alert, history_subjects, org_of_alert_key

CONFIG = "route: {receiver: pager}\nreceivers: [{name: pager}, {name: quiet}]\n"
POLICIES: dict[str, Any] = {"policies": [
    {"name": "security", "matchers": ['severity="security"'], "ack": "forbidden",
     "steps": [{"after": "2s", "receivers": ["quiet"]}, {"after": "4s", "receivers": ["pager"]}]},
    {"name": "critical", "matchers": ['severity="critical"'], "steps": [{"after": 10, "receivers": ["pager"]}]},
]}


def alert_state(status: str, ends_at: float | None) -> bytes:
    return msgspec.json.encode(AlertState(
        org="acme", fingerprint="f1", labels={"alertname": "A"}, annotations={}, starts_at=10.0, ends_at=ends_at,
        generator_url="", updated_at=10.0, status=status, deadline=None))  # type: ignore[arg-type]


@pytest.mark.parametrize("data,firing", [
    (alert_state("firing", None), True),
    (alert_state("firing", 150.0), True),
    (alert_state("firing", 100.0), False),  # its end is past: resolved, whether or not announced yet
    (alert_state("pending", None), False),
    (alert_state("resolved", 50.0), False),
    (msgspec.json.encode(ResourceIndex(active={"g": "f1"})), False),
], ids=["firing-no-end", "firing-until-later", "ended", "pending", "resolved", "resource-index"])
def test_the_rules_view_shows_an_alert_only_while_it_fires(data: bytes, firing: bool) -> None:
    alert = firing_alert(data, now=100.0)
    assert (alert is not None) == firing
    if alert is not None:
        assert alert == Alert(fingerprint="f1", org="acme", labels={"alertname": "A"}, annotations={},
                              starts_at=10.0, ends_at=alert.ends_at, generator_url="", updated_at=10.0)


@pytest.mark.parametrize("org", ["acme", "a b", "x/y"], ids=["plain", "space", "slash"])
def test_the_rules_view_names_where_an_organisations_alerts_and_history_are(org: str) -> None:
    assert alert_state_prefix() == ("alert",)
    assert alert_state_prefix(org) == ("alert", org)
    assert org_of_alert_key(f"alert/{org}/f1") == org.split("/")[0]  # keys split at the first "/" after it
    assert history_subjects(org, "f1") == [f"{token(org)}.f1.*", f"{token(org)}.f1"]


def test_the_router_view_decodes_groups_and_leaves_resolved_alerts_out() -> None:
    def entry(fp_end: float | None) -> AlertEntry:
        return AlertEntry(labels={"alertname": "A"}, annotations={}, starts_at=1.0, ends_at=fp_end,
                          generator_url="", updated_at=1.0, at=1.0)

    head = GroupHead(org="a b", group_key="{}:{}", receiver="pager", route_id="0", labels={}, created=1.0,
                     deadline=50.0, seq=2, flushed=True, shards=0, cfg="v", dirty=True,
                     inline={"f1": entry(None), "f2": entry(5.0)})
    prefix, org_token = group_state_prefix("a b")
    assert (prefix, org_token) == ("group", token("a b"))
    (view,) = groups_of([(head_key("a b", "g1"), msgspec.json.encode(head))], "a b", now=10.0)
    assert (view.group_key, view.receiver, view.flush_seq, [a.fingerprint for a in view.alerts]) == \
        ("{}:{}", "pager", 2, ["f1"])
    assert groups_of([(head_key("a b", "g1"), msgspec.json.encode(head))], "other", now=10.0) == []


def silence(sid: str = "s1", starts: float = 0.0, ends: float = 100.0) -> Silence:
    return Silence(id=sid, org="acme", matchers=[SilenceMatcher(name="team", value="db", is_regex=False)],
                   starts_at=starts, ends_at=ends, created_by="me", comment="c", updated_at=0.0)


@pytest.mark.parametrize("value,now,state", [
    (SilenceValue(silence=silence(starts=10.0), expires_at=200.0), 5.0, "pending"),
    (SilenceValue(silence=silence(), expires_at=200.0), 50.0, "active"),
    (SilenceValue(silence=silence(), expires_at=200.0), 100.0, "expired"),
    (FiringAlert(labels={}, starts_at=0.0), 50.0, None),
    (None, 50.0, None),
], ids=["pending", "active", "expired", "not-a-silence", "missing"])
def test_a_silence_read_alone_has_its_state_at_now(value: Any, now: float, state: str | None) -> None:
    if value is not None:
        value = decode_value(msgspec.json.encode(value))  # as the API gets it from the stream
    st = silence_status(value, now)
    assert (st.state if st is not None else None) == state


def test_planning_a_silence_creates_or_replaces_as_alertmanager_does() -> None:
    new = plan_silence(None, "acme", silence(sid=""), 50.0, lambda: "fresh")
    assert new.silence is not None and new.silence.id == "fresh"
    old = SilenceValue(silence=silence(starts=10.0), expires_at=200.0)
    edited = plan_silence(old, "acme", silence(starts=10.0, ends=150.0), 50.0, lambda: "other")  # a longer end
    assert edited.silence is not None and edited.silence.id == "s1"
    moved = plan_silence(old, "acme", silence(starts=20.0), 50.0, lambda: "other")  # an active one's start: replaced
    assert moved.id == "s1" and moved.silence is not None and moved.silence.id == "other"
    with pytest.raises(SilenceError, match="not found"):
        plan_silence(None, "acme", silence(), 50.0, lambda: "other")
    assert silence_key("acme", "s1") == "silence/acme/s1"
    assert silence_matches(silence(), {"team": "db"}, 50.0) and not silence_matches(silence(), {"team": "db"}, 150.0)


def esc(ack: str) -> GroupState:
    return GroupState(esc=Escalation(policy="p", ack=ack, started_at=0.0, steps=[(2.0, ["quiet"])],  # type: ignore[arg-type]
                                     repeat=0, start_seq="1"))


CFG = load_config_text(CONFIG)
WITH_POLICIES = filter_config(CFG, FilterOptions(), escalation_policies(POLICIES, {"pager", "quiet"}))
WITHOUT = filter_config(CFG, FilterOptions(), ())
SEC = FiringAlert(labels={"alertname": "Intrusion", "severity": "security"}, starts_at=0.0)
CRIT = FiringAlert(labels={"alertname": "Down", "severity": "critical"}, starts_at=0.0)


@pytest.mark.parametrize("config,kwargs,refused", [
    (WITH_POLICIES, {"group": esc("forbidden")}, "'p' of this group"),
    (WITH_POLICIES, {"group": esc("allowed")}, None),
    (WITH_POLICIES, {"group": None}, None),
    (WITH_POLICIES, {"firing": {firing_key("acme", "f1"): SEC}}, "'security' of alert"),
    (WITH_POLICIES, {"firing": {firing_key("acme", "f1"): CRIT}}, None),
    (WITH_POLICIES, {"firing": {}}, None),
    (WITHOUT, {"firing": {firing_key("acme", "f1"): SEC}}, None),
    (WITH_POLICIES, {"firing": {"a": CRIT, "b": SEC}, "matchers": [parse_matcher('severity="critical"')]}, None),
    (WITH_POLICIES, {"firing": {"a": CRIT, "b": SEC}, "matchers": [parse_matcher('alertname=~".+"')]},
     "'security' of alert"),
], ids=["group-forbidden", "group-allowed", "group-unknown", "alert-forbidden", "alert-allowed", "alert-unknown",
        "no-policies", "matchers-miss-it", "matchers-hit-it"])
def test_an_acknowledgement_is_refused_where_a_policy_forbids_it(config: Any, kwargs: dict[str, Any],
                                                                  refused: str | None) -> None:
    why = ack_refusal(config, **kwargs)
    assert (why is None) == (refused is None)
    if refused is not None:
        assert why is not None and refused in why and "ack: forbidden" in why
    assert group_record_key("acme", "{}:{}").startswith("group/acme/")


def test_the_policies_view_lists_the_configured_policies_in_order() -> None:
    views = escalation_policies_view(WITH_POLICIES)
    assert [(v.name, v.matchers, v.ack, v.steps) for v in views] == [
        ("security", ['severity="security"'], "forbidden", [(2.0, ["quiet"]), (4.0, ["pager"])]),
        ("critical", ['severity="critical"'], "allowed", [(10.0, ["pager"])]),
    ]
    assert escalation_policies_view(WITHOUT) == []


async def test_a_route_hands_its_handler_the_context_and_is_named_after_it() -> None:
    seen: list[object] = []

    async def get_thing(ctx: ApiContext, request: Request) -> Response:
        seen.append(ctx)
        return PlainTextResponse(request.url.path)

    ctx = cast(ApiContext, object())
    r = route("GET", "/thing", get_thing, ctx)
    assert (r.path, r.methods, r.name) == ("/thing", {"GET", "HEAD"}, "get_thing")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await r.handle({"type": "http", "method": "GET", "path": "/thing", "headers": [], "query_string": b""},
                   receive, send)
    assert seen == [ctx] and sent[-1]["body"] == b"/thing"
