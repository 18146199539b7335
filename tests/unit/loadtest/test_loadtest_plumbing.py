"""The load test's small pure parts: HTTP parsing, record files, statistics, metrics, profiles,
the chaos plan, hop tracing and pushed alerts."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from contracts import Alert, AlertChange, Cause, Event, GroupFlush, Integration, SendRequest, encode
from loadtest.chaos import Action, plan
from loadtest.collect import Collector
from loadtest.drive import EventLog, alert_json, rfc3339
from loadtest.hops import hop_latencies, hop_points
from loadtest.oracle import AlertModel
from loadtest.probes import Samples, parse_metrics
from loadtest.profile import pprof_top, top_functions
from loadtest.report import cpu_figures, cpu_seconds
from loadtest.sink import parse_requests, read_records, record_line
from loadtest.stats import percentile, rate_series, summarize, window_percentiles

# ---------------------------------------------------------------------------- sink


@pytest.mark.parametrize(("raw", "want", "left"), [
    (b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nIdempotency-Key: k\r\n\r\n{}", [(b"/a", b"{}", b"k")], b""),
    (b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}", [], None),
    (b"POST /a HTTP/1.1\r\ncontent-length: 1\r\n\r\n1POST /b HTTP/1.1\r\nContent-Length: 1\r\n\r\n2GET",
     [(b"/a", b"1", b""), (b"/b", b"2", b"")], b"GET"),
    (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n3;x=1\r\n[1]\r\n0\r\n\r\n",
     [(b"/c", b"{}[1]", b"")], b""),
    (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", [], None),
], ids=["one", "incomplete-body", "pipelined", "chunked", "chunked-incomplete"])
def test_parse_requests(raw: bytes, want: list[tuple[bytes, bytes, bytes]], left: bytes | None) -> None:
    buf = bytearray(raw)
    got = parse_requests(buf)
    assert [(r.path, r.body, r.headers.get(b"idempotency-key", b"")) for r in got] == want
    assert bytes(buf) == (raw if left is None else left)


def test_records_round_trip_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [record_line(1.5, b"k1", b"/x", b'{"a":\n1}\n'), record_line(2.0, b"", b"/y", b"")]
    path.write_bytes(b"".join(lines) + b'{"t":3')  # a record being written
    records, offset = read_records(path, 0)
    assert [(r.t, r.k, r.p, r.b) for r in records] == [(1.5, "k1", "/x", {"a": 1}), (2.0, "", "/y", None)]
    assert offset == len(b"".join(lines))
    assert read_records(path, offset) == ([], offset)
    assert read_records(tmp_path / "none", 0) == ([], 0)


@pytest.mark.parametrize("tail", [b"", b'{"t":3'], ids=["whole-records", "record-being-written"])
def test_collector_starts_after_earlier_runs_records(tmp_path: Path, tail: bytes) -> None:
    """A later run of a scenario shares the sink's file: it neither reads nor counts what is there."""
    path = tmp_path / "r.jsonl"
    hook = b'{"status":"firing","alerts":[]}'
    path.write_bytes(record_line(1.0, b"", b"/tocsin-1", hook) * 3 + tail)
    collector = Collector(path, "/tocsin-1", EventLog(t0=0.0))
    assert collector.offset == len(record_line(1.0, b"", b"/tocsin-1", hook) * 3)
    with open(path, "ab") as f:
        f.write(b"" if not tail else b',"k":"","p":"/other","b":null}\n')
        f.write(record_line(2.0, b"", b"/tocsin-1", hook))
    assert collector.poll() == 1
    assert collector.arrivals == [2.0]
    assert Collector(tmp_path / "none", "/x", EventLog(t0=0.0)).offset == 0


# ---------------------------------------------------------------------------- stats


@pytest.mark.parametrize(("values", "q", "want"), [
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0], 99, 4.0), ([5.0], 0, 5.0),
    (list(map(float, range(1, 101))), 90, 90.0),
], ids=["median", "p99", "single", "hundred"])
def test_percentile(values: list[float], q: float, want: float) -> None:
    assert percentile(values, q) == want


def test_percentile_edges_and_summary() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    s = summarize([3.0, 1.0, 2.0])
    assert (s["count"], s["mean"], s["p50"], s["max"]) == (3.0, 2.0, 2.0, 3.0)


