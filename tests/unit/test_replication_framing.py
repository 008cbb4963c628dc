import struct
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from cdc.errors import ReplicationProtocolError
from cdc.replication_framing import (Keepalive, XLogData, encode_status_update, parse_copy_message,
                                     pg_now)

lsns = st.integers(min_value=0, max_value=2**64 - 1)


def test_xlogdata_header_and_payload():
    msg = b"w" + struct.pack("!QQQ", 0x16_B374D848, 0x16_B374D900, 12345) + b"B\x00payload"
    m = parse_copy_message(msg)
    assert m == XLogData(0x16_B374D848, 0x16_B374D900, 12345, b"B\x00payload")


def test_xlogdata_with_empty_payload():
    m = parse_copy_message(b"w" + struct.pack("!QQQ", 1, 2, 3))
    assert isinstance(m, XLogData) and m.payload == b""


@pytest.mark.parametrize("flag,expected", [(0, False), (1, True)])
def test_keepalive(flag, expected):
    m = parse_copy_message(b"k" + struct.pack("!QQB", 0x1505100, 99, flag))
    assert m == Keepalive(0x1505100, 99, expected)


@pytest.mark.parametrize("buf,needle", [
    (b"", "empty"),
    (b"w" + b"\x00" * 10, "XLogData message too short"),
    (b"k" + b"\x00" * 5, "keepalive message too short"),
    (b"x\x00\x00", "unknown replication message type 'x'"),
])
def test_bad_messages_name_the_problem(buf, needle):
    with pytest.raises(ReplicationProtocolError, match=needle) as e:
        parse_copy_message(buf)
    assert e.value.fault == "server" and e.value.hint


@given(lsns, lsns, st.binary(max_size=64))
def test_xlogdata_roundtrip(start, end, payload):
    m = parse_copy_message(b"w" + struct.pack("!QQQ", start, end, 7) + payload)
    assert (m.wal_start, m.wal_end, m.payload) == (start, end, payload)


@given(lsns, st.booleans())
def test_status_update_layout(flushed, reply):
    buf = encode_status_update(flushed, flushed, flushed, send_time=42, reply_requested=reply)
    assert len(buf) == 34
    assert struct.unpack("!cQQQQB", buf) == (b"r", flushed, flushed, flushed, 42, int(reply))


def test_status_update_refuses_flush_beyond_write():
    with pytest.raises(ValueError, match="flushed <= written"):
        encode_status_update(10, 11, 10)


def test_pg_epoch():
    assert pg_now(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()) == 0
    assert pg_now(datetime(2000, 1, 1, 0, 0, 1, tzinfo=timezone.utc).timestamp()) == 1_000_000


def test_framing_is_pure():
    code = ("import sys, cdc.replication_framing, cdc.errors; "
            "bad = {'asyncio', 'psycopg', 'aiohttp', 'redis'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
