"""A partition's state under one subject filter, kept decoded between API reads.

``GET /api/v2/alerts/groups`` of 10,000 groups read 20,000 state messages each time (the
router's groups and the filter's records), over a second of the answer on a loaded machine.
The values only change with a commit of the partition, and every commit writes a new
progress record: a read first asks the stream leader for the progress record (as
``read_partition_state`` does) and

- when it is the one the kept values are as of, answers them as they are;
- when it moved on, reads only the messages stored since the last one it read (a state
  key's new value, or its tombstone, replaces the old one in the stream) and applies them;
- else (nothing kept, the stream started again, a read older than ``FULL_READ_EVERY``, a
  replica behind) reads everything again, as ``read_partition_state`` does.

Tombstones expire (``TOMBSTONE_TTL``): a deletion older than that would be missed by a read
of what came since, so the values are read in full again well within it.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.machine import TOMBSTONE_TTL
from pipeline.foundation.runtime.reads import StaleRead, read_messages, read_partition_state
from pipeline.foundation.runtime.wire import DELETED

__all__ = ["FULL_READ_EVERY", "StateCache", "no_gc"]

FULL_READ_EVERY: Final = float(TOMBSTONE_TTL) / 5  # seconds
T = TypeVar("T")


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """No cyclic collection inside (never around an ``await``): the objects a large read makes
    all live until it answers, so each collection scans them and, once they pass a quarter of
    the process's objects (which holds the stages' state too), everything: 2 full collections
    took ~40% of a 10,000-group read."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Kept(Generic[T]):
    progress: int  # the progress record's sequence the values are as of (or of a later one)
    last_seq: int  # the highest stream sequence among the messages read
    read_at: float  # monotonic time of the last full read
    values: dict[str, T]


def _seq(m: Msg) -> int:
    """The message's stream sequence (parsing its metadata costs: ask only the last one read)."""
    return int(m.metadata.sequence.stream)


def _deleted(m: Msg) -> bool:
    return bool(m.headers and m.headers.get(DELETED))


class StateCache(Generic[T]):
    """Values by state key (``key_of(msg)``), decoded by ``decode(key, data)``, for up to
    ``size`` (stream, subject filter) pairs, the least recently read dropped first."""

    def __init__(self, key_of: Callable[[Msg], str], decode: Callable[[str, bytes], T], *, size: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._key_of, self._decode, self._size, self._clock = key_of, decode, size, clock
        self._kept: OrderedDict[tuple[str, str], _Kept[T]] = OrderedDict()
        self.reads = {"kept": 0, "since": 0, "full": 0}  # how each read was answered (tests, metrics)

    async def read(self, js: JetStreamContext, stream: str, subject: str, progress: str) -> dict[str, T]:
        """The values under ``subject`` as of the partition's last commit (do not change them)."""
        name = (stream, subject)
        raw = await last_message(js, stream, progress, leader=True)
        kept = self._kept.get(name)
        fresh = kept is not None and raw is not None and self._clock() - kept.read_at < FULL_READ_EVERY
        if kept is not None and fresh and raw is not None and raw[0] == kept.progress:
            self.reads["kept"] += 1
            self._kept.move_to_end(name)
            return kept.values
        if kept is not None and fresh and raw is not None and raw[0] > kept.progress:
            try:
                msgs = [m async for m in read_messages(js, stream, subject, start_seq=kept.last_seq + 1,
                                                       fresh=(progress, raw[0]))]
            except StaleRead:  # a replica behind, or a commit that came with the last read: read it all
                msgs = None
            if msgs is not None:
                values = dict(kept.values)  # a read still using the old values keeps them whole
                for m in msgs:  # (few: what changed since)
                    key = self._key_of(m)
                    if _deleted(m):
                        values.pop(key, None)
                    else:
                        values[key] = self._decode(key, m.data)
                last = _seq(msgs[-1]) if msgs else kept.last_seq  # (read in stream order)
                self._keep(name, _Kept(raw[0], last, kept.read_at, values))
                self.reads["since"] += 1
                return values
        read_at = self._clock()
        read = await read_partition_state(js, stream, subject, progress)
        values = {}
        with no_gc():
            for m, deleted in read:
                if not deleted:
                    key = self._key_of(m)
                    values[key] = self._decode(key, m.data)
        if raw is not None:  # no progress record: nothing committed yet, nothing to keep
            self._keep(name, _Kept(raw[0], _seq(read[-1][0]) if read else 0, read_at, values))
        self.reads["full"] += 1
        return values

    def _keep(self, name: tuple[str, str], kept: _Kept[T]) -> None:
        self._kept[name] = kept
        self._kept.move_to_end(name)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
