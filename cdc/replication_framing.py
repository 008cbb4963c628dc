"""Byte framing of the streaming replication sub-protocol (inside CopyData). Pure: no IO.

Server -> client:
  ``w`` XLogData:        Int64 wal_start, Int64 wal_end, Int64 send_time, Byte* payload
  ``k`` keepalive:       Int64 wal_end, Int64 send_time, Byte1 reply_requested
Client -> server:
  ``r`` status update:   Int64 written, Int64 flushed, Int64 applied, Int64 send_time, Byte1 reply

Times are microseconds since 2000-01-01 00:00 UTC (the Postgres epoch).
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

from cdc.errors import ReplicationProtocolError

__all__ = ["XLogData", "Keepalive", "parse_copy_message", "encode_status_update", "pg_now"]

_PG_EPOCH_UNIX = 946_684_800  # 2000-01-01 in Unix seconds
_XLOG_HEADER = struct.Struct("!QQQ")  # after the 'w'
_KEEPALIVE = struct.Struct("!QQB")  # after the 'k'
_STATUS = struct.Struct("!cQQQQB")
_W, _K = ord("w"), ord("k")


class XLogData(NamedTuple):
    """One logical decoding output message (a pgoutput message or a wal2json document)."""

    wal_start: int
    wal_end: int
    send_time: int
    payload: bytes


class Keepalive(NamedTuple):
    wal_end: int  # everything before this was sent: safe to confirm when nothing is pending
    send_time: int
    reply_requested: bool


def parse_copy_message(buf: bytes | memoryview) -> XLogData | Keepalive:
    """Parse one CopyData body from the server; raise ReplicationProtocolError on anything else.

    ``buf`` may be a memoryview over a transient buffer: the payload is copied out exactly once."""
    if not buf:
        raise ReplicationProtocolError("empty replication message")
    kind = buf[0]
    if kind == _W:
        if len(buf) < 25:
            raise ReplicationProtocolError(f"XLogData message too short ({len(buf)} bytes, need >= 25)")
        start, end, sent = _XLOG_HEADER.unpack_from(buf, 1)
        return XLogData(start, end, sent, bytes(buf[25:]))
    if kind == _K:
        if len(buf) < 18:
            raise ReplicationProtocolError(f"keepalive message too short ({len(buf)} bytes, need 18)")
        end, sent, reply = _KEEPALIVE.unpack_from(buf, 1)
        return Keepalive(end, sent, reply != 0)
    raise ReplicationProtocolError(
        f"unknown replication message type {chr(kind)!r} (0x{kind:02x}); expected 'w' or 'k'")


def encode_status_update(written: int, flushed: int, applied: int, *, send_time: int | None = None,
                         reply_requested: bool = False) -> bytes:
    """A Standby Status Update: tells the server what the client has durably handled.

    ``flushed`` becomes the slot's confirmed_flush_lsn: only pass what was delivered."""
    if not (0 <= flushed <= written) or applied < 0:
        raise ValueError(f"status LSNs must be >= 0 with flushed <= written (got written={written}, "
                         f"flushed={flushed}, applied={applied})")
    return _STATUS.pack(b"r", written, flushed, applied, pg_now() if send_time is None else send_time,
                        1 if reply_requested else 0)


def pg_now(unix_time: float | None = None) -> int:
    """Microseconds since the Postgres epoch."""
    t = time.time() if unix_time is None else unix_time
    return int((t - _PG_EPOCH_UNIX) * 1_000_000)
