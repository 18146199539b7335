from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .helpers import LIVE_WORKERS
from .peers import HttpPeer


@pytest.fixture
async def http_peer() -> AsyncIterator[HttpPeer]:
    peer = HttpPeer()
    await peer.start()
    yield peer
    await peer.stop()


@pytest.fixture(autouse=True)
def _kill_worker_processes() -> Iterator[None]:
    yield
    while LIVE_WORKERS:
        w = LIVE_WORKERS.pop()
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