def test_rate_and_window_series() -> None:
    assert rate_series([10.1, 10.2, 11.5, 13.0, 9.0], 10.0, 13.0) == [(0.0, 2.0), (1.0, 1.0), (2.0, 0.0)]
    assert rate_series([0.0, 0.2], 0.0, 1.0, step=0.5) == [(0.0, 4.0), (0.5, 0.0)]
    pts = [(0.5, 1.0), (1.0, 3.0), (7.0, 10.0)]
    assert window_percentiles(pts, 0.0, 5.0, qs=(50.0, 100.0)) == [(0.0, [1.0, 3.0]), (5.0, [10.0, 10.0])]


# ---------------------------------------------------------------------------- metrics


def test_parse_metrics_sums_partitions_and_maps_the_source() -> None:
    text = """# HELP x
tocsin_stage_consumer_lag{input="events",partition="0",stage="rules"} 2.0
tocsin_stage_consumer_lag{input="events",partition="1",stage="rules"} 3.0
tocsin_stage_inputs_total{stage="rules"} 10.0
tocsin_stage_commit_seconds_sum{stage="rules"} 0.5
tocsin_stage_commit_seconds_bucket{le="0.1",stage="rules"} 4.0
tocsin_source_batches_total{slot="tocsin"} 7.0
tocsin_notifications_total{integration="webhook"} 3.0
tocsin_notification_latency_seconds_sum{integration="webhook"} 0.25
tocsin_notifier_in_flight 12.0
"""
    lag, counters = parse_metrics(text)
    assert lag == {"rules/events": 5.0, "notifier/in_flight": 12.0}
    assert counters == {"rules/inputs": 10.0, "rules/commit_seconds_sum": 0.5, "source/commits": 7.0,
                        "notifier/inputs": 3.0, "notifier/attempt_seconds_sum": 0.25}


def test_counter_delta_survives_restarts() -> None:
    s = Samples()
    # process a: 10 before the window, then 20, 30; restarted as process b (another URL) counting 5, 15
    s.counters += [(0.0, "a", "rules/inputs", 10.0), (2.0, "a", "rules/inputs", 20.0), (4.0, "a", "rules/inputs", 30.0),
                   (6.0, "b", "rules/inputs", 5.0), (8.0, "b", "rules/inputs", 15.0)]
    assert s.counter_delta("rules/inputs", 1.0, 9.0) == (30 - 20) + 15
    s.counters += [(9.5, "c", "rules/inputs", 100.0), (9.7, "c", "rules/inputs", 4.0)]  # a reset within a series
    assert s.counter_delta("rules/inputs", 9.0, 10.0) == 100 + 4
    assert math.isnan(s.counter_delta("router/inputs", 0.0, 10.0))


# ---------------------------------------------------------------------------- profiles


def test_top_functions_of_py_spy_raw() -> None:
    raw = ("main (a.py:1);step (core.py:10);encode (enc.py:3) 6\n"
           "main (a.py:1);step (core.py:12) 3\n"
           "main (a.py:2);encode (enc.py:4) 1\n")
    samples, hots = top_functions(raw)
    assert samples == 10
    assert [(h.function, h.self_share, h.total_share) for h in hots] == [
        ("encode (enc.py)", 0.7, 0.7), ("step (core.py)", 0.3, 0.9)]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def test_pprof_top_decodes_a_go_profile() -> None:
    strings = ["", "main.run", "main.write", "syscall.Syscall6", "/src/main.go", "/go/syscall.go"]
    msg = b"".join(_field(6, s.encode()) for s in strings)
    for fid, name, file in ((1, 1, 4), (2, 2, 4), (3, 3, 5)):
        msg += _field(5, _field(1, fid) + _field(2, name) + _field(4, file))
    for lid, fid in ((1, 1), (2, 2), (3, 3)):
        msg += _field(4, _field(1, lid) + _field(4, _field(1, fid)))
    packed = b"".join(_varint(x) for x in (3, 2, 1))  # leaf first
    msg += _field(2, _field(1, packed) + _field(2, b"".join(_varint(x) for x in (8, 8_000_000))))
    msg += _field(2, _field(1, 2) + _field(1, 1) + _field(2, 2))  # unpacked ids and value
    total, hots = pprof_top(gzip.compress(msg))
    assert total == 10
    assert [(h.function, h.self_share, h.total_share) for h in hots] == [
        ("syscall.Syscall6 (go/syscall.go)", 0.8, 0.8), ("main.write (src/main.go)", 0.2, 1.0)]


