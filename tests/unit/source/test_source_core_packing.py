"""The source core's checkpoint, plan and batch packing (no servers): the restart rule, batches that
never exceed their limit and keep the transactions' order, and the verdict on a lost PubAck."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.source.core import (
    Batch,
    BatchPacker,
    Checkpoint,
    Chunk,
    Durable,
    Message,
    after_failed_publish,
    checkpoint_key,
    checkpoint_subject,
    decode_checkpoint,
    encode_checkpoint,
    plan,
    resume_lsn,
)
from stages.source.pgoutput import format_lsn, parse_lsn

# ---------------------------------------------------------------------------- packing and the restart rule


def chunks_of(sizes: list[int], chunk_limit: int) -> list[Chunk | Durable]:
    """Transactions of the given sizes as the assembler makes them (commit LSNs 0x1000, 0x2000, ...)."""
    items: list[Chunk | Durable] = []
    for t, n in enumerate(sizes):
        lsn = 0x1000 * (t + 1)
        if n == 0:
            items.append(Durable(lsn + 8))
            continue
        msgs = [Message("s", f"{t}:{i}".encode(), f"{format_lsn(lsn)}:{i}", 0.0)
                for i in range(n)]
        for start in range(0, n, chunk_limit):
            part = msgs[start:start + chunk_limit]
            last = start + chunk_limit >= n
            items.append(Chunk(lsn, start, part, 0.0, end_lsn=lsn + 8 if last else None,
                               txn_messages=n if last else 0))
    return items


def run(items: list, limit: int, base: Checkpoint | None, flushed: int) -> list:
    """Feed items, cutting a batch whenever the packer says or after every item (like an idle queue)."""
    packer = BatchPacker(limit, base, flushed)
    batches = []
    for it in items:
        batches += packer.add(it)
        if (b := packer.flush()) is not None:
            batches.append(b)
    return batches


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=12), limit=st.integers(1, 7),
       chunk_limit=st.integers(1, 9), crash=st.integers(0, 40), resend_all=st.booleans())
def test_restart_from_any_checkpoint_publishes_every_message_exactly_once(
        sizes: list[int], limit: int, chunk_limit: int, crash: int, resend_all: bool) -> None:
    items = chunks_of(sizes, chunk_limit)
    everything = [m.payload for it in items if isinstance(it, Chunk) for m in it.msgs]
    first = [b for b in run(items, limit, None, 0) if b.checkpoint is not None]
    done = first[:crash]
    for b in done:
        assert len(b.msgs) <= limit
    keys = [checkpoint_key(b.checkpoint) for b in done]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    cp = done[-1].checkpoint if done else None
    resume = parse_lsn(cp.lsn) if cp else 0
    # Postgres resends from the slot's confirmed position (at most cp.lsn): maybe everything again,
    # at least every transaction committed at or after cp.lsn.
    again = items if resend_all else [it for it in items if (isinstance(it, Durable) and it.lsn > resume)
                                      or (isinstance(it, Chunk) and it.commit_lsn >= resume)]
    second = run(again, limit, cp, resume)
    published = [m.payload for b in done + second for m in b.msgs]
    assert published == everything
    flushes = [b.flushed for b in done + second]
    assert flushes == sorted(flushes)
    assert flushes[-1] == 0x1000 * len(sizes) + 8


def test_packer_shares_batches_between_small_transactions_and_splits_large_ones() -> None:
    packer = BatchPacker(5, None, 0)
    out = []
    for it in chunks_of([2, 2, 7], chunk_limit=5):
        out += packer.add(it)
    last = packer.flush()
    assert last is not None
    batches = [*out, last]
    assert [len(b.msgs) for b in batches] == [5, 5, 1]
    cps = [b.checkpoint for b in batches if b.checkpoint is not None]
    assert [(c.commit_lsn, c.next_index, c.complete) for c in cps] == [
        ("0/3000", 1, False), ("0/3000", 6, False), ("0/3000", 7, True)]
    assert [c.lsn for c in cps] == ["0/2008", "0/2008", "0/3008"]  # where to resume if this is the last
    assert [b.flushed for b in batches] == [0x2008, 0x2008, 0x3008]
    assert [[c.commit_lsn for c in b.completed] for b in batches] == [[0x1000, 0x2000], [], [0x3000]]


@pytest.mark.parametrize(
    ("cp", "chunk", "expected"),
    [
        (None, (0x2000, 0, 3, True), 0),
        (("0/1000", 5, True), (0x2000, 0, 3, True), 0),
        (("0/3000", 1, False), (0x2000, 0, 3, True), None),
        (("0/2000", 3, True), (0x2000, 0, 3, True), None),
        (("0/2000", 2, False), (0x2000, 0, 3, True), 2),
        (("0/2000", 3, False), (0x2000, 0, 3, True), 3),
        (("0/2000", 3, False), (0x2000, 0, 3, False), None),
        (("0/2000", 3, False), (0x2000, 3, 3, False), 0),
    ],
    ids=["fresh", "older-checkpoint", "newer-checkpoint", "same-complete", "part-published",
         "only-completion-missing", "non-final-all-published", "later-chunk"],
)
def test_plan_says_how_much_of_a_chunk_is_published(cp: tuple | None, chunk: tuple,
                                                    expected: int | None) -> None:
    checkpoint = None
    if cp is not None:
        checkpoint = Checkpoint(lsn="0/0", commit_lsn=cp[0], next_index=cp[1], complete=cp[2])
    lsn, first, n, final = chunk
    c = Chunk(lsn, first, [Message("s", b"", "", 0.0)] * n, 0.0, end_lsn=lsn + 8 if final else None)
    assert plan(c, checkpoint) == expected



def cp(commit_lsn: str, next_index: int, complete: bool, lsn: str = "0/0") -> Checkpoint:
    return Checkpoint(lsn=lsn, commit_lsn=commit_lsn, next_index=next_index, complete=complete)


# ---------------------------------------------------------------------------- packing: limits and order


def _dead(t: int, i: int) -> bool:
    return (t + i) % 3 == 0


def chunks_with_dead_letters(sizes: list[int], chunk_limit: int) -> list[Chunk | Durable]:
    """:func:`chunks_of`, every third message a dead letter."""
    items = chunks_of(sizes, chunk_limit)
    for it in items:
        if isinstance(it, Chunk):
            t = it.commit_lsn // 0x1000 - 1
            it.msgs = [Message("d", m.payload, m.msg_id, 0.0, "row") if _dead(t, it.first_index + j) else m
                       for j, m in enumerate(it.msgs)]
    return items


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=10), limit=st.integers(1, 7),
       chunk_limit=st.integers(1, 9), cut=st.lists(st.booleans(), min_size=40, max_size=40))
def test_packing_never_exceeds_the_limit_and_keeps_the_order(sizes: list[int], limit: int, chunk_limit: int,
                                                              cut: list[bool]) -> None:
    """Whenever the queue runs dry (``flush``) or not: every batch holds at most ``limit`` messages,
    all of them in transaction order, each checkpoint covers exactly what was published up to it,
    the flush position never goes back, and each transaction is completed once, in order."""
    items = chunks_with_dead_letters(sizes, chunk_limit)
    packer = BatchPacker(limit, None, 0)
    batches: list[Batch] = []
    for i, it in enumerate(items):
        batches += packer.add(it)
        if cut[i % len(cut)] and (b := packer.flush()) is not None:
            batches.append(b)
    if (b := packer.flush()) is not None:
        batches.append(b)
    assert packer.flush() is None  # nothing left: a second flush has nothing to say
    assert all(len(b.msgs) <= limit for b in batches)
    assert all(b.msgs or b.checkpoint is None for b in batches)
    published = [m for b in batches for m in b.msgs]
    assert published == [m for it in items if isinstance(it, Chunk) for m in it.msgs]
    assert [m for b in batches for m in b.dead_letters] == [m for m in published if m.dead is not None]
    flushed = [b.flushed for b in batches]
    assert flushed == sorted(flushed) and flushed[-1] == 0x1000 * len(sizes) + 8
    count = 0
    for b in batches:
        count += len(b.msgs)
        if b.checkpoint is not None:  # the checkpoint is the last published message's position
            last = published[count - 1]
            commit_lsn, index = last.msg_id.rsplit(":", 1)
            assert (b.checkpoint.commit_lsn, b.checkpoint.next_index) == (commit_lsn, int(index) + 1)
    completed = [c.commit_lsn for b in batches for c in b.completed]
    assert completed == [0x1000 * (t + 1) for t, n in enumerate(sizes) if n]


@pytest.mark.parametrize(
    ("base", "items", "expected"),
    [
        (None, [Durable(0x10)], [(0, None, 0x10, 0)]),
        (cp("0/3000", 2, True, lsn="0/3008"), chunks_of([2, 2, 2], 5), [(0, None, 0x3008, 6)]),
        (cp("0/2000", 1, False, lsn="0/1008"), chunks_of([2, 2, 2], 5),
         [(3, ("0/3000", 2, True), 0x3008, 3)]),
        (cp("0/2000", 2, False, lsn="0/1008"), chunks_of([2, 2], 5), [(0, ("0/2000", 2, True), 0x2008, 4)]),
        (None, chunks_of([0, 0], 5), [(0, None, 0x2008, 0)]),
    ],
    ids=["keepalive-mark", "all-published", "resume-mid-transaction", "only-completion-missing", "empty-transactions"],
)
def test_packer_after_a_restart(base: Checkpoint | None, items: list, expected: list) -> None:
    """(data messages, checkpoint (commit LSN, next index, complete), flushed, skipped) of each batch
    when everything arrives before the queue runs dry."""
    packer = BatchPacker(10, base, resume_lsn(base))
    batches = [b for it in items for b in packer.add(it)]
    if (b := packer.flush()) is not None:
        batches.append(b)
    shape = [(len(b.msgs), None if b.checkpoint is None else
              (b.checkpoint.commit_lsn, b.checkpoint.next_index, b.checkpoint.complete), b.flushed, b.skipped)
             for b in batches]
    assert shape == expected


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (None, cp("0/1", 0, False)),
        (cp("0/1000", 5, False), cp("0/1000", 6, False)),
        (cp("0/1000", 999, False), cp("0/1000", 1, True)),
        (cp("0/1000", 1, True), cp("0/2000", 0, False)),
        (cp("0/FFFF", 3, True), cp("1/0", 1, False)),
    ],
    ids=["none-first", "more-published", "complete-last", "next-transaction", "lsn-not-text-order"],
)
def test_checkpoint_key_orders_checkpoints_as_the_stream_does(earlier: Checkpoint | None, later: Checkpoint) -> None:
    assert checkpoint_key(earlier) < checkpoint_key(later)


@pytest.mark.parametrize(
    ("found", "sent", "before", "verdict"),
    [
        (cp("0/2000", 3, True), cp("0/2000", 3, True), cp("0/1000", 1, True), "stored"),
        (cp("0/3000", 1, False), cp("0/2000", 3, True), cp("0/1000", 1, True), "stored"),
        (cp("0/1000", 1, True), cp("0/2000", 3, True), cp("0/1000", 1, True), "retry"),
        (None, cp("0/2000", 3, True), None, "retry"),
        (cp("0/1800", 1, False), cp("0/2000", 3, True), cp("0/1000", 1, True), "conflict"),
        (None, cp("0/2000", 3, True), cp("0/1000", 1, True), "conflict"),
    ],
    ids=["lost-puback", "stored-and-moved-on", "not-stored", "not-stored-first-batch", "another-writer",
         "checkpoint-vanished"],
)
def test_after_failed_publish_reads_the_checkpoint(found: Checkpoint | None, sent: Checkpoint,
                                                   before: Checkpoint | None, verdict: str) -> None:
    assert after_failed_publish(found, sent, before) == verdict


@pytest.mark.parametrize(
    ("checkpoint", "lsn"),
    [(None, 0), (cp("0/2000", 1, True, lsn="0/2030"), 0x2030), (cp("16/B374D848", 1, False, lsn="16/B374D000"),
                                                             parse_lsn("16/B374D000"))],
    ids=["fresh", "after-a-transaction", "mid-transaction"],
)
def test_a_session_resumes_at_the_checkpoints_lsn(checkpoint: Checkpoint | None, lsn: int) -> None:
    assert resume_lsn(checkpoint) == lsn


def test_checkpoint_round_trips_and_has_a_subject_per_slot() -> None:
    c = Checkpoint(lsn="0/2030", commit_lsn="0/2000", next_index=3, complete=True, committed_at=1.5)
    assert decode_checkpoint(encode_checkpoint(c)) == c
    assert decode_checkpoint(b'{"lsn":"0/1","commit_lsn":"0/1","next_index":0,"complete":false}').committed_at == 0
    assert checkpoint_subject("tocsin") == "tocsin.events.source.tocsin"
