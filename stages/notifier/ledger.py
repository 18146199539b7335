"""The idempotency ledger of hop C, and the attempt log the API reads.

Stream ``TOCSIN_LEDGER`` (subjects ``tocsin.ledger.>``, rollup, direct get) holds:

- ``tocsin.ledger.send.<org>.<group>.<id>``: the last :class:`LedgerRecord` of one send
  (org and id token-encoded, ``<group>`` a hash of the group key; older records rolled up).
  It is written ``sending`` before the first attempt (compare-and-set on the subject's last
  sequence, so two workers never both claim a new send), updated after each failed attempt
  (and marked ``giving_up`` when retrying ends, so a crash during the hand-off redoes the
  hand-off, not the attempts), and ends ``sent``, ``fallback`` (the integration gave up and
  the notification was handed to the fallback receiver) or ``failed`` (given up,
  dead-lettered). The ``sent`` record is written without waiting for the server's
  confirmation (see :meth:`Ledger.write_unconfirmed`). A redelivered request whose record is
  final is acknowledged without sending; one still ``sending`` (its worker died during the
  request) is sent again, with the same idempotency key.
- ``tocsin.ledger.attempts.<org>.<group>``: one :class:`AttemptRecord` per failed attempt and
  per give-up, for :func:`attempts`. A successful attempt has no entry of its own: its
  ``sent`` record, under the same organisation and group, is its entry (so a send that
  succeeds writes twice: the claim, then ``sent``).

Records of the layout before (``tocsin.ledger.send.<id>``, no organisation or group) are
still read while any is kept (:meth:`Ledger.detect_legacy`), at the cost of a read before
each claim.

Records are kept ``ledger_max_age`` (default 7 days).

Stale reads. :meth:`Ledger.read` is a direct get, which on a replicated stream any replica
may answer, possibly one that lags. Workers decide with :meth:`Ledger.read_latest`, answered
by the stream leader, and still never send on a read alone: every send is preceded by a
write that compares the subject's last sequence with the one read, so a record that changed
since (however it was read) makes the claim fail. Once a worker holds a send, the records it
writes after a failed attempt are compare-and-sets too, so a worker that lost the send
(another took it over) stops instead of writing ``sending`` over a final record: a final
record is never followed by a non-final one, which is why a final record read from any
replica can be trusted.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import hashlib
import json
from collections import deque

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from pipeline.foundation.runtime.jetstream import last_message
from pipeline.foundation.runtime.subjects import StreamNames, token

from .records import AttemptRecord, LedgerRecord, sent_entry

__all__ = [
    "LEDGER",
    "Ledger",
    "LedgerError",
    "attempts",
    "attempts_subject",
    "ensure_ledger",
    "legacy_send_subject",
    "send_subject",
]

LEDGER = StreamNames("ledger")
_WRONG_LAST_SEQUENCE = 10071
_ROLLUP = {"Nats-Rollup": "sub"}


class _PubAck(msgspec.Struct):
    seq: int = 0
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_record_decoder = msgspec.json.Decoder(LedgerRecord)
_attempt_decoder = msgspec.json.Decoder(AttemptRecord)


@functools.lru_cache(maxsize=4096)  # a group is notified again and again: hash its key once
def _group_token(group_key: str) -> str:
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)  # a send's subject is needed for its claim and again for its end
def send_subject(org: str, group_key: str, send_id: str) -> str:
    """A send's record subject: under its organisation and group, so that :func:`attempts`
    finds the ``sent`` records (the successful attempts) beside the group's attempt log."""
    return f"{LEDGER.prefix}.send.{token(org)}.{_group_token(group_key)}.{token(send_id)}"


def legacy_send_subject(send_id: str) -> str:
    """Where the layout before kept a send's record (read only, see :meth:`Ledger.detect_legacy`)."""
    return f"{LEDGER.prefix}.send.{token(send_id)}"


def _record_subject(record: LedgerRecord) -> str:
    return send_subject(record.org, record.group_key, record.id)


@functools.lru_cache(maxsize=4096)  # a group is notified again and again: hash its key once
def attempts_subject(org: str, group_key: str) -> str:
    return f"{LEDGER.prefix}.attempts.{token(org)}.{_group_token(group_key)}"