# ---------------------------------------------------------------------------- chaos plan


def test_chaos_plan() -> None:
    got = plan(60.0, 10.0, nats_at=0.33, postgres_at=0.66)
    assert got == [Action(10.0, "kill"), Action(19.8, "nats"), Action(20.0, "kill"), Action(30.0, "kill"),
                   Action(39.6, "postgres"), Action(40.0, "kill"), Action(50.0, "kill")]
    assert plan(30.0, 0.0, nats_at=None, postgres_at=None) == []


# ---------------------------------------------------------------------------- hops


def _alert(lt: str, ends: float | None = None) -> Alert:
    return Alert(fingerprint="f", org="o", labels={"a": "b"}, annotations={"summary": f"lt:{lt}"}, starts_at=1.0,
                 ends_at=ends)


def test_hop_points_follow_a_firing_through_the_streams() -> None:
    ev = Event(id="99", org="o", reason="DeviceDisconnected", resource_kind="D", resource_name="n", occurred_at=1.0,
               fields={"lt_id": "5"})
    change = AlertChange(change="fired", alert=_alert("5"), cause=Cause(kind="event", id="99"))
    resolved = AlertChange(change="resolved", alert=_alert("5", 9.0), cause=Cause(kind="event", id="98"))
    flush = GroupFlush(org="o", group_key="k", group_id="g", route_id="0", receiver="r", group_labels={},
                       alerts=[_alert("5"), _alert("6")], flush_seq=1, flushed_at=2.0, group_interval=5,
                       repeat_interval=60)
    send = SendRequest(id="s", org="o", group_key="k", group_id="g", receiver="r",
                       integration=Integration(kind="webhook", index=0), flush_seq=1, status="firing",
                       group_labels={}, alerts=[_alert("5")], created_at=2.0)
    points: dict[str, dict[str, float]] = {"5": {"sent": 1.0}}
    wanted = {"5"}
    hop_points("events", [(1.1, encode(ev)), (1.2, b"not json")], wanted, points)
    hop_points("alerts", [(1.3, encode(resolved)), (1.4, encode(change))], wanted, points)
    hop_points("groups", [(1.6, encode(flush)), (1.9, encode(flush))], wanted, points)
    hop_points("sends", [(1.8, encode(send))], wanted, points)
    points["5"]["received"] = 2.0
    assert points["5"] == {"sent": 1.0, "events": 1.1, "alerts": 1.4, "groups": 1.6, "sends": 1.8, "received": 2.0}
    lat = hop_latencies({**points, "7": {"sent": 0.0}})  # an incomplete trace is left out
    assert {k: [round(x, 6) for x in v] for k, v in lat.items()} == {
        "sent->events": [0.1], "events->alerts": [0.3], "alerts->groups": [0.2], "groups->sends": [0.2],
        "sends->received": [0.2]}
    # a chain stores no group flush: its trace skips that point (without it, it traced nothing)
    chained = {"5": {k: v for k, v in points["5"].items() if k != "groups"}}
    lat = hop_latencies(chained, ("sent", "events", "alerts", "sends", "received"))
    assert {k: [round(x, 6) for x in v] for k, v in lat.items()} == {
        "sent->events": [0.1], "events->alerts": [0.3], "alerts->sends": [0.4], "sends->received": [0.2]}
    assert not any(hop_latencies(chained).values())


# ---------------------------------------------------------------------------- pushed alerts


def test_pushed_alerts_as_prometheus_sends_them() -> None:
    model = AlertModel()
    (fire,) = model.apply("3", "o", "Device", "d", "DeviceDisconnected", "lt:3", 1_700_000_000.25, 0.0)
    assert json.loads(alert_json(fire)) == {
        "labels": {"alertname": "DeviceDisconnected", "org_id": "o", "resource": "d", "resource_kind": "Device",
                   "severity": "critical"},
        "annotations": {"summary": "lt:3"}, "startsAt": "2023-11-14T22:13:20.250000Z"}
    (resolve,) = model.apply("4", "o", "Device", "d", "DeviceConnected", "", 1_700_000_010.0, 0.0)
    assert json.loads(alert_json(resolve))["endsAt"] == rfc3339(1_700_000_010.0) == "2023-11-14T22:13:30Z"


# ---------------------------------------------------------------------------- run configuration


