"""Text-format column values by type OID, LSN text, and protocol timestamps."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.source.pgoutput import (
    UNCHANGED,
    PgOutputError,
    TypeOid,
    convert_text,
    convert_value,
    format_lsn,
    parse_lsn,
    pg_timestamp,
    to_unix,
)

# OIDs as in PostgreSQL's pg_type.dat, spelled out here rather than taken from TypeOid.
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, JSON = 16, 17, 18, 19, 20, 21, 23, 25, 26, 114
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ = 700, 701, 1042, 1043, 1082, 1114, 1184
NUMERIC, UUID, JSONB, INT4_ARRAY, INTERVAL, INET = 1700, 2950, 3802, 1007, 1186, 869

CONVERSIONS: list[tuple[str, int, str, Any]] = [
    ("bool-true", BOOL, "t", True),
    ("bool-false", BOOL, "f", False),
    ("text", TEXT, "héllo ✓", "héllo ✓"),
    ("text-empty", TEXT, "", ""),
    ("varchar", VARCHAR, "v", "v"),
    ("bpchar-keeps-padding", BPCHAR, "ab  ", "ab  "),
    ("name", NAME, "pg_class", "pg_class"),
    ("char", CHAR, "r", "r"),
    ("int2-min", INT2, "-32768", -32768),
    ("int4", INT4, "2147483647", 2147483647),
    ("int8-beyond-float", INT8, "9007199254740993", 9007199254740993),
    ("oid", OID, "4294967295", 4294967295),
    ("float4", FLOAT4, "1.5", 1.5),
    ("float8-exponent", FLOAT8, "1e+100", 1e100),
    ("float8-neg-infinity", FLOAT8, "-Infinity", -math.inf),
    ("numeric-keeps-scale", NUMERIC, "123.4500", Decimal("123.4500")),
    ("numeric-big", NUMERIC, "-98765432109876543210.0001", Decimal("-98765432109876543210.0001")),
    (
        "timestamptz-utc",
        TIMESTAMPTZ,
        "2024-02-29 12:34:56.789+00",
        datetime(2024, 2, 29, 12, 34, 56, 789000, UTC),
    ),
    (
        "timestamptz-offset-minutes",
        TIMESTAMPTZ,
        "2024-02-29 12:34:56.789+05:30",
        datetime(2024, 2, 29, 7, 4, 56, 789000, UTC),
    ),
    (
        "timestamptz-negative-hours",
        TIMESTAMPTZ,
        "2024-01-01 16:00:00-08",
        datetime(2024, 1, 2, 0, 0, 0, 0, UTC),
    ),
    (
        "timestamptz-offset-seconds-lmt",
        TIMESTAMPTZ,
        "1890-01-01 00:00:00+00:53:28",
        datetime(1889, 12, 31, 23, 6, 32, tzinfo=UTC),
    ),
    (
        "timestamptz-microseconds",
        TIMESTAMPTZ,
        "2000-01-01 00:00:00.000001+00",
        datetime(2000, 1, 1, 0, 0, 0, 1, UTC),
    ),
    ("timestamp-naive", TIMESTAMP, "2024-02-29 12:34:56", datetime(2024, 2, 29, 12, 34, 56)),
    ("timestamp-fraction", TIMESTAMP, "2024-02-29 12:34:56.5", datetime(2024, 2, 29, 12, 34, 56, 500000)),
    ("date", DATE, "2024-02-29", date(2024, 2, 29)),
    ("json", JSON, '{"a": [1, 2.5, "x"], "b": {"c": null}}', {"a": [1, 2.5, "x"], "b": {"c": None}}),
    ("jsonb-null", JSONB, "null", None),
    ("jsonb-array", JSONB, "[true, 1]", [True, 1]),
    ("uuid", UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("bytea-hex", BYTEA, "\\x00ff10", b"\x00\xff\x10"),
    ("bytea-hex-empty", BYTEA, "\\x", b""),
    ("bytea-escape", BYTEA, "a\\\\b\\001\\377", b"a\\b\x01\xff"),
    # Values Python cannot hold stay as Postgres wrote them.
    ("timestamptz-infinity", TIMESTAMPTZ, "infinity", "infinity"),
    ("timestamp-minus-infinity", TIMESTAMP, "-infinity", "-infinity"),
    ("timestamptz-bc", TIMESTAMPTZ, "0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00+00 BC"),
    ("date-bc", DATE, "0044-03-15 BC", "0044-03-15 BC"),
    ("date-year-10000", DATE, "10000-01-01", "10000-01-01"),
    # Types without a converter stay text.
    ("int4-array", INT4_ARRAY, "{1,2}", "{1,2}"),
    ("interval", INTERVAL, "1 day 02:00:00", "1 day 02:00:00"),
    ("inet", INET, "10.0.0.1", "10.0.0.1"),
    ("user-enum", 50123, "critical", "critical"),
]


@pytest.mark.parametrize(
    ("oid", "text", "expected"), [c[1:] for c in CONVERSIONS], ids=[c[0] for c in CONVERSIONS]
)
def test_convert_text(oid: int, text: str, expected: Any) -> None:
    value = convert_text(oid, text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, datetime):
        assert (value.tzinfo is None) == (expected.tzinfo is None)


def test_nan_values() -> None:
    assert math.isnan(convert_text(FLOAT8, "NaN"))
    assert math.isnan(convert_text(FLOAT4, "NaN"))
    assert convert_text(NUMERIC, "NaN").is_nan()
    assert convert_text(NUMERIC, "Infinity") == Decimal("Infinity")


def test_type_oids_match_postgres() -> None:
    assert {t.name.lower(): int(t) for t in TypeOid} == {
        "bool": BOOL,
        "bytea": BYTEA,
        "char": CHAR,
        "name": NAME,
        "int8": INT8,
        "int2": INT2,
        "int4": INT4,
        "text": TEXT,
        "oid": OID,
        "json": JSON,
        "float4": FLOAT4,
        "float8": FLOAT8,
        "bpchar": BPCHAR,
        "varchar": VARCHAR,
        "date": DATE,
        "timestamp": TIMESTAMP,
        "timestamptz": TIMESTAMPTZ,
        "numeric": NUMERIC,
        "uuid": UUID,
        "jsonb": JSONB,
    }


BAD_VALUES: list[tuple[str, int, str]] = [
    ("bool-word", BOOL, "true"),
    ("int4-decimal", INT4, "1.5"),
    ("int8-empty", INT8, ""),
    ("float8-word", FLOAT8, "fast"),
    ("numeric-word", NUMERIC, "lots"),
    ("timestamptz-postgres-style", TIMESTAMPTZ, "Thu Feb 29 12:34:56 2024 UTC"),
    ("timestamptz-sql-style", TIMESTAMPTZ, "02/29/2024 12:34:56.00 UTC"),
    ("timestamptz-without-offset", TIMESTAMPTZ, "2024-02-29 12:34:56"),
    ("timestamp-with-offset", TIMESTAMP, "2024-02-29 12:34:56+00"),
    ("timestamptz-bad-day", TIMESTAMPTZ, "2023-02-29 12:34:56+00"),
    ("date-german", DATE, "29.02.2024"),
    ("date-bad-month", DATE, "2024-13-01"),
    ("json-broken", JSONB, '{"a":'),
    ("uuid-short", UUID, "a0eebc99"),
    ("bytea-odd-hex", BYTEA, "\\x0"),
    ("bytea-bad-escape", BYTEA, "a\\9"),
]


@pytest.mark.parametrize(("oid", "text"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_unreadable_values_raise(oid: int, text: str) -> None:
    with pytest.raises(PgOutputError):
        convert_text(oid, text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (UNCHANGED, UNCHANGED), (b"\x00\x01", b"\x00\x01"), ("7", 7)],
    ids=["null", "unchanged-toast", "binary-passes", "text-converted"],
)
def test_convert_value(value: Any, expected: Any) -> None:
    assert convert_value(INT4, value) == expected


def test_unchanged_sentinel_is_distinct() -> None:
    assert UNCHANGED is not None
    assert repr(UNCHANGED) == "UNCHANGED"
    assert UNCHANGED != "u"


# ---------------------------------------------------------------------------- LSNs

LSNS: list[tuple[str, int, str]] = [
    ("zero", 0, "0/0"),
    ("doc-example", 0x16_B374D848, "16/B374D848"),
    ("low-only", 0x16EF508, "0/16EF508"),
    ("high-only", 1 << 32, "1/0"),
    ("max", 2**64 - 1, "FFFFFFFF/FFFFFFFF"),
]


@pytest.mark.parametrize(("value", "text"), [x[1:] for x in LSNS], ids=[x[0] for x in LSNS])
def test_lsn_examples(value: int, text: str) -> None:
    assert format_lsn(value) == text
    assert parse_lsn(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("16/b374d848", 0x16_B374D848), ("00000016/0016EF50", 0x16_0016EF50), ("0/00000001", 1)],
    ids=["lowercase", "zero-padded", "padded-low"],
)
def test_parse_lsn_variants(text: str, value: int) -> None:
    assert parse_lsn(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0/",
        "/0",
        "G/0",
        "0/G",
        "123456789/0",
        "0/123456789",
        " 0/0",
        "0/0 ",
        "0/0/0",
        "-1/0",
        "0x1/0",
    ],
    ids=repr,
)
def test_parse_lsn_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(text)


@pytest.mark.parametrize("value", [-1, 2**64], ids=["negative", "too-big"])
def test_format_lsn_rejects_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        format_lsn(value)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_round_trip(value: int) -> None:
    text = format_lsn(value)
    assert parse_lsn(text) == value
    hi, lo = text.split("/")
    assert int(hi, 16) == value >> 32 and int(lo, 16) == value & 0xFFFFFFFF
    assert text == text.upper()


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_order_is_integer_order(a: int, b: int) -> None:
    assert (parse_lsn(format_lsn(a)) < parse_lsn(format_lsn(b))) == (a < b)


# ---------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (0, datetime(2000, 1, 1, tzinfo=UTC)),
        (86_400_000_000, datetime(2000, 1, 2, tzinfo=UTC)),
        (-1, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (8766 * 86_400_000_000 + 1, datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
    ids=["epoch", "one-day", "before-epoch", "2024-plus-1us"],
)
def test_pg_timestamp(micros: int, expected: datetime) -> None:
    assert pg_timestamp(micros) == expected
    assert pg_timestamp(micros).tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0.0),
        (datetime(2024, 1, 1, tzinfo=UTC), 1_704_067_200.0),
        (datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), 1_704_067_200.0),
        (datetime(2024, 1, 1, 0, 0, 0, 250000), 1_704_067_200.25),  # naive: taken as UTC
        (date(2024, 1, 1), 1_704_067_200.0),
        (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), -1.0),
    ],
    ids=["unix-epoch", "2024-utc", "2024-india", "naive-as-utc", "date", "before-unix-epoch"],
)
def test_to_unix(value: datetime | date, expected: float) -> None:
    assert to_unix(value) == expected


# 1970 to 2031: within this range float seconds still resolve single microseconds.
@given(st.integers(min_value=-946_684_800_000_000, max_value=10**15))
def test_to_unix_of_pg_timestamp_is_exact_to_the_microsecond(micros: int) -> None:
    unix_micros_at_pg_epoch = 946_684_800_000_000
    assert round(to_unix(pg_timestamp(micros)) * 1_000_000) == micros + unix_micros_at_pg_epoch
