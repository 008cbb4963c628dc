"""cdc.assembler and cdc.decoding: pgoutput messages -> committed Transactions (pure)."""

from __future__ import annotations

import json
import struct
from datetime import timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.assembler import Assembler, AssemblyError, TableMatcher
from cdc.decoding import DecoderConfigError, make_decoder, render_event_json
from cdc.events import ChangeEvent, SchemaChangeEvent
from cdc.values import to_pg_text
from cdc.pgoutput import (
    UNCHANGED_TOAST,
    PgOutputReader,
    Begin,
    Commit,
    Delete,
    Insert,
    Origin,
    Relation,
    RelationColumn,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
)

COLS = (RelationColumn("id", 23, -1, True), RelationColumn("total", 1700, -1, False),
        RelationColumn("body", 25, -1, False))
ORDERS = Relation(1, "public", "orders", "d", COLS)
OTHER = Relation(2, "audit", "log", "d", (RelationColumn("id", 20, -1, True),))


def begin(xid=10, lsn=100):
    return Begin(lsn, 1_000_000, xid)


def commit(lsn=100, end=130):
    return Commit(0, lsn, end, 1_000_000)


def run(asm, *msgs):
    out = []
    for i, m in enumerate(msgs):
        t = asm.feed(m, 1000 + i)
        if t is not None:
            out.append(t)
    return out


def test_insert_transaction_with_first_schema_event():
    [txn] = run(Assembler(), begin(), ORDERS, Insert(1, ("1", "10.50", "x")), commit())
    assert (txn.xid, txn.commit_lsn, txn.end_lsn, txn.begin_lsn) == (10, 100, 130, 1000)
    assert txn.commit_timestamp.isoformat() == "2000-01-01T00:00:01+00:00"
    sch, ev = txn.events
    assert isinstance(sch, SchemaChangeEvent) and sch.previous_columns is None
    assert [c.type_name for c in sch.columns] == ["int4", "numeric", "text"]
    assert isinstance(ev, ChangeEvent) and ev.type == "INSERT"
    assert ev.record == {"id": 1, "total": Decimal("10.50"), "body": "x"}
    assert ev.primary_key == {"id": 1} and ev.old_record is None
    assert (ev.lsn, ev.commit_lsn, ev.xid) == (1002, 100, 10)


def test_same_relation_again_is_no_schema_change_but_new_columns_are():
    asm = Assembler()
    run(asm, begin(), ORDERS, Insert(1, ("1", "1", "a")), commit())
    [t2] = run(asm, begin(11), ORDERS, Insert(1, ("2", "2", "b")), commit())
    assert [type(e).__name__ for e in t2.events] == ["ChangeEvent"]
    wider = Relation(1, "public", "orders", "d", COLS + (RelationColumn("note", 1043, 24, False),))
    [t3] = run(asm, begin(12), wider, Insert(1, ("3", "3", "c", "n")), commit())
    sch, ev = t3.events
    assert isinstance(sch, SchemaChangeEvent)
    assert [c.name for c in sch.previous_columns] == ["id", "total", "body"]
    assert [c.name for c in sch.columns][-1] == "note" and ev.record["note"] == "n"
    assert asm.relation(1).columns[-1].type_modifier == 24


def test_unchanged_toast_left_out_and_named():
    [txn] = run(Assembler(), begin(), ORDERS, Update(1, ("1", "2", UNCHANGED_TOAST)), commit())
    ev = txn.events[-1]
    assert ev.record == {"id": 1, "total": Decimal(2)} and ev.unchanged_toast == ("body",)
    assert "body" not in ev.record and ev.old_record is None and ev.primary_key == {"id": 1}


def test_old_key_and_full_old_row():
    full = Relation(3, "public", "f", "f", tuple(RelationColumn(c.name, c.type_oid, -1, True) for c in COLS))
    [txn] = run(Assembler(), begin(), ORDERS, full,
                Update(1, ("2", "1", "a"), ("1", None, None), "K"),
                Delete(1, ("2", None, None), "K"),
                Update(3, ("1", "5", "b"), ("1", "4", "a"), "O"),
                Delete(3, ("1", "5", UNCHANGED_TOAST), "O"),
                commit())
    evs = [e for e in txn.events if isinstance(e, ChangeEvent)]
    assert evs[0].old_record == {"id": 1} and evs[0].primary_key == {"id": 2}
    assert not evs[0].old_record_complete
    assert evs[1].type == "DELETE" and evs[1].old_record == {"id": 2} and evs[1].record is None
    assert evs[2].old_record == {"id": 1, "total": Decimal(4), "body": "a"} and evs[2].old_record_complete
    assert evs[3].old_record == {"id": 1, "total": Decimal(5)} and not evs[3].old_record_complete
    assert evs[3].unchanged_toast == ("body",)


