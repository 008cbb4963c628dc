"""cdc.wal2json (plugin output -> Transactions) and cdc.wal2json_render (Transaction -> lines)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, ColumnInfo, SchemaChangeEvent, Transaction, parse_lsn
from cdc.wal2json import Wal2JsonDecoder, Wal2JsonError, add_tables_option, typmod_from_type
from cdc.wal2json_render import Wal2JsonOptions, render_wal2json

TS = '"timestamp":"2026-12-04 20:07:01.760031+00"'


def B(xid=754, lsn="0/15462B0", nxt="0/15462E0"):
    return f'{{"action":"B","xid":{xid},{TS},"lsn":"{lsn}","nextlsn":"{nxt}"}}'.encode()


def C(xid=754, lsn="0/15462B0", nxt="0/15462E0"):
    return f'{{"action":"C","xid":{xid},{TS},"lsn":"{lsn}","nextlsn":"{nxt}"}}'.encode()


def col(name, typ, oid, value):
    import json
    return f'{{"name":"{name}","type":"{typ}","typeoid":{oid},"value":{json.dumps(value)}}}'


def row(action, table, cols=None, identity=None, pk=("id",), lsn="0/1545DC8"):
    out = f'{{"action":"{action}","xid":754,{TS},"lsn":"{lsn}","schema":"public","table":"{table}"'
    if cols is not None:
        out += ',"columns":[' + ",".join(cols) + "]"
    if identity is not None:
        out += ',"identity":[' + ",".join(identity) + "]"
    out += ',"pk":[' + ",".join(f'{{"name":"{p}","type":"integer","typeoid":23}}' for p in pk) + "]}"
    return out.encode()


def feed_all(dec, *lines):
    out = []
    for i, ln in enumerate(lines):
        out.extend(dec.feed(ln, 5000 + i))
    return out


def test_insert_values_by_type_and_transaction_fields():
    dec = Wal2JsonDecoder()
    line = row("I", "t", [col("id", "integer", 23, 1), col("total", "numeric(12,2)", 1700, None),
                          col("tags", "text[]", 1009, '{a,"b c"}'), col("blob", "bytea", 17, "0a0b"),
                          col("m", "public.mood", 16400, "happy"), col("ms", "public.mood[]", 16399, "{sad}"),
                          col("ok", "boolean", 16, True), col("j", "jsonb", 3802, '{"a": 1}')])
    line = line.replace(b'"value":null}', b'"value":12345678901234567890.000000001}', 1)
    [txn] = feed_all(dec, B(), line, C())
    assert (txn.xid, txn.commit_lsn, txn.end_lsn) == (754, parse_lsn("0/15462B0"), parse_lsn("0/15462E0"))
    assert txn.commit_timestamp == datetime(2026, 12, 4, 20, 7, 1, 760031, tzinfo=timezone.utc)
    sch, ev = txn.events
    assert isinstance(sch, SchemaChangeEvent) and sch.previous_columns is None
    assert ev.record == {"id": 1, "total": Decimal("12345678901234567890.000000001"), "tags": ["a", "b c"],
                         "blob": "\\x0a0b", "m": "happy", "ms": ["sad"], "ok": True, "j": {"a": 1}}
    assert [c.type_name for c in ev.columns] == ["int4", "numeric", "_text", "bytea", "mood", "_mood", "bool", "jsonb"]
    assert ev.columns[1].type_modifier == ((12 << 16) | 2) + 4
    assert ev.primary_key == {"id": 1} and ev.lsn == parse_lsn("0/1545DC8")
    assert dec.type_schemas == {16400: "public", 16399: "public"}


def test_update_without_toast_column_names_it_once_the_table_is_known():
    dec = Wal2JsonDecoder()
    cols = [col("id", "integer", 23, 5), col("v", "text", 25, "a"), col("big", "text", 25, "x" * 50)]
    upd = row("U", "rd", cols[:1] + [col("v", "text", 25, "a2")], identity=[col("id", "integer", 23, 5)])
    [t1] = feed_all(dec, B(), row("I", "rd", cols), C())
    [t2] = feed_all(dec, B(), upd, C())
    [ev] = t2.events
    assert ev.record == {"id": 5, "v": "a2"} and ev.unchanged_toast == ("big",)
    assert ev.old_record is None  # identity equals the new key: key unchanged
    assert [c.name for c in ev.columns] == ["id", "v", "big"]
    # a fresh decoder has not seen the table: the column is just absent (documented)
    [t3] = feed_all(Wal2JsonDecoder(), B(), upd, C())
    assert t3.events[-1].unchanged_toast == () and t3.events[-1].record == {"id": 5, "v": "a2"}


def test_key_change_full_identity_and_delete():
    dec = Wal2JsonDecoder()
    key = row("U", "rd", [col("id", "integer", 23, 3), col("v", "text", 25, "b")],
              identity=[col("id", "integer", 23, 2)])
    full_cols = [col("id", "integer", 23, 1), col("v", "text", 25, "a")]
    ins_full = row("I", "rf", full_cols)
    upd_full = row("U", "rf", [col("id", "integer", 23, 1), col("v", "text", 25, "b")], identity=full_cols)
    del_full = row("D", "rf", identity=[col("id", "integer", 23, 1), col("v", "text", 25, "b")])
    del_key = row("D", "rd", identity=[col("id", "integer", 23, 3)])
    [txn] = feed_all(dec, B(), key, ins_full, upd_full, del_full, del_key, C())
    evs = [e for e in txn.events if isinstance(e, ChangeEvent)]
    assert evs[0].old_record == {"id": 2} and evs[0].primary_key == {"id": 3}
    assert evs[2].old_record == {"id": 1, "v": "a"} and evs[2].old_record_complete
    assert evs[3].type == "DELETE" and evs[3].old_record_complete and evs[3].record is None
    assert evs[4].old_record == {"id": 3} and not evs[4].old_record_complete and evs[4].primary_key == {"id": 3}


def test_truncate_groups_tables_and_messages_are_ignored():
    dec = Wal2JsonDecoder()
    t = lambda name: f'{{"action":"T","xid":754,{TS},"lsn":"0/1548D28","schema":"public","table":"{name}"}}'.encode()
    msg = b'{"action":"M","transactional":false,"prefix":"p","content":"x"}'
    [txn] = feed_all(dec, msg, B(), t("a"), t("b"), C())
    assert [(e.table, e.type, e.truncated) for e in txn.events] == [
        ("a", "TRUNCATE", ("public.a", "public.b")), ("b", "TRUNCATE", ("public.a", "public.b"))]


def test_tables_filter_and_empty_transactions():
    dec = Wal2JsonDecoder(tables=["public.keep"])
    [txn] = feed_all(dec, B(), row("I", "drop", [col("id", "integer", 23, 1)]), C())
    assert txn.events == [] and not dec.in_transaction()


@pytest.mark.parametrize("payload, words", [
    (b"not json", "not JSON"),
    (b'{"change": []}', "no 'action'"),
    (b'{"action":"X"}', "unknown wal2json action 'X'"),
    (b'{"action":"C"}', "C without a B"),
    (b'{"action":"I","schema":"s","table":"t","columns":[]}', "outside a transaction"),
])
def test_bad_input_names_the_problem(payload, words):
    with pytest.raises(Wal2JsonError, match=words):
        Wal2JsonDecoder().feed(payload, 0)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["0/1", "x/y", "1/"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "type", "typeoid", "value"]), inner, max_size=4),
    max_leaves=8)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {"action": st.sampled_from(["B", "C", "I", "U", "D", "T", "M"])},
    optional={k: _json_values for k in ("xid", "timestamp", "lsn", "nextlsn", "schema", "table",
                                         "columns", "identity", "pk")}), min_size=1, max_size=4))
def test_garbage_objects_only_raise_wal2json_error(objs):
    dec = Wal2JsonDecoder()
    for obj in objs:
        try:
            dec.feed(msgspec.json.encode(obj), 0)
        except Wal2JsonError:
            pass


def test_missing_field_is_a_clear_error():
    dec = Wal2JsonDecoder()
    dec.feed(B(), 0)
    with pytest.raises(Wal2JsonError, match="'I' object lacks or mistypes a field"):
        dec.feed(b'{"action":"I","schema":"s"}', 1)


def test_options_helpers():
    assert add_tables_option(["public.orders", "my table", "s.a.b"]) == r"public.orders,*.my\ table,s.a\.b"
    assert typmod_from_type("character varying(20)") == 24 and typmod_from_type("text") == -1
    assert typmod_from_type("numeric(10,2)[]") == ((10 << 16) | 2) + 4
    assert typmod_from_type("timestamp(3) with time zone") == 3


# -- rendering ---------------------------------------------------------------------------------

def _txn():
    cols = (ColumnInfo("id", 23, "int4", -1, True), ColumnInfo("v", 25, "text"),
            ColumnInfo("n", 1700, "numeric", ((10 << 16) | 2) + 4), ColumnInfo("f", 701, "float8"),
            ColumnInfo("b", 17, "bytea"), ColumnInfo("big", 25, "text"))
    ts = datetime(2026, 12, 4, 20, 7, 1, 760031, tzinfo=timezone.utc)
    common = dict(schema="public", table="rd", columns=cols, commit_lsn=parse_lsn("0/15462B0"),
                  commit_timestamp=ts, xid=754)
    return Transaction(xid=754, commit_lsn=parse_lsn("0/15462B0"), end_lsn=parse_lsn("0/15462E0"),
                       commit_timestamp=ts, events=[
        ChangeEvent(type="INSERT", record={"id": 1, "v": 'q"\u00e9', "n": Decimal("10.50"), "f": float("nan"),
                                           "b": "\\x0a0b", "big": None}, primary_key={"id": 1},
                    lsn=parse_lsn("0/1545DC8"), **common),
        ChangeEvent(type="UPDATE", record={"id": 1, "v": "b", "n": None, "f": 1e20, "b": "\\x"},
                    unchanged_toast=["big"], primary_key={"id": 1}, lsn=parse_lsn("0/1545DD0"), **common),
        ChangeEvent(type="DELETE", old_record={"id": 1}, primary_key={"id": 1}, lsn=parse_lsn("0/1545DE0"), **common),
        ChangeEvent(type="TRUNCATE", truncated=["public.rd"], lsn=parse_lsn("0/1545DF0"), **common),
    ])


def test_render_exact_lines():
    lines = render_wal2json(_txn())
    head = '"xid":754,"timestamp":"2026-12-04 20:07:01.760031+00"'
    pk = '"pk":[{"name":"id","type":"integer"}]'
    assert [ln.decode() for ln in lines] == [
        '{"action":"B",' + head + ',"lsn":"0/15462B0","nextlsn":"0/15462E0"}',
        '{"action":"I",' + head + ',"lsn":"0/1545DC8","schema":"public","table":"rd","columns":['
        '{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"q\\"\u00e9"},'
        '{"name":"n","type":"numeric(10,2)","value":10.50},{"name":"f","type":"double precision","value":null},'
        '{"name":"b","type":"bytea","value":"0a0b"},{"name":"big","type":"text","value":null}],' + pk + '}',
        '{"action":"U",' + head + ',"lsn":"0/1545DD0","schema":"public","table":"rd","columns":['
        '{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"b"},'
        '{"name":"n","type":"numeric(10,2)","value":null},{"name":"f","type":"double precision","value":1e+20},'
        '{"name":"b","type":"bytea","value":""}],"identity":[{"name":"id","type":"integer","value":1}],' + pk + '}',
        '{"action":"D",' + head + ',"lsn":"0/1545DE0","schema":"public","table":"rd",'
        '"identity":[{"name":"id","type":"integer","value":1}],' + pk + '}',
        '{"action":"T",' + head + ',"lsn":"0/1545DF0","schema":"public","table":"rd"}',
        '{"action":"C",' + head + ',"lsn":"0/15462B0","nextlsn":"0/15462E0"}',
    ]


def test_render_options_and_primary_keys():
    opts = Wal2JsonOptions(include_xids=False, include_timestamp=False, include_lsn=False,
                           include_type_oids=True, numeric_data_types_as_string=True)
    lines = render_wal2json(_txn(), opts, primary_keys={"public.rd": []})
    assert lines[0] == b'{"action":"B"}'
    assert b'{"name":"n","type":"numeric(10,2)","typeoid":1700,"value":"10.50"}' in lines[1]
    assert b'"value":"NaN"' in lines[1] and lines[1].endswith(b'"pk":[]}')
    assert opts.plugin_options()["numeric-data-types-as-string"] == "1"
    assert "numeric-data-types-as-string" not in Wal2JsonOptions().plugin_options()


def test_render_then_decode_round_trip():
    txn = _txn()
    lines = render_wal2json(txn, Wal2JsonOptions(include_type_oids=True))
    [back] = feed_all(Wal2JsonDecoder(), *lines)
    got = [e for e in back.events if isinstance(e, ChangeEvent)]
    assert [e.type for e in got] == ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
    ins = dict(txn.events[0].record, f=None)  # wal2json prints NaN as null
    assert got[0].record == ins
    assert got[1].record == txn.events[1].record and got[1].unchanged_toast == ("big",)
    assert got[2].old_record == {"id": 1} and (back.commit_lsn, back.end_lsn) == (txn.commit_lsn, txn.end_lsn)


def test_empty_transaction_renders_nothing():
    t = _txn()
    t.events = []
    assert render_wal2json(t) == []
