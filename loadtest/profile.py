"""Profiling during a run: the Python stage processes with py-spy, nats-server with Go's pprof.

``py-spy record --format raw`` writes one line per distinct stack: ``frame;frame;...;leaf N``
(N samples). :func:`top_functions` turns that into the functions that used the CPU: *self*
(samples where the function is the leaf) and *total* (samples where it is anywhere on the
stack), each as a share of all samples. :func:`pprof_top` does the same for a Go CPU profile
(``/debug/pprof/profile`` of ``nats-server --profile PORT``: gzipped protobuf, decoded here
with a minimal protobuf reader, so no Go toolchain is needed).
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hot", "pprof_top", "py_spy", "start_py_spy", "top_functions"]

_LINE_NO = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Hot:
    function: str  # "name (file)"
    self_share: float
    total_share: float


def _frame(frame: str) -> str:
    """``"step (stages/rules/core.py:123)"`` -> ``"step (stages/rules/core.py)"`` (lines merged)."""
    return _LINE_NO.sub(")", frame.strip())


def top_functions(raw: str, n: int = 15) -> tuple[int, list[Hot]]:
    """(total samples, the ``n`` functions with the most self samples) of a py-spy raw profile."""
    self_count: dict[str, int] = {}
    total_count: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        samples += k
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + k
        for f in set(frames):
            total_count[f] = total_count.get(f, 0) + k
    if not samples:
        return 0, []
    ranked = sorted(self_count.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return samples, [Hot(f, c / samples, total_count.get(f, c) / samples) for f, c in ranked]


def py_spy() -> str | None:
    """The py-spy binary next to this interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def start_py_spy(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of ``pid`` for ``seconds`` into ``out`` (raw); None when py-spy is missing."""
    binary = py_spy()
    if binary is None:
        return None
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------------------- Go pprof


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values as bytes."""
    out: list[tuple[int, int, int | bytes]] = []
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(buf, i)
            out.append((field, wire, v))
        elif wire == 1:
            out.append((field, wire, int.from_bytes(buf[i:i + 8], "little")))
            i += 8
        elif wire == 2:
            length, i = _varint(buf, i)
            out.append((field, wire, buf[i:i + length]))
            i += length
        elif wire == 5:
            out.append((field, wire, int.from_bytes(buf[i:i + 4], "little")))
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated integer field's values (packed, wire type 2, or one per field)."""
    if wire != 2 and isinstance(value, int):
        return [value]
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def pprof_top(data: bytes, n: int = 15) -> tuple[int, list[Hot]]:
    """(total CPU samples, the ``n`` functions with the most self time) of a Go CPU profile."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings: list[str] = []
    functions: dict[int, tuple[int, int]] = {}  # id -> (name index, filename index)
    locations: dict[int, list[int]] = {}  # id -> function ids, innermost first
    samples: list[tuple[list[int], int]] = []
    for field, _, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if field == 6:
            strings.append(value.decode("utf-8", "replace"))
        elif field == 5:
            fn = {k: v for k, _, v in _fields(value) if isinstance(v, int)}
            functions[fn.get(1, 0)] = (fn.get(2, 0), fn.get(4, 0))
        elif field == 4:
            loc_id, funcs = 0, []
            for k, _, v in _fields(value):
                if k == 1 and isinstance(v, int):
                    loc_id = v
                elif k == 4 and isinstance(v, bytes):
                    line = {kk: vv for kk, _, vv in _fields(v) if isinstance(vv, int)}
                    funcs.append(line.get(1, 0))
            locations[loc_id] = funcs
        elif field == 2:
            locs: list[int] = []
            values: list[int] = []
            for k, w, v in _fields(value):
                if k == 1:
                    locs += _ints(w, v)
                elif k == 2:
                    values += _ints(w, v)
            samples.append((locs, values[0] if values else 0))

    def name(fid: int) -> str:
        ni, fi = functions.get(fid, (0, 0))
        fname = strings[ni] if ni < len(strings) else "?"
        file = strings[fi] if fi < len(strings) else ""
        return f"{fname} ({'/'.join(file.split('/')[-2:])})"

    self_count: dict[str, int] = {}
    total_count: dict[str, int] = {}
    total = 0
    for locs, count in samples:
        frames = [name(fid) for loc in locs for fid in locations.get(loc, [])]
        if not frames or count <= 0:
            continue
        total += count
        self_count[frames[0]] = self_count.get(frames[0], 0) + count
        for f in set(frames):
            total_count[f] = total_count.get(f, 0) + count
    if not total:
        return 0, []
    ranked = sorted(self_count.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return total, [Hot(f, c / total, total_count.get(f, c) / total) for f, c in ranked]