def test_truncate_lists_every_table():
    [txn] = run(Assembler(), begin(), ORDERS, OTHER, Truncate((1, 2), True, True), commit())
    tr = [e for e in txn.events if isinstance(e, ChangeEvent)]
    assert [(e.schema, e.table, e.type) for e in tr] == [("public", "orders", "TRUNCATE"), ("audit", "log", "TRUNCATE")]
    assert all(e.truncated == ("public.orders", "audit.log") and e.cascade and e.restart_identity for e in tr)


def test_tables_filter_keeps_the_transaction_for_progress():
    asm = Assembler(tables=["orders"])
    [txn] = run(asm, begin(), OTHER, Insert(2, ("5",)), commit())
    assert txn.events == [] and txn.end_lsn == 130
    [txn] = run(asm, begin(11), ORDERS, Insert(1, ("1", "1", "a")), Insert(2, ("6",)), commit())
    assert [e.table for e in txn.events] == ["orders", "orders"]


def test_table_matcher():
    m = TableMatcher(["public.orders", "items", " "])
    assert m("public", "orders") and not m("other", "orders")
    assert m("any", "items") and not m("public", "x")
    assert TableMatcher(None)("a", "b") and TableMatcher([])("a", "b")


def test_custom_types_from_type_messages_and_origin():
    rel = Relation(4, "public", "p", "d", (RelationColumn("m", 16400, -1, False), RelationColumn("ms", 16399, -1, False)))
    asm = Assembler()
    [txn] = run(asm, begin(), Origin(99, "upstream"), Type(16400, "app", "mood"), Type(16399, "app", "_mood"),
                rel, Insert(4, ("happy", "{sad,happy}")), commit())
    assert txn.origin == "upstream"
    ev = txn.events[-1]
    assert ev.record == {"m": "happy", "ms": ["sad", "happy"]}
    assert [c.type_name for c in ev.columns] == ["mood", "_mood"] and asm.type_schemas[16400] == "app"


def test_streamed_transaction_buffers_until_commit_and_cuts_aborted_subtransactions():
    asm = Assembler()
    msgs = [StreamStart(50, True), ORDERS, Insert(1, ("1", "1", "a"), 50),
            Insert(1, ("2", "1", "a"), 51),  # subxact 51 (later aborted)
            Insert(1, ("3", "1", "a"), 52),  # subxact 52, child of 51
            StreamStop(), StreamStart(60, True), Insert(1, ("9", "9", "z"), 60), StreamStop()]
    assert run(asm, *msgs) == [] and asm.in_transaction()
    assert run(asm, StreamAbort(50, 52), StreamAbort(50, 51)) == []
    assert run(asm, StreamStart(50, False), Insert(1, ("4", "1", "a"), 50), StreamStop()) == []
    assert run(asm, StreamAbort(60, 60)) == []  # the whole of xid 60 rolled back
    [txn] = run(asm, StreamCommit(50, 0, 700, 730, 2_000_000))
    ids = [e.record["id"] for e in txn.events if isinstance(e, ChangeEvent)]
    assert ids == [1, 4]
    assert all(e.commit_lsn == 700 and e.commit_timestamp == txn.commit_timestamp for e in txn.events)
    assert (txn.xid, txn.commit_lsn, txn.end_lsn) == (50, 700, 730)
    assert not asm.in_transaction()


def test_schema_event_dropped_with_an_aborted_stream_comes_again():
    asm = Assembler()
    run(asm, StreamStart(50, True), ORDERS, Insert(1, ("1", "1", "a"), 50), StreamStop(), StreamAbort(50, 50))
    [txn] = run(asm, begin(70), ORDERS, Insert(1, ("2", "2", "b")), commit())
    assert [type(e).__name__ for e in txn.events] == ["SchemaChangeEvent", "ChangeEvent"]
    assert txn.events[0].previous_columns is None


