"""JetStream plumbing: stream provisioning, atomic batch publish, last-message reads."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from pipeline.foundation.runtime.natsauth import connect_options
from pipeline.foundation.runtime.natsclient import Client
from pipeline.foundation.runtime.subjects import StreamNames
from pipeline.foundation.runtime.wire import (
    MAX_BATCH,
    MAX_SUBJECT,
    UNSAFE_CHARS,
    BatchMsg,
    header_lines,
    malformed,
    oversized,
)

__all__ = [
    "BatchError",
    "DeploymentMismatch",
    "PartitionCountMismatch",
    "TooLarge",
    "Unpublishable",
    "batch_frame",
    "connect",
    "ensure_deployment",
    "ensure_partitions",
    "ensure_stream",
    "hpub_frame",
    "last_message",
    "one_per_subject",
    "publish_atomic",
    "retry_transient",
]

log = logging.getLogger("tocsin.jetstream")

FENCE_ERROR = 10071  # "wrong last sequence": the expected-last-subject-sequence check failed
DUPLICATE_IN_BATCH = 10201
INCOMPLETE_BATCH = 10176  # the server dropped the batch before its commit: nothing of it was stored
BATCH_ATTEMPTS = 3  # sends of a batch the server reports incomplete


T = TypeVar("T")


async def retry_transient(what: str, fn: Callable[[], Awaitable[T]], *, timeout: float = 60.0) -> T:
    """Run ``fn`` until it succeeds, retrying NATS errors that pass (a cluster electing its
    leaders, a server restarting) with backoff, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return await fn()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            if isinstance(exc, PartitionCountMismatch) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %r; retrying in %.1fs", what, exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def connect(url: str, name: str = "tocsin") -> NATS:
    """Connect with reconnects forever (a restarting server is a pause, not a crash).

    ``url`` may list several servers separated by commas (a cluster's members).
    """
    servers, auth = connect_options(url)  # credentials and TLS (pipeline.foundation.runtime.natsauth)
    nc = Client()  # nats-py's client with cheaper header parsing (see pipeline.foundation.runtime.natsclient)
    # reconnect_time_wait is annotated int in nats-py but used as seconds (asyncio.sleep): 0.5 works, as it
    # did through nats.connect(**options), which mypy did not check.
    await nc.connect(servers=servers, name=name, max_reconnect_attempts=-1, **auth,
                     reconnect_time_wait=0.5,  # type: ignore[arg-type]
                     connect_timeout=5, allow_reconnect=True, pending_size=64 * 1024 * 1024)
    return nc


class BatchError(Exception):
    """The server (or, :class:`TooLarge`, the client) refused an atomic batch; nothing of it was stored."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"atomic batch refused: {description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description

    @property
    def fenced(self) -> bool:
        """Another owner committed since our last commit: we no longer own the partition."""
        return self.err_code == FENCE_ERROR

    @property
    def deterministic(self) -> bool:
        """Sending the same messages again would be refused again (a 4xx that is no fence)."""
        return 400 <= self.code < 500 and not self.fenced and self.err_code != INCOMPLETE_BATCH


class Unpublishable(BatchError, ValueError):
    """A message the server would refuse, or close the connection for (a line break in a
    header, a subject over its control line); refused before anything was sent."""

    def __init__(self, description: str, code: int = 400) -> None:
        BatchError.__init__(self, code, 0, description)

    def __str__(self) -> str:
        return Exception.__str__(self)


class TooLarge(Unpublishable, nats.errors.MaxPayloadError):
    """A message over the server's max_payload (or a commit over :data:`MAX_BATCH_BYTES`).
    (Also a ``MaxPayloadError``, what nats-py raises.)"""

    def __init__(self, description: str) -> None:
        super().__init__(description, 413)

    def __str__(self) -> str:
        return Exception.__str__(self)


def _check(m: BatchMsg, max_payload: int) -> None:
    """Refuse a message the server would refuse or close the connection for (a message over
    max_payload, a subject over the control line, a line break)."""
    if problem := malformed(m):
        raise Unpublishable(problem)
    if problem := oversized(m, max_payload):
        raise TooLarge(problem)




def hpub_frame(subject: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The client protocol's ``HPUB`` of one message, what ``nc.publish`` sends.

    Subjects and headers here are Tocsin's own, but a header value may carry user text (a
    group key): a line break would split the frame, so it is refused, not cleaned.
    """
    if not subject or not UNSAFE_CHARS.isdisjoint(subject):
        raise ValueError(f"invalid subject {subject!r}")
    text = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if text.count("\r") != len(headers) or text.count("\n") != len(headers):
        raise ValueError(f"a header of {subject} holds a line break: {headers!r}")
    hdr = b"NATS/1.0\r\n" + text.encode() + b"\r\n"
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), len(hdr), len(hdr) + len(payload), hdr, payload)


