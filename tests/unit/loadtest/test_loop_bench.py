"""loadtest.loop_bench reads its figures from the benches' own output lines (as they print them)."""

from __future__ import annotations

import pytest

from loadtest.loop_bench import benches, figures

OUTPUTS = {
    "nats": "runtime (counter stage): 31,445 inputs/s in one process\n"
            "CPU per input: stage process 13 us, nats-server 20 us\n"
            "bare nats-py atomic-batch loop, same server, same run: 25,039 inputs/s\n",
    "chain": "alerts=5000 partitions=16 orgs=200 group_wait=1h (preloaded)\n"
             " chained: 3,195 alerts/s (1.56s)  JetStream writes/alert 6.00 (stage streams, besides the push in "
             "EVENTS)  atomic batches/alert 0.051  CPU/alert: stages 103 us, nats-server 40 us\n",
    "notifier": "webhook: 2000 notifications (3 alerts each) in 0.47s = 4,230/s wall; worker CPU 0.30s = "
                "6,667 per CPU-second (one worker process, concurrency 64; start to first delivery 0.80s)\n",
}
EXPECTED = {
    "nats": {"runtime inputs/s": 31445, "bare nats-py inputs/s": 25039, "stage CPU us/input": 13},
    "chain": {"chain alerts/s": 3195, "chain CPU us/alert": 103},
    "notifier": {"webhooks/s wall": 4230, "webhooks per worker CPU-s": 6667},
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_every_figure_is_read(name: str) -> None:
    assert figures(benches(1000, 1000, 16)[name], OUTPUTS[name]) == EXPECTED[name]


def test_a_failed_run_yields_no_figures() -> None:
    assert figures(benches(1000, 1000, 16)["notifier"], "TimeoutError: only 3 of 2000 delivered") == {}
