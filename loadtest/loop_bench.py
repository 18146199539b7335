"""The event loop, A/B: asyncio's default loop against uvloop, interleaved in one run.

    .venv/bin/python -m loadtest.loop_bench [--repeats 3] [--benches nats,chain,notifier]
        [--events 20000] [--webhooks 10000]

Each bench is an existing benchmark run as a subprocess, once per loop per round, in the
order asyncio, uvloop, asyncio, uvloop, ... (:func:`loadtest.repeat.schedule`), so that a slow
minute of this shared machine lands on both. The loop is chosen for every Tocsin process of
the run (the bench's driver when it runs the stage in-process, the notifier worker it starts,
any ``tocsin`` process): ``TOCSIN_EVENT_LOOP`` for the CLI, and a ``sitecustomize`` put on
``PYTHONPATH`` that installs uvloop's policy in the bench's own modules. The helper processes
(the benches' HTTP and SMTP receivers) keep asyncio's loop in both arms.

Benches:

- ``nats``: ``loadtest.runtime_bench --stage counter``: the stage runtime and a bare nats-py
  atomic-batch loop on the same server (inputs/s, stage CPU per input);
- ``chain``: ``loadtest.runtime_bench --stage pipeline --deployment chained``: rules, router
  and filter as one chain (alerts/s, stage CPU per alert);
- ``notifier``: ``loadtest.notifier_bench --emails 0``: one notifier worker's webhook
  notifications/s, wall and per CPU-second.

Prints each figure's median and range per loop and the ratio of the medians (uvloop/asyncio;
for CPU per input, below 1 is better).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.repeat import median, schedule, spread

__all__ = ["BENCHES", "LOOPS", "Bench", "figures", "main"]

LOOPS = ("asyncio", "uvloop")
# The processes whose loop is switched: the benches (their stage runs in-process), the notifier
# worker, the CLI. Matched against ``sys.orig_argv``; receivers (``python -c CODE``) do not match.
_SWITCHED = ("loadtest.runtime_bench", "loadtest.notifier_bench", "loadtest.loop_bench", "stages.notifier.worker",
             "pipeline.application.cli", "/tocsin")
_SITECUSTOMIZE = f"""\
import os, sys
if os.environ.get("TOCSIN_LOOP_BENCH") == "uvloop" and any(
        m in " ".join(sys.orig_argv) for m in {_SWITCHED!r}):
    import asyncio, uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
"""


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]  # after `python -m`
    patterns: tuple[tuple[str, str], ...]  # (figure, regex with one group: a number, commas allowed)


def benches(events: int, webhooks: int, partitions: int) -> dict[str, Bench]:
    return {
        "nats": Bench("nats", ("loadtest.runtime_bench", "--stage", "counter", "--events", str(events),
                               "--partitions", str(partitions)),
                      (("runtime inputs/s", r"runtime \(\w+ stage\): ([\d,.]+) inputs/s"),
                       ("bare nats-py inputs/s", r"bare nats-py atomic-batch loop.*?: ([\d,.]+) inputs/s"),
                       ("stage CPU us/input", r"CPU per input: stage process ([\d,.]+) us"))),
        "chain": Bench("chain", ("loadtest.runtime_bench", "--stage", "pipeline", "--deployment", "chained",
                                 "--events", str(events), "--partitions", str(partitions)),
                       (("chain alerts/s", r"chained: ([\d,.]+) alerts/s"),
                        ("chain CPU us/alert", r"CPU/alert: stages ([\d,.]+) us"))),
        "notifier": Bench("notifier", ("loadtest.notifier_bench", "--webhooks", str(webhooks), "--emails", "0"),
                          (("webhooks/s wall", r"webhook: \d+ notifications .*?= ([\d,.]+)/s wall"),
                           ("webhooks per worker CPU-s", r"= ([\d,.]+) per CPU-second"))),
    }


BENCHES = ("nats", "chain", "notifier")


def figures(bench: Bench, out: str) -> dict[str, float]:
    """The bench's figures found in its output (a figure not found is left out)."""
    found = {}
    for name, pattern in bench.patterns:
        m = re.search(pattern, out)
        if m:
            found[name] = float(m.group(1).replace(",", ""))
    return found


