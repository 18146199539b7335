"""The event loop of a `tocsin run`/`up` process: uvloop for the notifier alone (where it measured
faster: `python -m loadtest.loop_bench`), asyncio's default elsewhere, TOCSIN_EVENT_LOOP to force one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.application.cli import event_loop_options


@pytest.mark.parametrize(("stages", "env", "uvloop"), [
    (["notifier"], {}, True),
    (["chain"], {}, False),
    (["rules"], {}, False),
    (["api"], {}, False),
    (["source", "rules", "router", "filter", "notifier", "api"], {}, False),  # `tocsin up`: one process
    (["notifier"], {"TOCSIN_EVENT_LOOP": "asyncio"}, False),
    (["chain"], {"TOCSIN_EVENT_LOOP": "uvloop"}, True),
    (["notifier"], {"TOCSIN_EVENT_LOOP": ""}, True),  # empty: unset
], ids=["notifier", "chain", "rules", "api", "up", "notifier-forced-off", "chain-forced-on", "empty-is-unset"])
def test_the_loop_per_process(stages: list[str], env: dict[str, str], uvloop: bool) -> None:
    assert event_loop_options(stages, env) == {"use_uvloop": uvloop}


def test_an_unknown_loop_is_refused_with_the_choices() -> None:
    with pytest.raises(SystemExit, match=r"TOCSIN_EVENT_LOOP='trio': use one of asyncio, uvloop"):
        event_loop_options(["notifier"], {"TOCSIN_EVENT_LOOP": "trio"})


def test_the_options_run_uvloop() -> None:
    """What the options make anyio run (in a fresh interpreter: a loop policy is process-wide)."""
    code = ("import anyio, asyncio; from pipeline.application.cli import event_loop_options\n"
            "async def f(): return type(asyncio.get_running_loop()).__module__\n"
            "for stages in (['notifier'], ['chain']):\n"
            "    print(anyio.run(f, backend_options=event_loop_options(stages, {})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["uvloop", "asyncio.unix_events"]
