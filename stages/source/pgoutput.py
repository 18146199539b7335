"""Decoder for pgoutput logical replication messages (protocol versions 1 and 2, text values).

The input is the payload of one XLogData message: the bytes psycopg 3's replication
cursor (or ``START_REPLICATION ... LOGICAL``) yields per change. The layout follows
PostgreSQL's "Logical Replication Message Formats": big-endian integers, NUL-terminated
strings, and tuple data where each column is ``n`` (NULL), ``u`` (unchanged TOASTed
value, not sent), ``t`` (text) or ``b`` (binary).

Everything here is pure. :func:`decode_message` turns bytes into a dataclass;
:class:`RelationCache` remembers the latest Relation message per relation id (a new one
replaces the old when the table changes) and turns tuple data into ``{column: value}``
with values converted by type OID (:func:`convert_text`). :class:`PgOutputDecoder` does
both and tracks whether it is inside a streamed-transaction block, where protocol 2 puts
a transaction id in front of data messages.

Text values are decoded as UTF-8 (the replication connection must use
``client_encoding=UTF8``) and must be in Postgres' default output styles: the connection
should set ``DateStyle=ISO`` (the default) and ``bytea_output=hex`` (``escape`` is read
too). Values Python cannot represent (``infinity`` timestamps, BC or year > 9999 dates)
stay as their text.
"""

from __future__ import annotations

import enum
import re
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeAlias

import msgspec

from stages.source.limits import MAX_JSON_DEPTH, json_too_deep

__all__ = [
    "PG_EPOCH",
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "JsonDepthError",
    "LogicalMessage",
    "Origin",
    "PgOutputDecoder",
    "PgOutputError",
    "PgOutputMessage",
    "Relation",
    "RelationCache",
    "RowChange",
    "StreamAbort",
    "StreamCommit",
    "StreamStart",
    "StreamStop",
    "Truncate",
    "TupleValue",
    "Type",
    "TypeOid",
    "Unchanged",
    "Update",
    "convert_text",
    "convert_value",
    "decode_message",
    "format_lsn",
    "parse_lsn",
    "pg_timestamp",
    "to_unix",
]


class PgOutputError(ValueError):
    """Malformed or unexpected pgoutput bytes, or a value that cannot be read."""


class JsonDepthError(PgOutputError):
    """A json/jsonb value nested deeper than ``limits.MAX_JSON_DEPTH``: not parsed at all."""


class Unchanged(enum.Enum):
    """Type of :data:`UNCHANGED`: a TOASTed column the update did not touch, so its value was not sent."""

    UNCHANGED = "u"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged.UNCHANGED

# A column in tuple data as sent: None (NULL), UNCHANGED, str (text format), bytes (binary format).
TupleValue: TypeAlias = Unchanged | str | bytes | None

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_LSN = (1 << 64) - 1


class TypeOid(enum.IntEnum):
    """Built-in type OIDs (fixed in pg_type.dat) whose text output is converted."""

    BOOL = 16
    BYTEA = 17
    CHAR = 18
    NAME = 19
    INT8 = 20
    INT2 = 21
    INT4 = 23
    TEXT = 25
    OID = 26
    JSON = 114
    FLOAT4 = 700
    FLOAT8 = 701
    BPCHAR = 1042
    VARCHAR = 1043
    DATE = 1082
    TIMESTAMP = 1114
    TIMESTAMPTZ = 1184
    NUMERIC = 1700
    UUID = 2950
    JSONB = 3802


# ---------------------------------------------------------------------------- LSNs and times

_LSN_RE = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def format_lsn(lsn: int) -> str:
    """``0x16B374D848`` -> ``"16/B374D848"``: Postgres' text form (two hex halves, no padding)."""
    if not 0 <= lsn <= _MAX_LSN:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> int; accepts either case and zero-padded halves."""
    m = _LSN_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def pg_timestamp(micros: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware UTC datetime."""
    try:
        return PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise PgOutputError(f"timestamp out of range: {micros} us since 2000-01-01") from None