def test_streamed_and_plain_transactions_interleave():
    asm = Assembler()
    out = run(asm, StreamStart(50, True), ORDERS, Insert(1, ("1", "1", "a"), 50), StreamStop(),
              begin(70), Insert(1, ("2", "2", "b")), commit(200, 230),
              StreamCommit(50, 0, 300, 330, 3))
    assert [t.xid for t in out] == [70, 50]
    assert [e.record["id"] for e in out[0].events if isinstance(e, ChangeEvent)] == [2]


@pytest.mark.parametrize("msgs, words", [
    ([begin(), Insert(9, ("1",))], "relation id 9 before any Relation"),
    ([commit()], "without a Begin"),
    ([ORDERS, Insert(1, ("1", "1", "a"))], "outside a transaction"),
    ([begin(1), begin(2)], "while xid 1 is open"),
])
def test_inconsistent_sequences_raise(msgs, words):
    with pytest.raises(AssemblyError, match=words):
        run(Assembler(), *msgs)


# -- cdc.decoding -------------------------------------------------------------------------------

def test_make_decoder_feeds_payloads():
    dec = make_decoder("pgoutput", protocol_version=1)
    rel = (b"R" + struct.pack(">I", 1) + b"public\0t\0d" + struct.pack(">h", 1) + b"\x01id\0"
           + struct.pack(">Ii", 23, -1))
    assert dec.feed(b"B" + struct.pack(">QqI", 100, 0, 7), 90) == []
    assert dec.in_transaction()
    dec.feed(rel, 91)
    dec.feed(b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 2) + b"42", 92)
    [txn] = dec.feed(b"C" + struct.pack(">bQQq", 0, 100, 140, 0), 93)
    assert not dec.in_transaction() and txn.end_lsn == 140
    assert txn.events[-1].record == {"id": 42}


def _payloads_for(values, update=False):
    rel = (b"R" + struct.pack(">I", 1) + b"public\0t\0d" + struct.pack(">h", 4)
           + b"\x01id\0" + struct.pack(">Ii", 23, -1) + b"\x00tags\0" + struct.pack(">Ii", 1009, -1)
           + b"\x00ts\0" + struct.pack(">Ii", 1184, -1) + b"\x00body\0" + struct.pack(">Ii", 25, -1))
    out = [b"B" + struct.pack(">QqI", 100, 0, 7), rel]
    for vals in values:
        tup = struct.pack(">h", len(vals))
        for v in vals:
            if v is None:
                tup += b"n"
            elif v is UNCHANGED_TOAST:
                tup += b"u"
            else:
                tup += b"t" + struct.pack(">i", len(v.encode())) + v.encode()
        out.append((b"U" if update else b"I") + struct.pack(">I", 1) + b"N" + tup)
    out.append(b"C" + struct.pack(">bQQq", 0, 100, 140, 0))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.integers(-2**31, 2**31 - 1).map(str),
    st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=3).map(
        lambda xs: to_pg_text(xs, "_text"))),
    st.one_of(st.none(), st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: to_pg_text(d, "timestamptz"))),
    st.one_of(st.none(), st.just(UNCHANGED_TOAST), st.text(max_size=10))), min_size=1, max_size=5),
    st.booleans())
def test_fast_path_equals_the_general_path(rows, update):
    payloads = _payloads_for(rows, update)
    fast = make_decoder("pgoutput")
    [t1] = [t for i, p in enumerate(payloads) for t in fast.feed(p, i)]
    slow = Assembler()
    reader = PgOutputReader()
    [t2] = [t for i, p in enumerate(payloads) if (t := slow.feed(reader.decode(p), i)) is not None]
    assert msgspec.to_builtins(t1) == msgspec.to_builtins(t2)


