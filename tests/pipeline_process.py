"""Run `pipeline.application.app.run_process` in a background task for a test (fixtures cannot hold a task group)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pipeline.application.app import Endpoints, Settings, run_process


class _Status:
    def __init__(self) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def started(self, value: Any = None) -> None:
        if not self.future.done():
            self.future.set_result(value)


@contextlib.asynccontextmanager
async def running(settings: Settings, stages: list[str], timeout: float = 60) -> AsyncIterator[Endpoints]:
    status = _Status()
    task = asyncio.create_task(run_process(settings, stages, handle_signals=False,
                                           task_status=status))  # type: ignore[arg-type]
    try:
        done, _ = await asyncio.wait({task, status.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what stopped it
        if status.future not in done:
            raise TimeoutError(f"pipeline {stages} not ready within {timeout}s")
        yield status.future.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
