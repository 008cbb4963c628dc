"""Sans-IO decoder for the ``pgoutput`` logical replication protocol, versions 1 and 2.

Bytes in (the payload of one XLogData message), one typed message out. No sockets, no asyncio.

    reader = PgOutputReader()
    msg = reader.decode(payload)      # Begin | Commit | Relation | Insert | ... | StreamStart | ...

Contract:

- ``decode_message(data, in_stream=False)`` is the stateless function; ``in_stream`` must be True
  for messages sent between a StreamStart and a StreamStop (protocol v2), which carry a leading
  xid. ``PgOutputReader`` tracks that state for you.
- Tuple values are ``None`` (SQL NULL), ``UNCHANGED_TOAST`` (an unchanged TOASTed value the server
  did not send: never NULL), a ``str`` (text format) or ``bytes`` (binary format, only when the
  ``binary`` option was requested).
- LSNs are ints; timestamps are microseconds since 2000-01-01 UTC (``pg_epoch_to_datetime``).
- Malformed or unknown input raises ``PgOutputError`` naming the message type and the offset.

Reference: "Logical Replication Message Formats" in the Postgres documentation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Union

import msgspec

__all__ = [
    "PgOutputError",
    "UnchangedToast",
    "UNCHANGED_TOAST",
    "Begin",
    "Commit",
    "Origin",
    "RelationColumn",
    "Relation",
    "Type",
    "Insert",
    "Update",
    "Delete",
    "Truncate",
    "Message",
    "StreamStart",
    "StreamStop",
    "StreamCommit",
    "StreamAbort",
    "PgOutputMessage",
    "decode_message",
    "decode_tuple_into",
    "PgOutputReader",
    "pg_epoch_to_datetime",
]

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class PgOutputError(ValueError):
    """The bytes are not a valid pgoutput message.

    Whose fault: the stream (a server/plugin mismatch, e.g. a protocol version we did not ask for)
    or a truncated payload. Hint: check ``proto_version`` in START_REPLICATION matches the reader.
    """


class UnchangedToast:
    """Sentinel: an unchanged TOASTed column value that the server did not send ('u')."""

    _instance: "UnchangedToast | None" = None

    def __new__(cls) -> "UnchangedToast":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST = UnchangedToast()

TupleValue = Union[str, bytes, None, UnchangedToast]


class Begin(msgspec.Struct, frozen=True, gc=False):
    final_lsn: int  # the commit LSN of the transaction
    commit_timestamp: int  # microseconds since 2000-01-01 UTC
    xid: int


class Commit(msgspec.Struct, frozen=True, gc=False):
    flags: int
    commit_lsn: int
    end_lsn: int  # confirm up to here once the transaction is delivered
    commit_timestamp: int


class Origin(msgspec.Struct, frozen=True, gc=False):
    commit_lsn: int
    name: str


class RelationColumn(msgspec.Struct, frozen=True, gc=False):
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


class Relation(msgspec.Struct, frozen=True, gc=False):
    relation_id: int
    namespace: str  # "pg_catalog" when the server sent an empty string
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]
    xid: int | None = None  # set inside a streamed transaction (v2)


class Type(msgspec.Struct, frozen=True, gc=False):
    type_oid: int
    namespace: str
    name: str  # the base type's name for a domain
    xid: int | None = None


class Insert(msgspec.Struct, frozen=True, gc=False):
    relation_id: int
    new: tuple[TupleValue, ...]
    xid: int | None = None


class Update(msgspec.Struct, frozen=True, gc=False):
    relation_id: int
    new: tuple[TupleValue, ...]
    old: tuple[TupleValue, ...] | None = None
    old_kind: str | None = None  # 'K' (identity key only) or 'O' (whole old row), None: not sent
    xid: int | None = None


class Delete(msgspec.Struct, frozen=True, gc=False):
    relation_id: int
    old: tuple[TupleValue, ...]
    old_kind: str  # 'K' or 'O'
    xid: int | None = None


class Truncate(msgspec.Struct, frozen=True, gc=False):
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool
    xid: int | None = None


class Message(msgspec.Struct, frozen=True, gc=False):
    """pg_logical_emit_message(); only sent when the ``messages`` option is on."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes
    xid: int | None = None


