"""Which stream directories get their atomic batches staged in memory, on a fake store tree
(the real server is in tests/integration/runtime/test_batches_in_memory.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.foundation.embedded import stage_batches_in_memory


def _stream(store: Path, name: str, *, meta: bool = True, batches: str = "none") -> Path:
    """A stream directory as nats-server lays it out; ``batches``: none, empty or staged (a batch in it)."""
    d = store / "jetstream" / "$G" / "streams" / name
    d.mkdir(parents=True)
    if meta:
        (d / "meta.inf").write_text("{}")
    if batches in ("empty", "staged"):
        (d / "batches").mkdir()
    if batches == "staged":
        (d / "batches" / "Bx1").mkdir()
    return d


@pytest.mark.parametrize(("meta", "batches", "linked"), [
    (True, "none", True),
    (True, "empty", True),
    (True, "staged", False),  # a batch in flight is never moved
    (False, "none", False),  # not a stream (yet): the server writes meta.inf when it creates one
], ids=["new-stream", "empty-batches-dir", "batch-in-flight", "no-meta"])
def test_which_streams_are_linked(tmp_path: Path, meta: bool, batches: str, linked: bool) -> None:
    store, memory = tmp_path / "store", tmp_path / "mem"
    d = _stream(store, "S", meta=meta, batches=batches)
    assert stage_batches_in_memory(store, memory) == int(linked)
    assert (d / "batches").is_symlink() is linked
    if linked:
        assert (d / "batches").resolve() == (memory / "$G.S").resolve()
        assert (memory / "$G.S").is_dir()
    if batches == "staged":
        assert (d / "batches" / "Bx1").is_dir()


def test_a_second_pass_changes_nothing_and_repairs_a_removed_target(tmp_path: Path) -> None:
    store, memory = tmp_path / "store", tmp_path / "mem"
    d = _stream(store, "S")
    _stream(store, "T", batches="staged")
    assert stage_batches_in_memory(store, memory) == 1
    assert stage_batches_in_memory(store, memory) == 0
    (memory / "$G.S").rmdir()  # a server stopping on the same store cleaned its staging place up
    assert stage_batches_in_memory(store, memory) == 0
    assert (d / "batches").is_dir()  # the link works again
    for sub in (store / "jetstream" / "$G" / "streams" / "T" / "batches").iterdir():
        sub.rmdir()  # the batch in flight committed
    assert stage_batches_in_memory(store, memory) == 1


def test_a_link_to_another_place_is_pointed_here(tmp_path: Path) -> None:
    store, memory, old = tmp_path / "store", tmp_path / "mem", tmp_path / "old"
    d = _stream(store, "S")
    old.mkdir()
    (d / "batches").symlink_to(old, target_is_directory=True)
    assert stage_batches_in_memory(store, memory) == 1
    assert os.readlink(d / "batches") == str(memory / "$G.S")
