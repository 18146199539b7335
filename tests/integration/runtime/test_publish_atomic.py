"""``publish_atomic`` writes the batch as ready-made frames: on a real nats-server every message
arrives as sent (subject, headers, payload bytes, order), and a frame that would be corrupt is
refused before anything is sent."""

from __future__ import annotations

import nats.errors
import pytest
from nats.protocol import command as prot_command

from pipeline.foundation.embedded import NatsServer
from pipeline.foundation.runtime import jetstream
from pipeline.foundation.runtime.jetstream import (
    BatchError,
    batch_frame,
    connect,
    ensure_stream,
    hpub_frame,
    publish_atomic,
)
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import BatchMsg

pytestmark = pytest.mark.integration

NAMES = StreamNames("pa")


@pytest.mark.parametrize(("subject", "headers", "payload"), [
    ("a.b", {"Nats-Msg-Id": "x:1"}, b"hello"),
    ("a.b.c", {"K": "v", "Nats-TTL": "604800", "Tocsin-Time": "1795371436.94317"}, b""),
    ("a", {"Group": '{}:{alertname="A", org="o-1"}'}, b"\r\nHPUB x 1 2\r\n\x00\xff"),
], ids=["plain", "empty-payload", "payload-with-protocol-bytes"])
def test_a_frame_is_what_nats_py_sends(subject: str, headers: dict[str, str], payload: bytes) -> None:
    hdr = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
    ours, theirs = hpub_frame(subject, headers, payload), prot_command.hpub_cmd(subject, "", hdr, payload)
    # the same control line (nats-py leaves an empty reply as a double space), then the same bytes
    (ours_ctrl, ours_rest), (their_ctrl, their_rest) = ours.split(b"\r\n", 1), theirs.split(b"\r\n", 1)
    assert ours_ctrl.split() == their_ctrl.split()
    assert ours_rest == their_rest


@pytest.mark.parametrize(("subject", "headers"), [
    ("a.b", {"Nats-Msg-Id": "x\r\nNats-Rollup: all"}),
    ("a.b", {"Nats-Msg-Id": "x\ny"}),
    ("a b", {"K": "v"}),
    ("", {"K": "v"}),
], ids=["crlf-in-value", "lf-in-value", "space-in-subject", "empty-subject"])
def test_a_frame_that_would_split_is_refused(subject: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        hpub_frame(subject, headers, b"x")


async def test_every_message_of_a_batch_arrives_as_sent(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, NAMES)
    msgs = [BatchMsg(NAMES.out(i % 3, f"k{i}"), bytes([i % 256]) * i + b"\r\n",
                     {"Nats-Msg-Id": f"m:{i}", "Tocsin-Time": f"{i}.5"} if i % 2 else None)
            for i in range(1, 301)]
    last = await publish_atomic(nc, msgs)
    for seq, sent in enumerate(msgs, last - len(msgs) + 1):
        got = await js.get_msg(NAMES.stream, seq)
        assert (got.subject, got.data) == (sent.subject, sent.payload)
        headers = dict(got.headers or {})
        assert headers.pop("Nats-Batch-Sequence") == str(seq - last + len(msgs))
        assert headers.pop("Nats-Batch-Id")
        headers.pop("Nats-Batch-Commit", None)
        assert headers == (sent.headers or {})
    await nc.close()


async def test_a_bad_message_stops_the_batch_before_anything_is_sent(nats_server: NatsServer) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, NAMES)
    before = (await js.stream_info(NAMES.stream)).state.messages
    good = BatchMsg(NAMES.out(0, "ok"), b"ok")
    with pytest.raises(ValueError, match="line break"):
        await publish_atomic(nc, [good, BatchMsg(NAMES.out(0, "bad"), b"x", {"Nats-Msg-Id": "a\r\nb"}), good])
    with pytest.raises(nats.errors.MaxPayloadError):
        await publish_atomic(nc, [BatchMsg(NAMES.out(0, "big"), b"x" * (nc.max_payload + 1)), good])
    await publish_atomic(nc, [good])  # the connection still works, and only this one was stored
    assert (await js.stream_info(NAMES.stream)).state.messages == before + 1
    await nc.close()


@pytest.mark.parametrize("dropped_attempts", [1, 2, 3], ids=["once", "twice", "every-time"])
async def test_a_batch_the_server_reports_incomplete_is_sent_again(
        nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, dropped_attempts: int) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, NAMES)
    before = (await js.stream_info(NAMES.stream)).state.messages
    attempts: list[str] = []

    def lossy_frame(m: BatchMsg, batch_id: bytes, seq: int) -> bytes:
        if seq == 1:
            attempts.append(batch_id.decode())
        if seq == 2 and len(attempts) <= dropped_attempts:
            return b""  # lost on the way: the server sees a gap and drops the batch
        return batch_frame(m, batch_id, seq)

    monkeypatch.setattr(jetstream, "batch_frame", lossy_frame)
    msgs = [BatchMsg(NAMES.out(0, "r"), f"{i}".encode(), {"Nats-Msg-Id": f"r:{i}"}) for i in range(5)]
    if dropped_attempts >= jetstream.BATCH_ATTEMPTS:
        with pytest.raises(BatchError, match="incomplete"):
            await publish_atomic(nc, msgs)
        stored: list[bytes] = []
    else:
        last = await publish_atomic(nc, msgs)
        stored = [(await js.get_msg(NAMES.stream, s)).data for s in range(last - 4, last + 1)]
    assert len(attempts) == min(dropped_attempts + 1, jetstream.BATCH_ATTEMPTS)
    assert len(set(attempts)) == len(attempts), "each attempt has a batch id of its own"
    assert stored == ([m.payload for m in msgs] if stored else [])
    assert (await js.stream_info(NAMES.stream)).state.messages == before + len(stored)
    await nc.close()
