"""Prometheus and Go duration parsing (pipeline.foundation.amconfig.durations)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.foundation.amconfig.durations import format_duration, parse_duration, parse_go_duration

PROM = [
    ("0", 0.0),
    ("0s", 0.0),
    ("5m", 300.0),
    ("1h30m", 5400.0),
    ("250ms", 0.25),
    ("1d", 86400.0),
    ("1w", 604800.0),
    ("1y", 365 * 86400.0),
    ("2h45m30s10ms", 2 * 3600 + 45 * 60 + 30.01),
    ("90d", 90 * 86400.0),
]


@pytest.mark.parametrize(("text", "seconds"), PROM, ids=[t for t, _ in PROM])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


PROM_BAD = ["", "5", "5x", "1.5h", "-5m", "30m1h", "1h1h", "m", "5 m", "1e3s", "9999999999y"]


@pytest.mark.parametrize("text", PROM_BAD, ids=[repr(t) for t in PROM_BAD])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


FORMAT = [
    (0.0, "0s"),
    (300.0, "5m"),
    (5400.0, "1h30m"),
    (0.25, "250ms"),
    (86400.0, "1d"),
    (604800.0, "1w"),
    (90 * 86400.0, "90d"),  # weeks only when exact
    (365 * 86400.0, "1y"),
    (3 * 3600 + 0.5, "3h500ms"),
]


@pytest.mark.parametrize(("seconds", "text"), FORMAT, ids=[t for _, t in FORMAT])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 365 * 86400 * 1000))
def test_format_then_parse_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


GO = [
    ("0", 0.0),
    ("10s", 10.0),
    ("1.5h", 5400.0),
    ("1h2m3.5s", 3723.5),
    ("300ms", 0.3),
    ("-2m", -120.0),
    ("100us", 1e-4),
    ("5µs", 5e-6),
    ("1ns", 1e-9),
]


@pytest.mark.parametrize(("text", "seconds"), GO, ids=[t for t, _ in GO])
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", ".s", "1.2.3s", "s"], ids=repr)
def test_parse_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)