async def ensure_ledger(js: JetStreamContext, *, replicas: int = 1, max_age: float = 7 * 86400.0) -> None:
    """Create the ledger stream or bring its configuration up to date (idempotent)."""
    cfg = StreamConfig(name=LEDGER.stream, subjects=[LEDGER.all], storage=StorageType.FILE, num_replicas=replicas,
                       max_age=max_age, allow_rollup_hdrs=True, allow_direct=True, duplicate_window=60.0)
    try:
        await js.stream_info(LEDGER.stream)
    except NotFoundError:
        await js.add_stream(cfg)
        return
    await js.update_stream(cfg)


class LedgerError(RuntimeError):
    pass


class _Replies:
    """Request and reply over one inbox subscription.

    nats-py's ``request`` costs, per call, a random token (a system call), a second future
    and a timer of its own (about twice the CPU of this, measured with 64 in flight); here a
    counter names each reply and one timer serves every deadline.
    """

    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = ""
        self._lock = asyncio.Lock()
        self._waiting: dict[str, tuple[float, asyncio.Future[Msg]]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    async def _subscribe(self) -> None:
        async with self._lock:
            if not self._prefix:
                prefix = self._nc.new_inbox() + "."
                await self._nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(msg)

    async def request(self, subject: str, payload: bytes, headers: dict[str, str]) -> Msg:
        if not self._prefix:
            await self._subscribe()
        self._count += 1
        name = str(self._count)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self._waiting[name] = (loop.time() + self._timeout, fut)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + name, headers=headers)
            if self._timer is None:
                self._timer = loop.call_later(self._timeout, self._expire, loop)
            return await fut
        finally:
            self._waiting.pop(name, None)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        first: float | None = None
        for name, (deadline, fut) in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[name]
                if not fut.done():
                    fut.set_exception(nats.errors.TimeoutError())
            elif first is None or deadline < first:
                first = deadline
        if first is not None:
            self._timer = loop.call_at(first, self._expire, loop)