def test_fast_path_takes_inserts_and_new_row_updates_only():
    b, rel, ins, c = _payloads_for([("1", None, None, "x")])
    upd = _payloads_for([("1", None, None, "y")], update=True)[2]
    asm = Assembler()
    assert not asm.feed_row_bytes(ins, 0)  # no transaction open yet
    asm.feed(PgOutputReader().decode(b), 0)
    assert not asm.feed_row_bytes(ins, 1)  # relation not known yet
    asm.feed(PgOutputReader().decode(rel), 2)
    assert asm.feed_row_bytes(ins, 3) and asm.feed_row_bytes(upd, 4)
    assert not asm.feed_row_bytes(b"D" + ins[1:], 5)
    key_update = b"U" + ins[1:5] + b"K" + ins[6:] + b"N" + ins[6:]
    assert not asm.feed_row_bytes(key_update, 6)
    [txn] = [asm.feed(PgOutputReader().decode(c), 7)]
    assert [(e.type, e.lsn) for e in txn.events if isinstance(e, ChangeEvent)] == [("INSERT", 3), ("UPDATE", 4)]


def test_start_options():
    assert make_decoder("pgoutput").start_options(publication="p", tables=None) == {
        "proto_version": "1", "publication_names": "p"}
    assert make_decoder("pgoutput", protocol_version=2).start_options(publication="p", tables=None) == {
        "proto_version": "2", "publication_names": "p", "streaming": "on"}
    w = make_decoder("wal2json", tables=["public.orders", "items"]).start_options(publication=None, tables=None)
    assert w["format-version"] == "2" and w["add-tables"] == "public.orders,*.items"
    assert w["include-xids"] == w["include-lsn"] == w["include-timestamp"] == w["include-pk"] == "1"


@pytest.mark.parametrize("call, words", [
    (lambda: make_decoder("test_decoding"), "unknown output plugin 'test_decoding'"),
    (lambda: make_decoder("pgoutput", protocol_version=4), "protocol_version 4 is not supported"),
    (lambda: make_decoder("pgoutput").start_options(publication=None, tables=None), "needs a publication"),
])
def test_config_errors_name_the_setting(call, words):
    with pytest.raises(DecoderConfigError, match=words):
        call()


def test_render_event_json_lines():
    full = Relation(1, "public", "orders", "d", COLS + (RelationColumn("f", 701, -1, False),))
    [txn] = run(Assembler(), begin(lsn=0x16_B374D848), full,
                Insert(1, ("1", "12345678901234567890.000000001", None, "NaN")),
                Update(1, ("1", "Infinity", UNCHANGED_TOAST, "1.5")), commit(0x16_B374D848, 0x16_B374D900))
    lines = render_event_json(txn)
    assert len(lines) == 3 and all(b"\n" not in ln for ln in lines)
    sch, ins, upd = (json.loads(ln, parse_float=Decimal) for ln in lines)
    assert sch["kind"] == "schema_change" and sch["columns"][1]["sql_type"] == "numeric"
    assert ins["kind"] == "change" and ins["type"] == "INSERT"
    assert ins["record"] == {"id": 1, "total": Decimal("12345678901234567890.000000001"), "body": None, "f": "NaN"}
    assert b'"total":12345678901234567890.000000001' in lines[1]  # a JSON number, exact
    assert ins["commit_lsn"] == "16/B374D848" and ins["commit_timestamp"] == "2000-01-01T00:00:01Z"
    assert upd["record"] == {"id": 1, "total": "Infinity", "f": Decimal("1.5")}
    assert upd["unchanged_toast"] == ["body"] and upd["primary_key"] == {"id": 1}
    assert render_event_json(run(Assembler(), begin(), commit())[0]) == []


# -- the compiled row decoder (the hot path) ----------------------------------------------------

WIDE = [("id", 20, True), ("n", 1700, False), ("ok", 16, False), ("f", 701, False), ("d", 1082, False),
        ("ts", 1114, False), ("tz", 1184, False), ("name", 25, False), ("tags", 1009, False),
        ("ints", 1007, False), ("doc", 3802, False), ("when", 1186, False)]


def _wide_payloads(rows, kind=b"I"):
    rel = b"R" + struct.pack(">I", 7) + b"public\0wide\0d" + struct.pack(">h", len(WIDE))
    for name, oid, key in WIDE:
        rel += (b"\x01" if key else b"\x00") + name.encode() + b"\0" + struct.pack(">Ii", oid, -1)
    out = [b"B" + struct.pack(">QqI", 100, 0, 7), rel]
    for vals in rows:
        tup = struct.pack(">h", len(vals))
        for v in vals:
            tup += b"n" if v is None else b"t" + struct.pack(">i", len(v.encode())) + v.encode()
        out.append(kind + struct.pack(">I", 7) + b"N" + tup)
    out.append(b"C" + struct.pack(">bQQq", 0, 100, 140, 0))
    return out


