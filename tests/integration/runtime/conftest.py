from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from .helpers import LIVE


@pytest.fixture(autouse=True)
def _kill_workers() -> Iterator[None]:
    yield
    while LIVE:
        w = LIVE.pop()
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGCONT)
            w.proc.kill()
            w.proc.wait()
