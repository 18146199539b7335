"""Delivery count and stream sequence read from a JetStream message's ack subject."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from pipeline.foundation.runtime.workqueue import num_delivered, stream_seq


def _msg(reply: str) -> Msg:
    return Msg(_client=None, subject="tocsin.sends.out.0.send", reply=reply, data=b"")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "delivered", "seq"),
    [
        ("$JS.ACK.TOCSIN_SENDS.notifier.3.1207.1300.1795347210435046202.42", 3, 1207),
        ("$JS.ACK.hub.ACCHASH.TOCSIN_SENDS.notifier.1.99.7.1795347210435046202.0", 1, 99),
        ("$JS.ACK.hub.ACCHASH.TOCSIN_SENDS.notifier.5.12.30.1795347210435046202.0.a1b2", 5, 12),
        ("", 1, 0),
        ("_INBOX.abc", 1, 0),
    ],
    ids=["v1", "v2-domain", "v2-random-token", "no-reply", "not-an-ack"],
)
def test_ack_subject_fields(reply: str, delivered: int, seq: int) -> None:
    msg = _msg(reply)
    assert (num_delivered(msg), stream_seq(msg)) == (delivered, seq)


def test_agrees_with_nats_py_metadata() -> None:
    msg = _msg("$JS.ACK.TOCSIN_SENDS.notifier.4.555.600.1795347210435046202.9")
    assert (num_delivered(msg), stream_seq(msg)) == (msg.metadata.num_delivered, msg.metadata.sequence.stream)