def _env(loop: str, site: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TOCSIN_LOOP_BENCH": loop, "TOCSIN_EVENT_LOOP": loop}


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else b or ""


def _loop_in_use(loop: str, site: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "loadtest.loop_bench", "--which-loop"], env=_env(loop, site),
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def run(names: Sequence[str], repeats: int, events: int, webhooks: int, partitions: int, timeout: float) -> None:
    table = benches(events, webhooks, partitions)
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    by_round: dict[tuple[str, str, int], dict[str, float]] = {}  # (bench, loop, round) -> figures
    with tempfile.TemporaryDirectory(prefix="tocsin-loop-bench-") as d:
        site = Path(d)
        (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        for loop in LOOPS:  # the switch works, or the comparison means nothing
            used = _loop_in_use(loop, site)
            assert (loop == "uvloop") == ("uvloop" in used), f"{loop} arm runs {used!r}"
            print(f"{loop} arm: {used}", flush=True)
        for name in names:
            bench = table[name]
            for k, loop in schedule(LOOPS, repeats):
                t0 = time.monotonic()
                try:
                    proc = subprocess.run([sys.executable, "-m", *bench.args], env=_env(loop, site),
                                          capture_output=True, text=True, timeout=timeout)
                    code, out, err = proc.returncode, proc.stdout, proc.stderr
                except subprocess.TimeoutExpired as exc:  # (a bench waits long for a worker that died)
                    code, out, err = None, _text(exc.stdout), _text(exc.stderr)
                got = figures(bench, out)
                if code != 0 or len(got) != len(bench.patterns):
                    print(f"{name} {loop} round {k}: failed (exit {code}, figures {sorted(got)})\n"
                          f"{out[-1500:]}{err[-3000:]}", flush=True)
                by_round[name, loop, k] = got
                for fig, v in got.items():
                    results.setdefault((name, loop), {}).setdefault(fig, []).append(v)
                shown = ", ".join(f"{f} {v:,.0f}" for f, v in got.items())
                print(f"{name} round {k} {loop:>7}: {shown} ({time.monotonic() - t0:.0f}s)", flush=True)
    print(f"\nrepeats={repeats} events={events} webhooks={webhooks} partitions={partitions}; "
          f"median [min-max] per loop, ratio of medians uvloop/asyncio, and the median [min-max] of the "
          f"rounds' own ratios (each uvloop run against the asyncio run just before it: less of the machine's drift)")
    for name in names:
        for fig, _ in table[name].patterns:
            a = results.get((name, "asyncio"), {}).get(fig, [])
            u = results.get((name, "uvloop"), {}).get(fig, [])
            sa, su = spread(a), spread(u)
            ratio = median(u) / median(a) if a and u and median(a) else float("nan")
            paired = spread(by_round[name, "uvloop", k][fig] / by_round[name, "asyncio", k][fig]
                            for k in range(1, repeats + 1)
                            if by_round.get((name, "asyncio", k), {}).get(fig) and fig in by_round.get(
                                (name, "uvloop", k), {}))
            print(f"{name:>8} {fig:<28} asyncio {sa.median:>10,.0f} [{sa.lo:,.0f}-{sa.hi:,.0f}]  "
                  f"uvloop {su.median:>10,.0f} [{su.lo:,.0f}-{su.hi:,.0f}]  ratio {ratio:.2f}  "
                  f"paired {paired.median:.2f} [{paired.lo:.2f}-{paired.hi:.2f}]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--benches", default=",".join(BENCHES), help=f"comma-separated, of {', '.join(BENCHES)}")
    ap.add_argument("--events", type=int, default=20_000, help="inputs of the nats and chain benches")
    ap.add_argument("--webhooks", type=int, default=10_000, help="notifications of the notifier bench")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=600, help="seconds one bench run may take")
    ap.add_argument("--which-loop", action="store_true", help=argparse.SUPPRESS)  # the arms' self-check
    a = ap.parse_args(argv)
    if a.which_loop:
        async def which() -> str:
            return type(asyncio.get_running_loop()).__module__

        print(asyncio.run(which()))
        return
    names = [n for n in a.benches.split(",") if n]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        ap.error(f"unknown benches {unknown}: choose among {', '.join(BENCHES)}")
    run(names, a.repeats, a.events, a.webhooks, a.partitions, a.timeout)


if __name__ == "__main__":
    main()
