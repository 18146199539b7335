"""The webhook fast path encodes exactly the bytes of the encoded reference payload."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier_cases import EXTERNAL_URL, NOW, WebhookCfg, alert, request, resolved

from contracts.messages import Alert
from stages.notifier.payloads import webhook_body, webhook_payload
from stages.notifier.payloads.webhook import _time
from stages.notifier.templates.gotime import rfc3339_nano

_text = st.text(min_size=0, max_size=8)
_labels = st.dictionaries(st.text(min_size=1, max_size=6), _text, max_size=4)
_times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False) | st.integers(0, 4_000_000_000)


@st.composite
def _alerts(draw: st.DrawFn) -> Alert:
    return alert(draw(st.sampled_from(["A", "B"])), instance=draw(st.sampled_from(["x", "y", "z"])),
                 labels=draw(_labels), annotations=draw(_labels), starts_at=draw(_times),
                 ends_at=draw(st.none() | _times), generator_url=draw(_text))


@given(st.lists(_alerts(), max_size=6), st.none() | st.integers(0, 7), st.sampled_from(["team-ops", "a.b+(c)"]),
       _labels, st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_fast_body_equals_the_encoded_payload(alerts: list[Alert], max_alerts: int | None, receiver: str,
                                              group_labels: dict[str, str], created_at: float) -> None:
    req = request(alerts, receiver=receiver, group_labels=group_labels, created_at=created_at)
    cfg = WebhookCfg(max_alerts=max_alerts)
    assert webhook_body(req, cfg, EXTERNAL_URL) == msgspec.json.encode(webhook_payload(req, cfg, EXTERNAL_URL))


@pytest.mark.parametrize(
    ("alerts", "max_alerts", "status", "truncated"),
    [
        ([alert(), resolved(instance="web-2:9100")], 0, "firing", 0),
        ([resolved(), alert(instance="web-2:9100")], 1, "resolved", 1),
        ([], 0, "resolved", 0),
    ],
    ids=["mixed", "truncated-to-resolved", "no-alerts"],
)
def test_fast_body_status_and_truncation(alerts: list[Alert], max_alerts: int, status: str, truncated: int) -> None:
    body = msgspec.json.decode(webhook_body(request(alerts, created_at=NOW), WebhookCfg(max_alerts=max_alerts),
                                            EXTERNAL_URL))
    assert (body["status"], body["truncatedAlerts"], body["version"]) == (status, truncated, "4")
    assert len(body["alerts"]) == len(alerts) - truncated


@given(st.floats(min_value=-62_135_596_000, max_value=253_402_300_000, allow_nan=False))  # years 1 to 9999
def test_fast_times_format_like_go(ts: float) -> None:
    assert _time(ts) == rfc3339_nano(datetime.fromtimestamp(ts, tz=UTC))