class Ledger:
    """Reads and writes ledger records and attempt logs."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, timeout: float = 10.0) -> None:
        self._nc = nc
        self._js = js
        self._timeout = timeout
        self._replies = _Replies(nc, timeout)
        # records of the layout before are kept (see detect_legacy): read them too
        self.legacy = False

    async def detect_legacy(self) -> bool:
        """Whether the ledger still keeps records of the layout before (``send.<id>``, one
        token): then :meth:`read` falls back to them and the worker reads before every claim,
        so that a send recorded there is not made again. They expire after ``ledger_max_age``;
        a worker started after that reads no more."""
        self.legacy = await last_message(self._js, LEDGER.stream, f"{LEDGER.prefix}.send.*", leader=True) is not None
        return self.legacy

    async def read(self, send_id: str, *, org: str | None = None, group_key: str | None = None,
                   leader: bool = False) -> tuple[int, LedgerRecord] | None:
        """(subject sequence to compare against, record) of a send, or None when it has none.

        A direct get: cheap, but any replica may answer, one that lags included. Decide with
        :meth:`read_latest`. Without ``org`` and ``group_key`` the send is looked up by its id
        alone (a wildcard get, which scans: for tools and tests, not for the worker). A record
        of the layout before has no subject to compare against on the new one: it comes with 0.
        """
        if org is None or group_key is None:
            subject = f"{LEDGER.prefix}.send.*.*.{token(send_id)}"
        else:
            subject = send_subject(org, group_key, send_id)
        got = await last_message(self._js, LEDGER.stream, subject, leader=leader)
        if got is None and self.legacy:
            got = await last_message(self._js, LEDGER.stream, legacy_send_subject(send_id), leader=leader)
            if got is not None:
                got = (0, got[1])
        if got is None:
            return None
        seq, data = got
        return seq, _record_decoder.decode(data)

    async def read_latest(self, send_id: str, *, org: str | None = None,
                          group_key: str | None = None) -> tuple[int, LedgerRecord] | None:
        """As :meth:`read`, answered by the stream leader (``STREAM.MSG.GET``): a record
        written and confirmed before the call is seen."""
        return await self.read(send_id, org=org, group_key=group_key, leader=True)

    async def write(self, record: LedgerRecord, *, expect: int | None = None) -> int | None:
        """Store ``record`` as the send's last; return its sequence.

        With ``expect`` the write happens only if the send's last record has that sequence
        (0: it has none) and ``None`` is returned when it does not.
        """
        headers = {"Nats-Rollup": "sub"}
        if expect is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expect)
        reply = await self._replies.request(_record_subject(record), msgspec.json.encode(record), headers)
        if reply.headers and reply.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError
        ack = _ack_decoder.decode(reply.data)
        if ack.error is not None:
            if ack.error.get("err_code") == _WRONG_LAST_SEQUENCE:
                return None
            raise LedgerError(f"ledger write refused: {json.dumps(ack.error)}")
        return ack.seq

    async def write_unconfirmed(self, record: LedgerRecord) -> None:
        """Store ``record`` without waiting for the server's confirmation.

        For ``sent`` after a successful send, followed by the request's ack: if the record
        were lost (the server failing at that moment) the ack most likely is too, and the
        redelivered request is sent again with the same idempotency key; waiting for the
        confirmation would not close that window (the server does not fsync each message)
        and would cost a round trip per notification.

        Concurrent sends' writes are batched already: nats-py queues each publish (and each
        claim's request) and its flusher task writes all that is queued in one socket write.
        """
        await self._nc.publish(_record_subject(record), msgspec.json.encode(record), headers=_ROLLUP)

    async def log(self, record: AttemptRecord) -> None:
        """Append to the attempt log, without waiting for the server's confirmation: the log
        is for reading, the send records carry the guarantees (a log entry can be lost if
        the server fails at that moment)."""
        await self._nc.publish(attempts_subject(record.org, record.group_key), msgspec.json.encode(record))


async def attempts(js: JetStreamContext, org: str, *, group_key: str | None = None, fingerprint: str | None = None,
                   since: float | None = None, limit: int = 100) -> list[AttemptRecord]:
    """The last ``limit`` attempts of an organisation's group, oldest first.

    With ``group_key`` the group's own log is read; with only ``fingerprint`` every log of
    the organisation is scanned for attempts that carried that alert (pass ``since``, Unix
    seconds, to bound the scan). Both given: the group's attempts carrying the alert. The
    successful attempts are the ``sent`` records of the group's sends, read alongside.
    """
    if group_key is None and fingerprint is None:
        raise ValueError("give a group_key or a fingerprint")
    if group_key is not None:
        group = _group_token(group_key)
        subjects = [attempts_subject(org, group_key), f"{LEDGER.prefix}.send.{token(org)}.{group}.*"]
    else:
        subjects = [f"{LEDGER.prefix}.attempts.{token(org)}.>", f"{LEDGER.prefix}.send.{token(org)}.*.*"]
    sends = f"{LEDGER.prefix}.send."
    if since is not None:
        start = _dt.datetime.fromtimestamp(since, _dt.UTC).isoformat().replace("+00:00", "Z")
        policy = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": start}
    else:
        policy = {"deliver_policy": DeliverPolicy.ALL}
    try:
        psub = await js.pull_subscribe("", durable=None, stream=LEDGER.stream, config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, inactive_threshold=10.0, mem_storage=True, num_replicas=1,
            filter_subjects=subjects, **policy))  # type: ignore[arg-type]
    except NotFoundError:
        return []
    out: deque[AttemptRecord] = deque(maxlen=limit)
    try:
        info = await psub.consumer_info()
        pending = int(info.num_pending or 0)
        seen = 0
        while seen < pending:
            for m in await psub.fetch(min(1000, pending - seen), timeout=5):
                seen += 1
                try:
                    if m.subject.startswith(sends):
                        sent = _record_decoder.decode(m.data)
                        if sent.state != "sent":
                            continue  # in flight (its attempts are logged when they fail) or given up (logged)
                        rec = sent_entry(sent)
                    else:
                        rec = _attempt_decoder.decode(m.data)
                except msgspec.ValidationError:
                    continue
                if fingerprint is None or fingerprint in rec.fingerprints:
                    out.append(rec)
    finally:
        await psub.unsubscribe()
    return list(out)