TYPICAL = ("12345678901", "12345678901234567890.000000001", "t", "1.5", "2024-02-29",
           "2024-02-29 10:11:12.5", "2024-02-29 10:11:12.123456+00", "plain", "{a,b,NULL}", "{1,2}",
           '{"k": [1, 2]}', "1 day 02:00:00")
ODD = [  # each line: values the inline path must hand to the general path (or decode the same)
    ("1", "NaN", "f", "-Infinity", "infinity", "-infinity", "infinity", "ação ☃", '{"a b","c\\"d"}',
     "{{1,2},{3,4}}", "null", "-1 days"),
    ("2", "Infinity", "t", "NaN", "0044-03-15 BC", "10000-01-01 00:00:00", "2024-01-01 10:00:00+05:30",
     "x" * 300, "{}", "[0:1]={7,8}", "[]", "00:00:00"),
    ("3", None, None, None, None, None, None, None, "{NULL}", "{}", None, None),
    ("4", "0.000", "t", "1e-300", "2000-01-01", "2000-01-01 00:00:00", "1999-12-31 23:00:00-01",
     "", '{""}', "{-1}", '"s"', "00:00:01.5"),
]


def _both_paths(payloads):
    fast = make_decoder("pgoutput")
    [t1] = [t for i, p in enumerate(payloads) for t in fast.feed(p, i)]
    slow = Assembler()
    reader = PgOutputReader()
    [t2] = [t for i, p in enumerate(payloads) if (t := slow.feed(reader.decode(p), i)) is not None]
    return fast, t1, t2


@pytest.mark.parametrize("kind", [b"I", b"U"])
def test_compiled_row_decoder_equals_the_general_path_for_every_inline_kind(kind):
    _, t1, t2 = _both_paths(_wide_payloads([TYPICAL, *ODD], kind))
    # repr: NaN != NaN, but the same value and type print the same
    assert [repr(e.record) for e in t1.events[1:]] == [repr(e.record) for e in t2.events[1:]]
    assert repr(msgspec.to_builtins(t1)) == repr(msgspec.to_builtins(t2))
    rec = t1.events[1].record
    assert rec["id"] == 12345678901 and rec["n"] == Decimal("12345678901234567890.000000001")
    assert rec["tz"].tzinfo is timezone.utc and rec["tags"] == ["a", "b", None] and rec["doc"] == {"k": [1, 2]}
    assert t1.events[2].record["tz"] == "infinity" and t1.events[2].record["name"] == "ação ☃"
    assert t1.events[3].record["tz"].utcoffset().total_seconds() == 0  # +05:30 converted to UTC
    assert t1.events[3].record["ts"] == "10000-01-01 00:00:00"


def test_compiled_row_decoder_takes_typical_rows_itself():
    """The inline path must really take ordinary rows (a silent fallback would only be slow)."""
    fast, _, _ = _both_paths(_wide_payloads([TYPICAL]))
    st_ = next(iter(fast._assembler._relations.values()))  # noqa: SLF001
    ins = _wide_payloads([TYPICAL])[2]
    ev = st_.fast_row(ins, 5, _PendingStub())
    assert ev is not None and ev.record["tags"] == ["a", "b", None] and ev.primary_key == {"id": 12345678901}
    nulls = _wide_payloads([("9",) + (None,) * 11])[2]
    assert st_.fast_row(nulls, 6, _PendingStub()).record == {"id": 9, **{n: None for n, _, _ in WIDE[1:]}}
    non_ascii = _wide_payloads([TYPICAL[:7] + ("ação",) + TYPICAL[8:]])[2]
    assert st_.fast_row(non_ascii, 7, _PendingStub()).record["name"] == "ação"


class _PendingStub:
    commit_lsn, commit_ts, xid = 100, None, 7


def test_compiled_row_decoder_leaves_bad_text_to_the_general_path():
    bad = _wide_payloads([("1", "1", "x") + TYPICAL[3:]])  # 'x' is no boolean
    with pytest.raises(ValueError, match="not a Postgres boolean"):
        _both_paths(bad)
    short = _wide_payloads([TYPICAL[:-1]])  # 11 values for 12 columns
    with pytest.raises(ValueError, match="11 columns"):
        _both_paths(short)
