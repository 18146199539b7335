"""Reading what the sink received while the run goes on: deliveries, and live latency figures."""

from __future__ import annotations

import math
from pathlib import Path

from loadtest.drive import EventLog
from loadtest.oracle import Delivery, deliveries_from_webhook
from loadtest.sink import end_of_records, read_records

__all__ = ["Collector"]


class Collector:
    """Tails the sink's record file, keeping the deliveries of requests to ``path``."""

    def __init__(self, records: Path, path: str, events: EventLog) -> None:
        self.records = records
        self.path = path
        self.events = events
        # From the file's end as it stands: the sink is shared by every run of a scenario, and
        # reading the earlier runs' records (hundreds of MB after a few bursts) at the first poll
        # stalled the load generator's loop for a second, at the start of every later run.
        self.offset = end_of_records(records)
        self.requests = 0
        self.deliveries: list[Delivery] = []
        self.seen: set[tuple[str, str]] = set()
        self.arrivals: list[float] = []  # of each request

    def poll(self) -> int:
        """Read new records; return how many requests were new."""
        records, self.offset = read_records(self.records, self.offset)
        n = 0
        for r in records:
            if r.p != self.path or not isinstance(r.b, dict):
                continue
            n += 1
            self.arrivals.append(r.t)
            for d in deliveries_from_webhook(r.b, r.t, r.k):
                self.deliveries.append(d)
                self.seen.add((d.lifecycle, d.status))
        self.requests += n
        return n

    def firing_latencies(self, since: float) -> list[float]:
        """Seconds from the firing event's sent time to the arrival of each firing delivery since ``since``."""
        sent = self.events.sent
        out = []
        for d in reversed(self.deliveries):
            if d.at < since:
                break
            if d.status != "firing" or not d.lifecycle.isdigit():
                continue
            i = int(d.lifecycle) - 1
            if 0 <= i < len(sent) and not math.isnan(sent[i]):
                out.append(d.at - sent[i])
        return out