def to_unix(value: datetime | date) -> float:
    """Unix seconds of a datetime (naive ones, i.e. ``timestamp`` columns, are taken as UTC) or a date."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Integer microseconds first: exact, then one rounding to float.
    return ((value - _UNIX_EPOCH) // _MICROSECOND) / 1_000_000


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # LSN of the commit record: the transaction's position
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # LSN just past the commit record: what to report as flushed
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int  # LSN of the commit on the origin server
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    flags: int  # 1: part of the replica identity key
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    namespace: str  # "" means pg_catalog
    name: str
    replica_identity: str  # pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[Column, ...]
    xid: int | None = None  # only inside a streamed transaction

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace or 'pg_catalog'}.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True, slots=True)
class Type:
    type_oid: int
    namespace: str
    name: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: tuple[TupleValue, ...]
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    new: tuple[TupleValue, ...]
    # Old row: "K" key columns only (key changed, REPLICA IDENTITY DEFAULT/INDEX), "O" all
    # columns (REPLICA IDENTITY FULL), None when not sent.
    old_kind: Literal["K", "O"] | None = None
    old: tuple[TupleValue, ...] | None = None
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: Literal["K", "O"]
    old: tuple[TupleValue, ...]
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    options: int  # bit 1: CASCADE, bit 2: RESTART IDENTITY
    xid: int | None = None

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A ``pg_logical_emit_message`` record (sent when the ``messages`` option is on)."""

    flags: int  # 1: transactional
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None

    @property
    def transactional(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int
    subxid: int
    abort_lsn: int | None = None  # protocol 4 parallel streaming only
    abort_ts: datetime | None = None


PgOutputMessage: TypeAlias = (
    Begin
    | Commit
    | Origin
    | Relation
    | Type
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
)


# ---------------------------------------------------------------------------- byte reader

_U8 = struct.Struct(">B")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")


class _Reader:
    """Reads big-endian fields from a buffer; every overrun is a :class:`PgOutputError`."""

    __slots__ = ("buf", "kind", "pos")

    def __init__(self, buf: bytes, kind: str) -> None:
        self.buf = buf
        self.pos = 0
        self.kind = kind

    def _unpack(self, fmt: struct.Struct, what: str) -> int:
        end = self.pos + fmt.size
        if end > len(self.buf):
            raise PgOutputError(f"{self.kind} message truncated reading {what} at byte {self.pos}")
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos = end
        return int(value)

    def u8(self, what: str) -> int:
        return self._unpack(_U8, what)

    def i16(self, what: str) -> int:
        return self._unpack(_I16, what)

    def u32(self, what: str) -> int:
        return self._unpack(_U32, what)

    def i32(self, what: str) -> int:
        return self._unpack(_I32, what)

    def u64(self, what: str) -> int:
        return self._unpack(_U64, what)

    def i64(self, what: str) -> int:
        return self._unpack(_I64, what)

    def count(self, what: str) -> int:
        n = self.i16(what)
        if n < 0:
            raise PgOutputError(f"{self.kind} message has a negative {what}: {n}")
        return n

    def take(self, n: int, what: str) -> bytes:
        if n < 0:
            raise PgOutputError(f"{self.kind} message has a negative length for {what}: {n}")
        end = self.pos + n
        if end > len(self.buf):
            raise PgOutputError(
                f"{self.kind} message truncated reading {what}: "
                f"{n} bytes wanted, {len(self.buf) - self.pos} left"
            )
        data = self.buf[self.pos : end]
        self.pos = end
        return data

    def cstring(self, what: str) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise PgOutputError(f"{self.kind} message truncated: {what} has no terminating NUL")
        raw = self.buf[self.pos : end]
        self.pos = end + 1
        return _utf8(raw, f"{self.kind} {what}")

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise PgOutputError(
                f"{self.kind} message has {len(self.buf) - self.pos} unexpected trailing bytes "
                f"at byte {self.pos}"
            )


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PgOutputError(f"{what} is not valid UTF-8: {exc}") from None


# ---------------------------------------------------------------------------- decoding


def _tuple(r: _Reader) -> tuple[TupleValue, ...]:
    n = r.count("column count")
    values: list[TupleValue] = []
    for i in range(n):
        kind = r.u8(f"kind of column {i}")
        if kind == 0x6E:  # 'n'
            values.append(None)
        elif kind == 0x75:  # 'u'
            values.append(UNCHANGED)
        elif kind == 0x74:  # 't'
            length = r.i32(f"length of column {i}")
            values.append(_utf8(r.take(length, f"column {i}"), f"{r.kind} column {i}"))
        elif kind == 0x62:  # 'b'
            length = r.i32(f"length of column {i}")
            values.append(r.take(length, f"column {i}"))
        else:
            raise PgOutputError(f"{r.kind} message: unknown tuple data kind {kind!r} for column {i}")
    return tuple(values)


def _old_kind(r: _Reader, byte: int) -> Literal["K", "O"]:
    if byte == 0x4B:
        return "K"
    if byte == 0x4F:
        return "O"
    raise PgOutputError(f"{r.kind} message: expected 'K' or 'O' before the old tuple, got {byte!r}")


def _xid(r: _Reader, in_stream: bool) -> int | None:
    return r.u32("xid") if in_stream else None


def _begin(r: _Reader, in_stream: bool) -> Begin:
    return Begin(
        final_lsn=r.u64("final LSN"), commit_ts=pg_timestamp(r.i64("commit timestamp")), xid=r.u32("xid")
    )


def _commit(r: _Reader, in_stream: bool) -> Commit:
    return Commit(
        flags=r.u8("flags"),
        commit_lsn=r.u64("commit LSN"),
        end_lsn=r.u64("end LSN"),
        commit_ts=pg_timestamp(r.i64("commit timestamp")),
    )


def _origin(r: _Reader, in_stream: bool) -> Origin:
    return Origin(commit_lsn=r.u64("origin commit LSN"), name=r.cstring("origin name"))


def _relation(r: _Reader, in_stream: bool) -> Relation:
    xid = _xid(r, in_stream)
    relation_id = r.u32("relation id")
    namespace = r.cstring("namespace")
    name = r.cstring("relation name")
    replica_identity = chr(r.u8("replica identity"))
    columns = []
    for i in range(r.count("column count")):
        columns.append(
            Column(
                flags=r.u8(f"flags of column {i}"),
                name=r.cstring(f"name of column {i}"),
                type_oid=r.u32(f"type of column {i}"),
                type_modifier=r.i32(f"type modifier of column {i}"),
            )
        )
    return Relation(relation_id, namespace, name, replica_identity, tuple(columns), xid)


def _type(r: _Reader, in_stream: bool) -> Type:
    xid = _xid(r, in_stream)
    return Type(
        type_oid=r.u32("type id"), namespace=r.cstring("namespace"), name=r.cstring("type name"), xid=xid
    )


def _insert(r: _Reader, in_stream: bool) -> Insert:
    xid = _xid(r, in_stream)
    relation_id = r.u32("relation id")
    marker = r.u8("new tuple marker")
    if marker != 0x4E:  # 'N'
        raise PgOutputError(f"Insert message: expected 'N' before the new tuple, got {marker!r}")
    return Insert(relation_id, _tuple(r), xid)


def _update(r: _Reader, in_stream: bool) -> Update:
    xid = _xid(r, in_stream)
    relation_id = r.u32("relation id")
    marker = r.u8("tuple marker")
    old_kind: Literal["K", "O"] | None = None
    old = None
    if marker != 0x4E:  # 'N' first means no old tuple
        old_kind = _old_kind(r, marker)
        old = _tuple(r)
        marker = r.u8("new tuple marker")
        if marker != 0x4E:
            raise PgOutputError(f"Update message: expected 'N' before the new tuple, got {marker!r}")
    return Update(relation_id, _tuple(r), old_kind, old, xid)


def _delete(r: _Reader, in_stream: bool) -> Delete:
    xid = _xid(r, in_stream)
    relation_id = r.u32("relation id")
    old_kind = _old_kind(r, r.u8("old tuple marker"))
    return Delete(relation_id, old_kind, _tuple(r), xid)


def _truncate(r: _Reader, in_stream: bool) -> Truncate:
    xid = _xid(r, in_stream)
    n = r.i32("relation count")
    if n < 0:
        raise PgOutputError(f"Truncate message has a negative relation count: {n}")
    options = r.u8("options")
    ids = tuple(r.u32(f"relation id {i}") for i in range(n))
    return Truncate(ids, options, xid)


def _message(r: _Reader, in_stream: bool) -> LogicalMessage:
    xid = _xid(r, in_stream)
    flags = r.u8("flags")
    lsn = r.u64("LSN")
    prefix = r.cstring("prefix")
    content = r.take(r.i32("content length"), "content")
    return LogicalMessage(flags, lsn, prefix, content, xid)


def _stream_start(r: _Reader, in_stream: bool) -> StreamStart:
    return StreamStart(xid=r.u32("xid"), first_segment=r.u8("first segment flag") == 1)


def _stream_stop(r: _Reader, in_stream: bool) -> StreamStop:
    return StreamStop()


def _stream_commit(r: _Reader, in_stream: bool) -> StreamCommit:
    return StreamCommit(
        xid=r.u32("xid"),
        flags=r.u8("flags"),
        commit_lsn=r.u64("commit LSN"),
        end_lsn=r.u64("end LSN"),
        commit_ts=pg_timestamp(r.i64("commit timestamp")),
    )


def _stream_abort(r: _Reader, in_stream: bool) -> StreamAbort:
    xid = r.u32("xid")
    subxid = r.u32("subtransaction xid")
    if r.remaining() == 0:
        return StreamAbort(xid, subxid)
    return StreamAbort(xid, subxid, r.u64("abort LSN"), pg_timestamp(r.i64("abort timestamp")))


_DECODERS: dict[int, tuple[str, Callable[[_Reader, bool], PgOutputMessage]]] = {
    ord("B"): ("Begin", _begin),
    ord("C"): ("Commit", _commit),
    ord("O"): ("Origin", _origin),
    ord("R"): ("Relation", _relation),
    ord("Y"): ("Type", _type),
    ord("I"): ("Insert", _insert),
    ord("U"): ("Update", _update),
    ord("D"): ("Delete", _delete),
    ord("T"): ("Truncate", _truncate),
    ord("M"): ("Message", _message),
    ord("S"): ("Stream Start", _stream_start),
    ord("E"): ("Stream Stop", _stream_stop),
    ord("c"): ("Stream Commit", _stream_commit),
    ord("A"): ("Stream Abort", _stream_abort),
}


def decode_message(data: bytes | bytearray | memoryview, *, in_stream: bool = False) -> PgOutputMessage:
    """Decode one pgoutput message.

    ``in_stream`` says the message sits between Stream Start and Stream Stop (protocol 2
    streaming), where Relation, Type, Insert, Update, Delete, Truncate and Message carry
    the transaction id first. Raises :class:`PgOutputError` on unknown, truncated or
    over-long input.
    """
    buf = bytes(data)
    if not buf:
        raise PgOutputError("empty pgoutput message")
    entry = _DECODERS.get(buf[0])
    if entry is None:
        raise PgOutputError(f"unknown pgoutput message type {chr(buf[0])!r} (0x{buf[0]:02x})")
    kind, decoder = entry
    r = _Reader(buf, kind)
    r.pos = 1
    msg = decoder(r, in_stream)
    r.done()
    return msg


# ---------------------------------------------------------------------------- value conversion

_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?")
_TSTZ_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?[+-]\d{2}(?::\d{2}){0,2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_BYTEA_ESCAPE_RE = re.compile(rb"\\(\\|[0-3][0-7]{2})")
_BIG_YEAR_RE = re.compile(r"\d{5,}-")
_NEEDS_ISO = "the replication connection needs DateStyle=ISO"


def _unrepresentable(text: str) -> bool:
    """``infinity``, BC and 5+ digit years are valid in Postgres but not in ``datetime``."""
    return text in ("infinity", "-infinity") or text.endswith(" BC") or _BIG_YEAR_RE.match(text) is not None


def _parse_timestamp(text: str, pattern: re.Pattern[str], kind: str) -> datetime | str:
    if _unrepresentable(text):
        return text
    if pattern.fullmatch(text) is None:
        raise PgOutputError(f"cannot read {kind} value {text!r}: {_NEEDS_ISO}")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise PgOutputError(f"cannot read {kind} value {text!r}: {exc}") from None


def _timestamptz(text: str) -> datetime | str:
    return _parse_timestamp(text, _TSTZ_RE, "timestamptz")


def _timestamp(text: str) -> datetime | str:
    return _parse_timestamp(text, _TS_RE, "timestamp")


def _date(text: str) -> date | str:
    if _unrepresentable(text):
        return text
    if _DATE_RE.fullmatch(text) is None:
        raise PgOutputError(f"cannot read date value {text!r}: {_NEEDS_ISO}")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise PgOutputError(f"cannot read date value {text!r}: {exc}") from None


def _bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise PgOutputError(f"cannot read bool value {text!r}")


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise PgOutputError(f"cannot read bytea hex value {text[:40]!r}") from None
    # bytea_output=escape: printable ASCII as is, backslash doubled, the rest as \ooo octal.
    raw = text.encode("utf-8")

    def unescape(m: re.Match[bytes]) -> bytes:
        esc = m.group(1)
        return b"\\" if esc == b"\\" else bytes([int(esc, 8)])

    out = _BYTEA_ESCAPE_RE.sub(unescape, raw)
    if b"\\" in _BYTEA_ESCAPE_RE.sub(b"", raw):
        raise PgOutputError(f"cannot read bytea escape value {text[:40]!r}")
    return out


def _numeric(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise PgOutputError(f"cannot read numeric value {text!r}") from None


def _json(text: str) -> Any:
    # Depth first: a recursive parser raises RecursionError on deep input, and a deep value would
    # break every later stage that decodes the event.
    if json_too_deep(text):
        raise JsonDepthError(f"json value {text[:40]!r} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise PgOutputError(f"cannot read json value {text[:40]!r}: {exc}") from None
    except RecursionError:  # not reached under the depth limit; a guard all the same
        raise JsonDepthError(f"json value {text[:40]!r} is nested too deeply to read") from None


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise PgOutputError(f"cannot read uuid value {text!r}") from None


def _number(kind: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise PgOutputError(f"cannot read {kind} value {text!r}") from None

    return convert


def _text(text: str) -> str:
    return text


_CONVERTERS: dict[int, Callable[[str], Any]] = {
    TypeOid.BOOL: _bool,
    TypeOid.BYTEA: _bytea,
    TypeOid.CHAR: _text,
    TypeOid.NAME: _text,
    TypeOid.INT8: _number("int8", int),
    TypeOid.INT2: _number("int2", int),
    TypeOid.INT4: _number("int4", int),
    TypeOid.TEXT: _text,
    TypeOid.OID: _number("oid", int),
    TypeOid.JSON: _json,
    TypeOid.FLOAT4: _number("float4", float),
    TypeOid.FLOAT8: _number("float8", float),
    TypeOid.BPCHAR: _text,
    TypeOid.VARCHAR: _text,
    TypeOid.DATE: _date,
    TypeOid.TIMESTAMP: _timestamp,
    TypeOid.TIMESTAMPTZ: _timestamptz,
    TypeOid.NUMERIC: _numeric,
    TypeOid.UUID: _uuid,
    TypeOid.JSONB: _json,
}


def convert_text(type_oid: int, text: str) -> Any:
    """A text-format column value as a Python value by type OID; other types stay ``str``.

    text/varchar/bpchar/name/"char" -> str, int2/int4/int8/oid -> int, float4/float8 ->
    float, numeric -> Decimal, bool -> bool, timestamptz -> aware datetime, timestamp ->
    naive datetime, date -> date, json/jsonb -> parsed JSON, uuid -> UUID, bytea -> bytes.
    """
    convert = _CONVERTERS.get(type_oid)
    return text if convert is None else convert(text)


def convert_value(type_oid: int, value: TupleValue) -> Any:
    """:func:`convert_text` for text values; NULL, UNCHANGED and binary values pass through."""
    return convert_text(type_oid, value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------- relations and rows


@dataclass(frozen=True, slots=True)
class RowChange:
    """An Insert, Update or Delete resolved against its relation, values converted.

    ``new`` is the row after the change (None for deletes); ``old`` the old row or key when
    sent. In an update's ``new``, unchanged TOASTed columns are filled from a full old row
    (REPLICA IDENTITY FULL) and are :data:`UNCHANGED` otherwise.
    """

    op: Literal["insert", "update", "delete"]
    relation: Relation
    new: dict[str, Any] | None
    old: dict[str, Any] | None = None
    old_kind: Literal["K", "O"] | None = None

    @property
    def row(self) -> dict[str, Any]:
        """The row an event is made of: the new row, or for deletes the old one."""
        if self.new is not None:
            return self.new
        assert self.old is not None  # a delete always carries the old row or key
        return self.old


class RelationCache:
    """The latest Relation message per relation id; a new one replaces the old (schema changes).

    Postgres sends a Relation message before the first change to a table in a session and
    again after its definition changes, so a cache filled from the stream is always current.
    """

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, Relation] = {}

    def add(self, relation: Relation) -> Relation | None:
        """Store ``relation``; return the one it replaced, if any."""
        previous = self._by_id.get(relation.relation_id)
        self._by_id[relation.relation_id] = relation
        return previous

    def get(self, relation_id: int) -> Relation:
        try:
            return self._by_id[relation_id]
        except KeyError:
            raise PgOutputError(f"change for relation {relation_id} before its Relation message") from None

    def __contains__(self, relation_id: object) -> bool:
        return relation_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Relation]:
        return iter(list(self._by_id.values()))

    def decode_row(self, relation_id: int, values: Sequence[TupleValue]) -> dict[str, Any]:
        """Tuple data of ``relation_id`` as ``{column name: converted value}``."""
        relation = self.get(relation_id)
        if len(values) != len(relation.columns):
            raise PgOutputError(
                f"tuple for {relation.qualified_name} has {len(values)} columns, "
                f"its Relation message has {len(relation.columns)}"
            )
        return {c.name: convert_value(c.type_oid, v) for c, v in zip(relation.columns, values, strict=True)}

    def change(self, msg: Insert | Update | Delete) -> RowChange:
        """Resolve a data message against the cached relation."""
        relation = self.get(msg.relation_id)
        if isinstance(msg, Insert):
            return RowChange("insert", relation, self.decode_row(msg.relation_id, msg.new))
        if isinstance(msg, Delete):
            deleted = self.decode_row(msg.relation_id, msg.old)
            return RowChange("delete", relation, None, deleted, msg.old_kind)
        new = self.decode_row(msg.relation_id, msg.new)
        old = None if msg.old is None else self.decode_row(msg.relation_id, msg.old)
        if old is not None and msg.old_kind == "O":
            for name, value in new.items():
                if value is UNCHANGED and old[name] is not UNCHANGED:
                    new[name] = old[name]
        return RowChange("update", relation, new, old, msg.old_kind)


class PgOutputDecoder:
    """Stateful front of :func:`decode_message` for one replication session.

    Tracks Stream Start/Stop (protocol 2 puts an xid in data messages inside a stream)
    and keeps :attr:`relations` current from Relation messages.
    """

    __slots__ = ("in_stream", "relations")

    def __init__(self, relations: RelationCache | None = None) -> None:
        self.relations = relations if relations is not None else RelationCache()
        self.in_stream = False

    def decode(self, data: bytes | bytearray | memoryview) -> PgOutputMessage:
        msg = decode_message(data, in_stream=self.in_stream)
        if isinstance(msg, StreamStart):
            if self.in_stream:
                raise PgOutputError("Stream Start inside a stream block")
            self.in_stream = True
        elif isinstance(msg, StreamStop):
            if not self.in_stream:
                raise PgOutputError("Stream Stop outside a stream block")
            self.in_stream = False
        elif isinstance(msg, Relation):
            self.relations.add(msg)
        return msg