def batch_frame(m: BatchMsg, batch_id: bytes, seq: int) -> bytes:
    """The ``HPUB`` of message ``seq`` (not the commit) of batch ``batch_id``: the batch's headers,
    then ``m``'s, as :func:`hpub_frame` of them would be, byte for byte, made from ``m.lines``
    when it has them (a stage's outputs and state values do). ``ValueError`` as hpub_frame's."""
    lines = m.lines
    if lines is None:
        lines = header_lines(m.headers)
    subject = m.subject
    # (a printable subject without a space has none of UNSAFE_CHARS; any other is checked there)
    if lines is None or not subject or not subject.isprintable() or " " in subject:
        hdrs = {"Nats-Batch-Id": batch_id.decode(), "Nats-Batch-Sequence": str(seq)}
        if m.headers:
            hdrs.update(m.headers)
        return hpub_frame(subject, hdrs, m.payload)
    hdr = b"NATS/1.0\r\nNats-Batch-Id: %s\r\nNats-Batch-Sequence: %d\r\n%s\r\n" % (batch_id, seq, lines)
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), len(hdr), len(hdr) + len(m.payload), hdr, m.payload)


async def publish_atomic(nc: NATS, msgs: Sequence[BatchMsg], timeout: float = 10.0) -> int:
    """Publish ``msgs`` as one atomic batch; return the stream sequence of the last one.

    nats-py has no helper: the batch is ordinary publishes with ``Nats-Batch-*`` headers,
    only the commit message asks for a reply (ADR-50). The messages before the commit go out
    as one write of ready-made frames: ``nc.publish`` per message was a tenth of a stage's
    CPU (headers re-validated, a flush kicked, per message). While the connection is down
    they go through ``nc.publish``, which knows how much it may buffer. A message over the
    server's max_payload (headers included) or with a subject over its control line is
    refused first (:class:`TooLarge`), for the server would close the shared connection.

    A batch the server reports incomplete (it dropped it before the commit: a staging store
    it could not create, a server restart) stored nothing, so it is sent again under a new
    id, up to :data:`BATCH_ATTEMPTS` times. Seen with batches staged in /dev/shm only, about
    once in 10,000 batches of 1,000 messages committed back to back; the cause is not known.
    """
    if not msgs:
        raise ValueError("empty batch")
    if len(msgs) > MAX_BATCH:
        raise ValueError(f"batch of {len(msgs)} messages is over the limit of {MAX_BATCH}")
    for _ in range(BATCH_ATTEMPTS - 1):
        try:
            return await _publish_batch(nc, msgs, timeout)
        except BatchError as exc:
            if exc.err_code != INCOMPLETE_BATCH:
                raise
            log.warning("atomic batch of %d messages to %s reported incomplete; sending it again",
                        len(msgs), msgs[0].subject)
    return await _publish_batch(nc, msgs, timeout)


async def _publish_batch(nc: NATS, msgs: Sequence[BatchMsg], timeout: float) -> int:
    batch_id = os.urandom(8).hex()  # unique among batches in flight; stored with every message
    last = len(msgs)
    framed = nc.is_connected
    max_payload = nc.max_payload or 1024 * 1024
    # Every message is checked before anything is sent: the commit's and, without frames, all;
    # a frame by its length (it holds the headers and payload the server counts, and more).
    _check(msgs[-1], max_payload)
    if not framed:
        for m in msgs:
            _check(m, max_payload)
    frames: list[bytes] = []
    if framed:
        bid = batch_id.encode()
        for i, m in enumerate(msgs[:-1], 1):
            try:
                frame = batch_frame(m, bid, i)
            except ValueError:
                _check(m, max_payload)  # names the problem (without the headers' values)
                raise
            if len(frame) > max_payload or len(m.subject) > MAX_SUBJECT:
                _check(m, max_payload)
            frames.append(frame)
    else:
        for i, m in enumerate(msgs[:-1], 1):
            hdrs = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
            if m.headers:
                hdrs.update(m.headers)
            await nc.publish(m.subject, m.payload, headers=hdrs)
    if frames:
        await nc._send_command(b"".join(frames))  # flushed with the commit's publish below
    m = msgs[-1]
    hdrs = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(last)}
    if m.headers:
        hdrs.update(m.headers)
    hdrs["Nats-Batch-Commit"] = "1"
    reply = await nc.request(m.subject, m.payload, timeout=timeout, headers=hdrs)
    ack = json.loads(reply.data)
    if "error" in ack:
        err = ack["error"]
        raise BatchError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", "")))
    return int(ack["seq"])


async def ensure_stream(js: JetStreamContext, names: StreamNames, *, replicas: int = 1,
                        duplicate_window: float = 120.0, subjects: Sequence[str] = ()) -> None:
    """Create the stream or bring its configuration up to date (idempotent).

    ``subjects``: those it holds (default ``names.all``). An update never drops a subject the
    stream has: a chain's stream (``TOCSIN_SENDS`` holding the chained stages' subjects too, see
    :mod:`pipeline.application.graph`) stays whole when the notifier ensures it with its own subject only."""
    wanted = list(subjects) or [names.all]
    cfg = StreamConfig(
        name=names.stream,
        subjects=wanted,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        allow_rollup_hdrs=True,
        allow_direct=True,
        allow_msg_ttl=True,
        allow_atomic=True,
        max_msgs_per_subject=1 if names.one_per_subject else -1,
    )
    try:
        info = await js.stream_info(names.stream)
    except NotFoundError:
        await js.add_stream(cfg)
        return
    # The per-subject limit only ever comes with a new stream: set on a stream of the older
    # layout, it would trim the outputs that share a subject (history, or not yet consumed).
    cfg.max_msgs_per_subject = info.config.max_msgs_per_subject
    have = list(info.config.subjects or [])
    cfg.subjects = have + [x for x in wanted if x not in have]
    await js.update_stream(cfg)