class StreamStart(msgspec.Struct, frozen=True, gc=False):
    xid: int
    first_segment: bool


class StreamStop(msgspec.Struct, frozen=True, gc=False):
    pass


class StreamCommit(msgspec.Struct, frozen=True, gc=False):
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_timestamp: int


class StreamAbort(msgspec.Struct, frozen=True, gc=False):
    xid: int  # the top-level transaction
    subxid: int  # == xid when the whole transaction aborted, else the aborted subtransaction


PgOutputMessage = Union[
    Begin, Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate, Message,
    StreamStart, StreamStop, StreamCommit, StreamAbort,
]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">bQQq")
_STREAM_COMMIT = struct.Struct(">IbQQq")
_COL = struct.Struct(">Ii")


def pg_epoch_to_datetime(micros: int) -> datetime:
    """Microseconds since 2000-01-01 UTC (the protocol's timestamps) -> aware UTC datetime."""
    return PG_EPOCH + timedelta(microseconds=micros)


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8"), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[tuple[TupleValue, ...], int]:
    (ncols,) = _I16.unpack_from(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    unpack = _I32.unpack_from
    for _ in range(ncols):
        kind = buf[pos]
        if kind == 0x74:  # 't' text
            start = pos + 5
            n = unpack(buf, pos + 1)[0]
            if n < 0:
                raise PgOutputError(f"negative value length {n} at offset {pos + 1}")
            pos = start + n
            append(buf[start:pos].decode())
        elif kind == 0x6E:  # 'n' null
            append(None)
            pos += 1
        elif kind == 0x75:  # 'u' unchanged toast
            append(UNCHANGED_TOAST)
            pos += 1
        elif kind == 0x62:  # 'b' binary
            start = pos + 5
            n = unpack(buf, pos + 1)[0]
            if n < 0:
                raise PgOutputError(f"negative value length {n} at offset {pos + 1}")
            pos = start + n
            append(buf[start:pos])
        else:
            raise PgOutputError(f"unknown tuple column kind {chr(kind)!r} at offset {pos}")
    if pos > len(buf):
        raise PgOutputError(f"tuple value runs past the end of the message ({pos} > {len(buf)} bytes)")
    return tuple(values), pos


def decode_tuple_into(buf: bytes, pos: int, names: tuple[str, ...],
                      converters: tuple[Callable[[str], Any], ...]) -> tuple[dict[str, Any], list[str]]:
    """A TupleData straight into ``{name: converter(text)}`` (the fast path of the assembler):
    NULL -> None, unchanged TOAST columns left out and returned by name, binary values as
    ``\\x`` hex. The tuple must have one value per name."""
    try:
        (ncols,) = _I16.unpack_from(buf, pos)
        if ncols != len(names):
            raise PgOutputError(f"tuple has {ncols} columns, its Relation message {len(names)}")
        pos += 2
        record: dict[str, Any] = {}
        toast: list[str] = []
        unpack = _I32.unpack_from
        # an all-ASCII message (the usual case) is decoded once and sliced: same offsets
        chars = buf.decode("ascii") if buf.isascii() else None
        for name, conv in zip(names, converters):
            kind = buf[pos]
            if kind == 0x74:  # 't'
                start = pos + 5
                n = unpack(buf, pos + 1)[0]
                if n < 0:
                    raise PgOutputError(f"negative value length {n} at offset {pos + 1}")
                pos = start + n
                record[name] = conv(chars[start:pos] if chars is not None else buf[start:pos].decode())
            elif kind == 0x6E:  # 'n'
                record[name] = None
                pos += 1
            elif kind == 0x75:  # 'u'
                toast.append(name)
                pos += 1
            elif kind == 0x62:  # 'b'
                start = pos + 5
                n = unpack(buf, pos + 1)[0]
                if n < 0:
                    raise PgOutputError(f"negative value length {n} at offset {pos + 1}")
                pos = start + n
                record[name] = "\\x" + buf[start:pos].hex()
            else:
                raise PgOutputError(f"unknown tuple column kind {chr(kind)!r} at offset {pos}")
        if pos > len(buf):
            raise PgOutputError(f"tuple value runs past the end of the message ({pos} > {len(buf)} bytes)")
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise PgOutputError(f"malformed pgoutput {chr(buf[0])!r} message ({len(buf)} bytes): {e}") from e
    return record, (tuple(toast) if toast else ())


def _xid(buf: bytes, pos: int, in_stream: bool) -> tuple[int | None, int]:
    if in_stream:
        return _U32.unpack_from(buf, pos)[0], pos + 4
    return None, pos


def _begin(buf: bytes, in_stream: bool) -> Begin:
    final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
    return Begin(final_lsn, ts, xid)


def _commit(buf: bytes, in_stream: bool) -> Commit:
    flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
    return Commit(flags, commit_lsn, end_lsn, ts)


def _origin(buf: bytes, in_stream: bool) -> Origin:
    (lsn,) = struct.unpack_from(">Q", buf, 1)
    name, _ = _cstring(buf, 9)
    return Origin(lsn, name)


def _relation(buf: bytes, in_stream: bool) -> Relation:
    xid, pos = _xid(buf, 1, in_stream)
    (rel_id,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4)
    name, pos = _cstring(buf, pos)
    identity = chr(buf[pos])
    (ncols,) = _I16.unpack_from(buf, pos + 1)
    pos += 3
    cols = []
    for _ in range(ncols):
        flags = buf[pos]
        col_name, pos = _cstring(buf, pos + 1)
        type_oid, typmod = _COL.unpack_from(buf, pos)
        pos += 8
        cols.append(RelationColumn(col_name, type_oid, typmod, bool(flags & 1)))
    return Relation(rel_id, namespace or "pg_catalog", name, identity, tuple(cols), xid)


def _type(buf: bytes, in_stream: bool) -> Type:
    xid, pos = _xid(buf, 1, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4)
    name, pos = _cstring(buf, pos)
    return Type(oid, namespace or "pg_catalog", name, xid)


def _insert(buf: bytes, in_stream: bool) -> Insert:
    xid, pos = _xid(buf, 1, in_stream)
    (rel_id,) = _U32.unpack_from(buf, pos)
    if buf[pos + 4] != 0x4E:  # 'N'
        raise PgOutputError(f"Insert: expected 'N' before the new tuple, got {chr(buf[pos + 4])!r}")
    new, _ = _tuple(buf, pos + 5)
    return Insert(rel_id, new, xid)


def _update(buf: bytes, in_stream: bool) -> Update:
    xid, pos = _xid(buf, 1, in_stream)
    (rel_id,) = _U32.unpack_from(buf, pos)
    pos += 4
    old = old_kind = None
    kind = buf[pos]
    if kind in (0x4B, 0x4F):  # 'K' | 'O'
        old_kind = chr(kind)
        old, pos = _tuple(buf, pos + 1)
        kind = buf[pos]
    if kind != 0x4E:
        raise PgOutputError(f"Update: expected 'N' before the new tuple, got {chr(kind)!r}")
    new, _ = _tuple(buf, pos + 1)
    return Update(rel_id, new, old, old_kind, xid)


def _delete(buf: bytes, in_stream: bool) -> Delete:
    xid, pos = _xid(buf, 1, in_stream)
    (rel_id,) = _U32.unpack_from(buf, pos)
    kind = buf[pos + 4]
    if kind not in (0x4B, 0x4F):
        raise PgOutputError(f"Delete: expected 'K' or 'O' before the old tuple, got {chr(kind)!r}")
    old, _ = _tuple(buf, pos + 5)
    return Delete(rel_id, old, chr(kind), xid)


def _truncate(buf: bytes, in_stream: bool) -> Truncate:
    xid, pos = _xid(buf, 1, in_stream)
    (n,) = _U32.unpack_from(buf, pos)
    options = buf[pos + 4]
    ids = struct.unpack_from(f">{n}I", buf, pos + 5)
    return Truncate(tuple(ids), bool(options & 1), bool(options & 2), xid)


def _message(buf: bytes, in_stream: bool) -> Message:
    xid, pos = _xid(buf, 1, in_stream)
    flags = buf[pos]
    (lsn,) = struct.unpack_from(">Q", buf, pos + 1)
    prefix, pos = _cstring(buf, pos + 9)
    (n,) = _U32.unpack_from(buf, pos)
    content = bytes(buf[pos + 4:pos + 4 + n])
    return Message(bool(flags & 1), lsn, prefix, content, xid)


def _stream_start(buf: bytes, in_stream: bool) -> StreamStart:
    (xid,) = _U32.unpack_from(buf, 1)
    return StreamStart(xid, buf[5] == 1)


def _stream_stop(buf: bytes, in_stream: bool) -> StreamStop:
    return StreamStop()


def _stream_commit(buf: bytes, in_stream: bool) -> StreamCommit:
    xid, flags, commit_lsn, end_lsn, ts = _STREAM_COMMIT.unpack_from(buf, 1)
    return StreamCommit(xid, flags, commit_lsn, end_lsn, ts)


def _stream_abort(buf: bytes, in_stream: bool) -> StreamAbort:
    xid, subxid = struct.unpack_from(">II", buf, 1)
    return StreamAbort(xid, subxid)


_DECODERS = {
    ord("B"): _begin, ord("C"): _commit, ord("O"): _origin, ord("R"): _relation,
    ord("Y"): _type, ord("I"): _insert, ord("U"): _update, ord("D"): _delete,
    ord("T"): _truncate, ord("M"): _message, ord("S"): _stream_start, ord("E"): _stream_stop,
    ord("c"): _stream_commit, ord("A"): _stream_abort,
}

_UNSUPPORTED = {
    "b": "Begin Prepare", "P": "Prepare", "K": "Commit Prepared", "r": "Rollback Prepared",
    "p": "Stream Prepare",
}


def decode_message(data: bytes | bytearray | memoryview, in_stream: bool = False) -> PgOutputMessage:
    """Decode one pgoutput message (an XLogData payload). See the module docstring."""
    buf = bytes(data) if not isinstance(data, bytes) else data
    if not buf:
        raise PgOutputError("empty pgoutput message")
    decoder = _DECODERS.get(buf[0])
    if decoder is None:
        tag = chr(buf[0])
        if tag in _UNSUPPORTED:
            raise PgOutputError(
                f"pgoutput sent a {_UNSUPPORTED[tag]} message ({tag!r}): two-phase commit is not"
                " supported; do not enable the 'two_phase' option on the slot")
        raise PgOutputError(f"unknown pgoutput message type {tag!r} (first byte 0x{buf[0]:02x})")
    try:
        return decoder(buf, in_stream)
    except (struct.error, IndexError, ValueError) as e:
        if isinstance(e, PgOutputError):
            raise
        raise PgOutputError(
            f"malformed pgoutput {chr(buf[0])!r} message ({len(buf)} bytes): {e}") from e


class PgOutputReader:
    """Stateful wrapper over ``decode_message`` that knows when a stream block is open."""

    def __init__(self) -> None:
        self.in_stream = False

    def decode(self, data: bytes | bytearray | memoryview) -> PgOutputMessage:
        msg = decode_message(data, self.in_stream)
        if isinstance(msg, StreamStart):
            self.in_stream = True
        elif isinstance(msg, StreamStop):
            self.in_stream = False
        return msg
