"""cdc.pgoutput: bytes in, typed messages out (hand-built and captured pgoutput bytes)."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputError,
    PgOutputReader,
    Relation,
    RelationColumn,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    decode_message,
    pg_epoch_to_datetime,
)


# -- a tiny encoder for hand-built messages -----------------------------------------------------

def s(text: str) -> bytes:
    return text.encode() + b"\0"


def tup(*values) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(v, bytes):
            out += b"b" + struct.pack(">i", len(v)) + v
        else:
            raw = v.encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def xid_prefix(xid):
    return struct.pack(">I", xid) if xid is not None else b""


# -- captured from Postgres 15 (pg_logical_slot_get_binary_changes, proto_version 1) ------------

CAPTURED_BEGIN = b"B\x00\x00\x00\x00\x02aa \x00\x03\x04\xd3H\x9cjW\x00\x00\x03\x1e"
CAPTURED_TYPE = b"Y\x00\x00@}public\x00capmood\x00"
CAPTURED_RELATION = (b"R\x00\x00@\x81public\x00cap1\x00d\x00\x03\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff"
                     b"\x00m\x00\x00\x00@}\xff\xff\xff\xff\x00body\x00\x00\x00\x00\x19\xff\xff\xff\xff")
CAPTURED_UPDATE_TOAST = b"U\x00\x00@\x81N\x00\x03t\x00\x00\x00\x011t\x00\x00\x00\x03badu"
CAPTURED_UPDATE_KEY = b"U\x00\x00@\x81K\x00\x03t\x00\x00\x00\x011nnN\x00\x03t\x00\x00\x00\x012t\x00\x00\x00\x03badu"
CAPTURED_COMMIT = b"C\x00\x00\x00\x00\x00\x02aa \x00\x00\x00\x00\x02aaP\x00\x03\x04\xd3H\x9cjW"
CAPTURED_DELETE = b"D\x00\x00@\x81K\x00\x03t\x00\x00\x00\x012nn"
CAPTURED_TRUNCATE = b"T\x00\x00\x00\x02\x02\x00\x00@\x81\x00\x00@\x88"


def test_captured_transaction_decodes():
    begin = decode_message(CAPTURED_BEGIN)
    assert isinstance(begin, Begin) and begin.xid == 798 and begin.final_lsn == 0x0261_6120
    assert pg_epoch_to_datetime(begin.commit_timestamp).year == 2026
    typ = decode_message(CAPTURED_TYPE)
    assert typ == Type(16509, "public", "capmood")
    rel = decode_message(CAPTURED_RELATION)
    assert rel == Relation(16513, "public", "cap1", "d", (
        RelationColumn("id", 23, -1, True), RelationColumn("m", 16509, -1, False),
        RelationColumn("body", 25, -1, False)))
    upd = decode_message(CAPTURED_UPDATE_TOAST)
    assert upd == Update(16513, ("1", "bad", UNCHANGED_TOAST), None, None)
    key = decode_message(CAPTURED_UPDATE_KEY)
    assert key.old_kind == "K" and key.old == ("1", None, None) and key.new == ("2", "bad", UNCHANGED_TOAST)
    commit = decode_message(CAPTURED_COMMIT)
    assert isinstance(commit, Commit) and commit.commit_lsn == begin.final_lsn
    assert commit.end_lsn == 0x0261_6150 and commit.commit_timestamp == begin.commit_timestamp
    delete = decode_message(CAPTURED_DELETE)
    assert delete == Delete(16513, ("2", None, None), "K")
    trunc = decode_message(CAPTURED_TRUNCATE)
    assert trunc == Truncate((16513, 16520), cascade=False, restart_identity=True)


def test_unchanged_toast_is_a_sentinel_not_null():
    assert UNCHANGED_TOAST is not None and repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"
    assert type(UNCHANGED_TOAST)() is UNCHANGED_TOAST  # a singleton
    msg = decode_message(b"I" + struct.pack(">I", 7) + b"N" + tup("1", None, UNCHANGED_TOAST))
    assert msg.new[1] is None and msg.new[2] is UNCHANGED_TOAST


def test_begin_commit_origin_message_fields():
    ts = 789_000_000
    assert decode_message(b"B" + struct.pack(">QqI", 0x16_B374D848, ts, 4242)) == Begin(0x16_B374D848, ts, 4242)
    assert decode_message(b"C" + struct.pack(">bQQq", 0, 10, 20, ts)) == Commit(0, 10, 20, ts)
    assert decode_message(b"O" + struct.pack(">Q", 99) + s("node_a")) == Origin(99, "node_a")
    m = decode_message(b"M" + b"\x01" + struct.pack(">Q", 5) + s("pfx") + struct.pack(">I", 3) + b"a\0b")
    assert m == Message(True, 5, "pfx", b"a\0b")
    assert pg_epoch_to_datetime(0) == datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert pg_epoch_to_datetime(-1).year == 1999


@pytest.mark.parametrize("in_stream", [False, True])
def test_row_messages_with_and_without_stream_xid(in_stream):
    xid = 777 if in_stream else None
    px = xid_prefix(xid)
    rel = b"R" + px + struct.pack(">I", 5) + s("") + s("t") + b"f" + struct.pack(">h", 2) \
        + b"\x01" + s("a") + struct.pack(">Ii", 23, -1) + b"\x01" + s("b") + struct.pack(">Ii", 1043, 24)
    r = decode_message(rel, in_stream)
    assert r.namespace == "pg_catalog"  # the server sends "" for pg_catalog
    assert r.replica_identity == "f" and r.xid == xid
    assert r.columns[1] == RelationColumn("b", 1043, 24, True)
    ins = decode_message(b"I" + px + struct.pack(">I", 5) + b"N" + tup("1", "x"), in_stream)
    assert ins == Insert(5, ("1", "x"), xid)
    upd = decode_message(b"U" + px + struct.pack(">I", 5) + b"O" + tup("1", "x") + b"N" + tup("1", "y"), in_stream)
    assert upd == Update(5, ("1", "y"), ("1", "x"), "O", xid)
    dele = decode_message(b"D" + px + struct.pack(">I", 5) + b"O" + tup("1", "y"), in_stream)
    assert dele == Delete(5, ("1", "y"), "O", xid)
    tr = decode_message(b"T" + px + struct.pack(">IB", 1, 1) + struct.pack(">I", 5), in_stream)
    assert tr == Truncate((5,), True, False, xid)
    ty = decode_message(b"Y" + px + struct.pack(">I", 16400) + s("app") + s("mood"), in_stream)
    assert ty == Type(16400, "app", "mood", xid)


def test_stream_messages_and_reader_state():
    reader = PgOutputReader()
    assert reader.decode(b"S" + struct.pack(">IB", 900, 1)) == StreamStart(900, True)
    assert reader.in_stream
    ins = reader.decode(b"I" + struct.pack(">II", 901, 5) + b"N" + tup("1"))
    assert ins.xid == 901 and ins.relation_id == 5  # the subtransaction's xid
    assert reader.decode(b"E") == StreamStop()
    assert not reader.in_stream
    assert reader.decode(b"S" + struct.pack(">IB", 900, 0)) == StreamStart(900, False)
    reader.decode(b"E")
    assert reader.decode(b"A" + struct.pack(">II", 900, 901)) == StreamAbort(900, 901)
    assert reader.decode(b"c" + struct.pack(">IbQQq", 900, 0, 30, 40, 5)) == StreamCommit(900, 0, 30, 40, 5)


def test_binary_values_and_unicode_text():
    msg = decode_message(b"I" + struct.pack(">I", 1) + b"N" + tup(b"\x00\x01", "h\u00e9 \u2603"))
    assert msg.new == (b"\x00\x01", "h\u00e9 \u2603")


def test_memoryview_and_bytearray_input():
    assert decode_message(memoryview(CAPTURED_DELETE)) == decode_message(bytearray(CAPTURED_DELETE))


@pytest.mark.parametrize("payload, words", [
    (b"", "empty"),
    (b"Z\x00", "unknown pgoutput message type 'Z'"),
    (b"P" + b"\x00" * 30, "two-phase"),
    (CAPTURED_BEGIN[:10], "malformed pgoutput 'B'"),
    (CAPTURED_RELATION[:20], "malformed pgoutput 'R'"),
    (b"I" + struct.pack(">I", 1) + b"X" + tup("1"), "expected 'N'"),
    (b"D" + struct.pack(">I", 1) + b"N" + tup("1"), "expected 'K' or 'O'"),
    (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"q", "unknown tuple column kind 'q'"),
    (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 50) + b"abc",
     "runs past the end"),
])
def test_bad_input_names_the_problem(payload, words):
    with pytest.raises(PgOutputError, match=words.replace("(", r"\(")):
        decode_message(payload)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(b"BCORYIUDTMSEcA")), st.binary(max_size=64), st.booleans())
def test_garbage_after_a_valid_type_byte_only_raises_pgoutput_error(kind, tail, in_stream):
    try:
        decode_message(bytes([kind]) + tail, in_stream)
    except PgOutputError:
        pass


def test_pure_module_imports_no_io_libraries():
    code = ("import sys; import cdc.pgoutput, cdc.values, cdc.assembler, cdc.wal2json, "
            "cdc.wal2json_render, cdc.decoding; "
            "bad = [m for m in ('asyncio', 'psycopg', 'aiohttp', 'redis') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