async def one_per_subject(js: JetStreamContext, stream: str) -> bool:
    """Whether ``stream`` keeps one message per subject (a state key's new value then replaces
    the old one by itself; otherwise it is written with ``Nats-Rollup: sub``)."""
    info = await js.stream_info(stream)
    return info.config.max_msgs_per_subject == 1


async def last_message(js: JetStreamContext, stream: str, subject: str, *,
                       leader: bool = False) -> tuple[int, bytes] | None:
    """(stream sequence, data) of the last message of ``subject``, or None.

    By default a direct get, which any replica of an R3 stream answers, a lagging follower
    included; ``leader=True`` asks the stream leader, for a read a decision depends on.
    """
    try:
        raw = await js.get_last_msg(stream, subject, direct=not leader)
    except NotFoundError:
        return None
    return int(raw.seq or 0), bytes(raw.data or b"")


class _Meta(msgspec.Struct):
    partitions: int


class PartitionCountMismatch(RuntimeError):
    pass


class DeploymentMismatch(PartitionCountMismatch):
    """The streams were made for the other deployment (``chained`` or ``separate``)."""


class _Deployment(msgspec.Struct):
    deployment: str


async def ensure_deployment(js: JetStreamContext, nc: NATS, deployment: str, *, legacy: Sequence[str] = (),
                            replicas: int = 1) -> None:
    """Record the deployment (``chained`` or ``separate``, :mod:`pipeline.application.graph`) once, like P;
    refuse to start with the other one against the same streams: their state and outputs live
    in other streams (one per stage, or one per chain), and nothing moves them.

    ``legacy``: streams that exist only in the ``separate`` deployment; when no deployment is
    recorded yet and one of them exists, the streams are those of a build that had no choice:
    ``separate``."""
    meta = StreamNames("meta")
    try:
        await js.stream_info(meta.stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(name=meta.stream, subjects=[meta.all], storage=StorageType.FILE,
                                         num_replicas=replicas, max_msgs_per_subject=1, allow_direct=True))
    subject = f"{meta.prefix}.deployment"
    existing = await last_message(js, meta.stream, subject)
    found = msgspec.json.decode(existing[1], type=_Deployment).deployment if existing is not None else None
    if found is None:
        for stream in legacy:
            try:
                await js.stream_info(stream)
            except NotFoundError:
                continue
            found = "separate"
            break
    if found is not None and found != deployment:
        raise DeploymentMismatch(
            f"the streams were created for the {found!r} deployment but this process was started with "
            f"{deployment!r}; start it with --deployment {found} (the stages' state and outputs live in "
            f"other streams in each deployment; to switch, start from new streams: see docs/architecture.md)")
    if existing is not None:
        return
    reply = await nc.request(subject, msgspec.json.encode(_Deployment(found or deployment)), timeout=5,
                             headers={"Nats-Expected-Last-Subject-Sequence": "0"})
    ack: dict[str, Any] = json.loads(reply.data)
    if "error" in ack:  # another process recorded it first: check against that
        await ensure_deployment(js, nc, deployment, legacy=legacy, replicas=replicas)


async def ensure_partitions(js: JetStreamContext, nc: NATS, partitions: int, *, replicas: int = 1) -> None:
    """Record the partition count P once; refuse to start with another P against the same streams."""
    meta = StreamNames("meta")
    try:
        await js.stream_info(meta.stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(name=meta.stream, subjects=[meta.all], storage=StorageType.FILE,
                                         num_replicas=replicas, max_msgs_per_subject=1, allow_direct=True))
    subject = f"{meta.prefix}.partitions"
    existing = await last_message(js, meta.stream, subject)
    if existing is not None:
        found = msgspec.json.decode(existing[1], type=_Meta).partitions
        if found != partitions:
            raise PartitionCountMismatch(
                f"the streams were created with {found} partitions but this process was started with "
                f"{partitions}; start it with --partitions {found} (changing P needs a migration, "
                "see docs/deploy.md)")
        return
    # Expected-last-subject-sequence 0: only the first process to start records P.
    reply = await nc.request(subject, msgspec.json.encode(_Meta(partitions)), timeout=5,
                             headers={"Nats-Expected-Last-Subject-Sequence": "0"})
    ack: dict[str, Any] = json.loads(reply.data)
    if "error" in ack:
        await ensure_partitions(js, nc, partitions, replicas=replicas)