def test_planned_times_of_steps() -> None:
    from loadtest.drive import planned_times

    assert list(planned_times([(2.0, 1.0), (4.0, 0.5)])) == [0.0, 0.5, 1.0, 1.25]
    with pytest.raises(ValueError):
        list(planned_times([(0.0, 1.0)]))


@pytest.mark.parametrize(("settings", "error"), [
    ({"steps": "100:10,200:5"}, None),
    ({"steps": "100"}, "RATE:SECONDS"),
    ({"steps": "100:0"}, "both > 0"),
    ({"dwell": 5.0, "group_interval": 5.0}, "must exceed group_interval"),
    ({"mode": "cdc", "targets": ("alertmanager",)}, "--mode api"),
    ({"chaos": True, "topology": "stages"}, "--topology cluster"),
], ids=["steps", "step-without-seconds", "empty-step", "dwell-too-short", "am-needs-api", "chaos-needs-cluster"])
def test_run_config_validation(settings: dict[str, object], error: str | None) -> None:
    from loadtest.run import RunConfig

    if error is None:
        cfg = RunConfig(**settings)  # type: ignore[arg-type]
        assert cfg.load_steps() == [(100.0, 10.0), (200.0, 5.0)] and cfg.load_seconds == 15.0
        return
    with pytest.raises(ValueError, match=error):
        RunConfig(**settings)  # type: ignore[arg-type]


def test_scenarios_are_valid_and_short_ones_shorter() -> None:
    from loadtest.run import SCENARIOS, _configs, _parser

    (full,) = _configs(_parser().parse_args(["--scenario", "ramp"]))
    (short,) = _configs(_parser().parse_args(["--scenario", "ramp", "--short", "--rate", "7"]))
    assert short.name == "ramp-short" and short.load_seconds == full.load_seconds / 2 and short.rate == 7.0
    assert len(_configs(_parser().parse_args(["--scenario", "all"]))) == len(SCENARIOS) - 1  # all but smoke


@pytest.mark.parametrize(("samples", "mean", "cpu_max", "mem_max"), [
    pytest.param([(5.0, "nats", 10.0, 50.0), (15.0, "nats", 60.0, 80.0), (25.0, "nats", 40.0, 90.0),
                  (35.0, "nats", 2.0, 70.0)], {"nats": 50.0}, {"nats": 60.0}, {"nats": 90.0},
                 id="mean-in-the-load-window-maxima-of-the-whole-run"),
    pytest.param([(35.0, "sink", 4.0, 10.0), (40.0, "sink", 6.0, 12.0)], {"sink": 5.0}, {"sink": 6.0},
                 {"sink": 12.0}, id="no-sample-in-the-window-mean-of-the-whole-run"),
    pytest.param([(10.0, "a", 30.0, 1.0), (20.0, "b", 20.0, 2.0), (30.0, "a", 10.0, 1.0)],
                 {"a": 20.0, "b": 20.0}, {"a": 30.0, "b": 20.0}, {"a": 1.0, "b": 2.0}, id="roles-apart"),
])
def test_cpu_figures_average_the_load_only(samples, mean, cpu_max, mem_max) -> None:
    assert cpu_figures(samples, t0=10.0, load_end=30.0) == (mean, cpu_max, mem_max)


@pytest.mark.parametrize(("samples", "window", "want"), [
    pytest.param([(0.0, "nats", 0.0, 1.0), (1.0, "nats", 50.0, 1.0), (2.0, "nats", 100.0, 1.0)], (0.0, 2.0),
                 {"nats": 1.5}, id="each-sample-covers-the-interval-before-it"),
    pytest.param([(0.0, "nats", 0.0, 1.0), (2.0, "nats", 100.0, 1.0), (4.0, "nats", 10.0, 1.0)], (1.0, 3.0),
                 {"nats": 1.1}, id="partial-overlap-at-both-ends"),
    pytest.param([(0.0, "a", 0.0, 1.0), (1.0, "a", 40.0, 1.0), (0.5, "b", 0.0, 1.0), (1.5, "b", 20.0, 1.0)],
                 (0.0, 10.0), {"a": 0.4, "b": 0.2}, id="roles-apart-unsorted"),
    pytest.param([(5.0, "sink", 90.0, 1.0)], (0.0, 10.0), {"sink": 0.0}, id="one-sample-no-interval"),
])
def test_cpu_seconds_in_a_window(samples, window, want) -> None:
    got = cpu_seconds(samples, *window)
    assert got.keys() == want.keys()
    assert all(math.isclose(got[k], want[k]) for k in want)

