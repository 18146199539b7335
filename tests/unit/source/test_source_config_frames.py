"""The source's settings, replication frames and trace ids (no servers). The core's assembly and
packing are in test_source_core_assembly.py and test_source_core_packing.py."""

from __future__ import annotations

import os
import struct

import pytest

from stages.source.config import SourceConfigError, load_source_config
from stages.source.mapping import TableMapping
from stages.source.pgoutput import PG_EPOCH, parse_lsn
from stages.source.replication import (
    Keepalive,
    ReplicationError,
    XLogData,
    lock_key,
    parse_frame,
    pg_micros,
    standby_status,
    start_replication_command,
    wal_level_problem,
)
from stages.source.tracing import random_traceparent

# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"slot": "Bad-Name"}, "source.slot"),
        ({"publication": ""}, "source.publication"),
        ({"tables": []}, "source.tables"),
        ({"tables": [{"table": "events"}, {"table": "events"}]}, "listed twice"),
        ({"status_interval": 0}, "source.status_interval"),
        ({"reconnect_backoff": 5, "reconnect_backoff_max": 1}, "reconnect_backoff_max"),
        ({"batch_messages": 1001}, "source.batch_messages"),
        ({"batch_messages": 1}, "source.batch_messages"),
        ({"slots": "x"}, "slots"),
        ({"tables": [{"tabel": "events"}]}, "tabel"),
    ],
    ids=["slot-name", "empty-publication", "no-tables", "duplicate-table", "zero-interval", "backoff-order",
         "batch-too-big", "batch-too-small", "unknown-key", "unknown-table-key"],
)
def test_source_config_rejects_with_the_key_named(raw: dict, error: str) -> None:
    with pytest.raises(SourceConfigError, match=error):
        load_source_config(raw)


def test_source_config_defaults_read_the_reference_table() -> None:
    cfg = load_source_config(None)
    assert (cfg.slot, cfg.publication) == ("tocsin", "tocsin")
    assert (cfg.batch_messages, cfg.rows_per_batch) == (1000, 999)
    assert cfg.mapping_for("public", "events") == TableMapping()
    assert cfg.mapping_for("public", "other") is None
    assert load_source_config({"slot": "s2"}).slot == "s2"


# ---------------------------------------------------------------------------- replication frames


def test_parse_frame_reads_xlogdata_and_keepalive() -> None:
    w = b"w" + struct.pack(">QQq", 0x10, 0x20, 123) + b"B-payload"
    assert parse_frame(w) == XLogData(0x10, 0x20, 123, b"B-payload")
    assert parse_frame(b"k" + struct.pack(">QqB", 0x30, 456, 1)) == Keepalive(0x30, 456, True)
    assert parse_frame(b"k" + struct.pack(">QqB", 0x30, 456, 0)) == Keepalive(0x30, 456, False)


@pytest.mark.parametrize("frame", [b"", b"w\x00", b"k" + b"\x00" * 5, b"x123"],
                         ids=["empty", "short-xlogdata", "short-keepalive", "unknown-type"])
def test_parse_frame_rejects_malformed(frame: bytes) -> None:
    with pytest.raises(ReplicationError):
        parse_frame(frame)


def test_standby_status_reports_flushed_as_written_flushed_applied() -> None:
    data = standby_status(0xABCDEF, 99, reply=True)
    assert struct.unpack(">cQQQqB", data) == (b"r", 0xABCDEF, 0xABCDEF, 0xABCDEF, 99, 1)
    assert pg_micros(PG_EPOCH.timestamp() + 1.5) == 1_500_000


def test_start_replication_command_uses_protocol_1() -> None:
    cmd = start_replication_command("tocsin", ["pub"], parse_lsn("16/B374D848"))
    assert cmd == ('START_REPLICATION SLOT "tocsin" LOGICAL 16/B374D848 '
                   "(proto_version '1', publication_names '\"pub\"')")


@pytest.mark.parametrize(("level", "ok"), [("logical", True), ("replica", False), ("minimal", False)],
                         ids=["logical", "replica", "minimal"])
def test_wal_level_problem_names_the_setting_and_the_fix(level: str, ok: bool) -> None:
    problem = wal_level_problem(level)
    assert (problem is None) == ok
    if problem:
        assert f"wal_level = {level}" in problem and "ALTER SYSTEM SET wal_level = logical" in problem


def test_lock_key_is_a_stable_signed_bigint_per_slot() -> None:
    keys = {lock_key(s) for s in ("tocsin", "other", "tocsin/setup")}
    assert len(keys) == 3 and all(-(1 << 63) <= k < 1 << 63 for k in keys)
    assert lock_key("tocsin") == lock_key("tocsin")


# ---------------------------------------------------------------------------- trace ids


def test_random_traceparent_is_valid_w3c() -> None:
    assert random_traceparent(lambda n: bytes(range(1, n + 1))) == {
        "traceparent": "00-0102030405060708090a0b0c0d0e0f10-1112131415161718-01"}
    zero = random_traceparent(lambda n: bytes(n))["traceparent"]
    assert zero == f"00-{'0' * 31}1-{'0' * 15}1-01"  # all-zero ids are invalid in W3C


def test_random_traceparents_differ_and_differ_after_a_fork() -> None:
    ids = {random_traceparent()["traceparent"] for _ in range(1000)}
    assert len(ids) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's ids are its own, not a copy of the parent's sequence
        os.write(write, random_traceparent()["traceparent"].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    assert child != random_traceparent()["traceparent"]
    os.close(read)
    os.close(write)
