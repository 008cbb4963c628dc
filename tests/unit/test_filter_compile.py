"""compile_filter: SQL semantics per operator and type, NULLs, and errors at registration."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from cdc.events import ColumnInfo, TableSchema
from filters import FilterError, compile_filter

SCHEMA = TableSchema("public", "orders", (
    ColumnInfo("id", 23, "int4", is_key=True),
    ColumnInfo("qty", 21, "int2"),
    ColumnInfo("big", 20, "int8"),
    ColumnInfo("amount", 1700, "numeric"),
    ColumnInfo("ratio", 701, "float8"),
    ColumnInfo("r4", 700, "float4"),
    ColumnInfo("status", 25, "text"),
    ColumnInfo("region", 1043, "varchar"),
    ColumnInfo("code", 1042, "bpchar"),
    ColumnInfo("paid", 16, "bool"),
    ColumnInfo("day", 1082, "date"),
    ColumnInfo("at", 1114, "timestamp"),
    ColumnInfo("ts", 1184, "timestamptz"),
    ColumnInfo("clock", 1083, "time"),
    ColumnInfo("uid", 2950, "uuid"),
    ColumnInfo("doc", 3802, "jsonb"),
    ColumnInfo("raw", 114, "json"),
    ColumnInfo("tags", 1009, "_text"),
    ColumnInfo("span", 1186, "interval"),
    ColumnInfo("mood", 16390, "mood"),  # an enum
    ColumnInfo("blob", 17, "bytea"),
))
UTC = timezone.utc


def value(flt, **record):
    return compile_filter(flt, SCHEMA).sql_value(record)


@pytest.mark.parametrize("flt, record, expected", [
    # equality and NULL
    ("status = 'pending'", {"status": "pending"}, True),
    ("status = 'pending'", {"status": "paid"}, False),
    ("status = 'pending'", {"status": None}, None),
    ("status <> 'pending'", {"status": None}, None),
    ("status != 'pending'", {"status": "paid"}, True),
    ("status = NULL", {"status": "x"}, None),
    ("status IS NULL", {"status": None}, True),
    ("status IS NOT NULL", {"status": None}, False),
    # numbers compare exactly
    ("amount = 0.3", {"amount": Decimal("0.30")}, True),
    ("amount > 0.1", {"amount": Decimal("0.1000000000000000000000000001")}, True),
    ("id = 1.0", {"id": 1}, True),
    ("id = 1.5", {"id": 1}, False),
    ("id < 1.5", {"id": 1}, True),
    ("big = 9007199254740993", {"big": 9007199254740993}, True),
    ("big = 9007199254740992", {"big": 9007199254740993}, False),
    ("qty = 100000", {"qty": 5}, False),  # no overflow error: compared as numbers
    ("amount >= 100", {"amount": Decimal("99.999")}, False),
    ("amount = 'NaN'", {"amount": Decimal("NaN")}, True),  # Postgres: NaN = NaN
    ("amount > 'Infinity'", {"amount": Decimal("NaN")}, True),  # NaN sorts above everything
    ("amount < 'Infinity'", {"amount": Decimal("1e1000")}, True),
    ("amount > 5", {"amount": Decimal("Infinity")}, True),
    ("amount < 5", {"amount": Decimal("-Infinity")}, True),
    ("ratio = 'NaN'", {"ratio": float("nan")}, True),
    ("ratio > 1e308", {"ratio": float("inf")}, True),
    ("ratio = 0", {"ratio": -0.0}, True),
    ("ratio = 0.1", {"ratio": 0.1}, True),
    ("r4 = 0.1", {"r4": 0.1}, False),  # float4 = numeric compares as float8: 0.1f is not 0.1
    ("r4 = '0.1'", {"r4": 0.1}, True),  # a quoted literal becomes float4
    ("r4 IN (0.1, 5)", {"r4": 0.1}, True),  # a list resolves to the common type: float4
    ("r4 IN (0.1)", {"r4": 0.1}, False),  # a single value is plain =: float8
    # the list's common type is timestamptz: the quoted value keeps its zone
    ("at IN ('2026-01-01 12:30+05', '2026-01-01'::timestamptz)", {"at": datetime(2026, 1, 1, 7, 30)}, True),
    ("at IN ('2026-01-01 12:30+05')", {"at": datetime(2026, 1, 1, 12, 30)}, True),
    ("ratio > 1", {"ratio": 1.5}, True),
    # text: C collation (code point order), case-sensitive
    ("status < 'a'", {"status": "B"}, True),
    ("status > 'z'", {"status": "é"}, True),
    ("status = 'A'", {"status": "a"}, False),
    ("region BETWEEN 'a' AND 'c'", {"region": "b"}, True),
    # bpchar: trailing spaces do not count in comparisons, but do in LIKE
    ("code = 'ab'", {"code": "ab  "}, True),
    ("code = 'ab  '", {"code": "ab"}, True),
    ("code LIKE 'ab'", {"code": "ab  "}, False),
    ("code LIKE 'ab%'", {"code": "ab  "}, True),
    # LIKE / ILIKE
    ("status LIKE 'pen%'", {"status": "pending"}, True),
    ("status LIKE 'pen_ing'", {"status": "pending"}, True),
    ("status LIKE 'pen_ing'", {"status": "penxxing"}, False),
    ("status LIKE '%d%g'", {"status": "pending"}, True),
    ("status LIKE 'a\\%b'", {"status": "a%b"}, True),
    ("status LIKE 'a\\%b'", {"status": "axb"}, False),
    ("status LIKE 'a!_b' ESCAPE '!'", {"status": "a_b"}, True),
    ("status LIKE 'a!_b' ESCAPE '!'", {"status": "axb"}, False),
    ("status LIKE 'a\\b' ESCAPE ''", {"status": "a\\b"}, True),
    ("status LIKE '_'", {"status": "\n"}, True),
    ("status LIKE '%'", {"status": ""}, True),
    ("status LIKE ''", {"status": ""}, True),
    ("status NOT LIKE 'p%'", {"status": "paid"}, False),
    ("status LIKE 'p%'", {"status": None}, None),
    ("status ILIKE 'PEND%'", {"status": "pending"}, True),
    ("status ILIKE 'école'", {"status": "ÉCOLE"}, True),
    ("status ILIKE 'strasse'", {"status": "straße"}, False),  # no full case folding, like Postgres
    ("status NOT ILIKE 'x%'", {"status": "X1"}, False),
    # IN / NOT IN with NULLs
    ("id IN (1, 2, 3)", {"id": 2}, True),
    ("id IN (1, 2, 3)", {"id": 4}, False),
    ("id IN (1, NULL)", {"id": 4}, None),
    ("id IN (1, NULL)", {"id": 1}, True),
    ("id NOT IN (1, NULL)", {"id": 4}, None),
    ("id NOT IN (1, NULL)", {"id": 1}, False),
    ("id NOT IN (1, 2)", {"id": 3}, True),
    ("id IN (1, 2)", {"id": None}, None),
    ("status IN ('a', 'b')", {"status": "b"}, True),
    # BETWEEN
    ("amount BETWEEN 1 AND 10", {"amount": Decimal("10")}, True),
    ("amount BETWEEN 10 AND 1", {"amount": Decimal("5")}, False),
    ("amount BETWEEN SYMMETRIC 10 AND 1", {"amount": Decimal("5")}, True),
    ("amount NOT BETWEEN 1 AND 10", {"amount": Decimal("11")}, True),
    ("amount BETWEEN 1 AND NULL", {"amount": Decimal("0")}, False),  # 0 >= 1 is false: decided
    ("amount BETWEEN 1 AND NULL", {"amount": Decimal("5")}, None),
    # IS [NOT] DISTINCT FROM
    ("status IS DISTINCT FROM 'a'", {"status": None}, True),
    ("status IS DISTINCT FROM NULL", {"status": None}, False),
    ("status IS NOT DISTINCT FROM NULL", {"status": None}, True),
    ("status IS NOT DISTINCT FROM 'a'", {"status": "a"}, True),
    ("amount IS DISTINCT FROM 1.0", {"amount": Decimal("1")}, False),
    # booleans
    ("paid", {"paid": True}, True),
    ("NOT paid", {"paid": None}, None),
    ("paid = 'yes'", {"paid": True}, True),
    ("paid = 'off'", {"paid": False}, True),
    ("paid IS TRUE", {"paid": None}, False),
    ("paid IS NOT TRUE", {"paid": None}, True),
    ("paid IS UNKNOWN", {"paid": None}, True),
    ("paid IS NOT FALSE", {"paid": True}, True),
    ("paid > false", {"paid": True}, True),
    # dates and times: instants, infinities, zones
    ("ts > '2026-01-01'", {"ts": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)}, True),
    ("ts = '2026-01-01 01:00:00+01'", {"ts": datetime(2026, 1, 1, tzinfo=UTC)}, True),
    ("ts = '2026-01-01T00:00:00Z'", {"ts": datetime(2026, 1, 1, tzinfo=UTC)}, True),
    ("ts < '2026-01-01'::date", {"ts": datetime(2025, 12, 31, 23, 59, tzinfo=UTC)}, True),
    ("ts > '2026-01-01'::timestamptz", {"ts": "infinity"}, True),
    ("ts < '2026-01-01'::timestamptz", {"ts": "-infinity"}, True),
    ("ts = 'infinity'", {"ts": "infinity"}, True),
    ("at = '2026-01-01 10:00:00+05'", {"at": datetime(2026, 1, 1, 10)}, True),  # zone ignored for timestamp
    ("at >= '2026-01-01'::date", {"at": datetime(2026, 1, 1)}, True),
    ("day = '2026-01-01 12:00'", {"day": date(2026, 1, 1)}, True),
    ("day < '2026-01-01 00:00:01'::timestamp", {"day": date(2026, 1, 1)}, True),
    ("day > '-infinity'", {"day": date(1, 1, 1)}, True),
    ("clock > '12:00'", {"clock": time(12, 0, 1)}, True),
    ("at = '2026-01-01 00:00:00.0000005'", {"at": datetime(2026, 1, 1)}, True),  # rounds half to even
    # uuid, jsonb, enums, bytea
    ("uid = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", {"uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, True),
    ("uid = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'", {"uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, True),
    ("doc = '{\"b\": [1, 2.0], \"a\": 1}'", {"doc": {"a": 1, "b": [1.0, 2]}}, True),
    ("doc = 'true'", {"doc": 1}, False),
    ("doc = '1'", {"doc": True}, False),
    ("doc <> '\"x\"'", {"doc": "x"}, False),
    ("mood = 'happy'", {"mood": "happy"}, True),
    ("mood IN ('sad', 'ok')", {"mood": "happy"}, False),
    ("blob = '\\x0A0b'", {"blob": "\\x0a0b"}, True),
    ("blob = 'ab'", {"blob": "\\x6162"}, True),
    ("blob < '\\x0b'", {"blob": "\\x0a0b"}, True),
    # arrays, json, intervals: NULL tests only
    ("tags IS NULL", {"tags": None}, True),
    ("raw IS NOT NULL", {"raw": {"a": 1}}, True),
    # three-valued AND / OR / NOT
    ("status = 'a' AND id = 1", {"status": None, "id": 2}, False),
    ("status = 'a' AND id = 1", {"status": None, "id": 1}, None),
    ("status = 'a' OR id = 1", {"status": None, "id": 1}, True),
    ("status = 'a' OR id = 1", {"status": None, "id": 2}, None),
    ("NOT (status = 'a')", {"status": None}, None),
    ("NOT (status = 'a' OR id = 1)", {"status": "b", "id": 2}, True),
    ("1 < id", {"id": 2}, True),  # literal on the left
    ("'2026-01-01' <= day", {"day": date(2026, 1, 1)}, True),
    ("\"status\" = 'a'", {"status": "a"}, True),
])
def test_sql_semantics(flt, record, expected):
    assert value(flt, **record) is expected


@pytest.mark.parametrize("flt, record, expected", [
    ({"status": "pending"}, {"status": "pending"}, True),
    ({"status": "pending", "region": "eu"}, {"status": "pending", "region": "us"}, False),
    ({"amount": {"gte": 99.95}}, {"amount": Decimal("99.95")}, True),  # JSON 99.95 is the numeric 99.95
    ({"amount": {"gt": 0.1}}, {"amount": Decimal("0.1000000000000000000001")}, True),
    ({"id": "7"}, {"id": 7}, True),  # a string takes the column's type
    ({"deleted": None} if False else {"status": None}, {"status": None}, True),
    ({"status": ["a", "b"]}, {"status": "b"}, True),
    ({"status": {"nin": ["a", None]}}, {"status": "c"}, None),
    ({"status": {"is": None}}, {"status": None}, True),
    ({"paid": {"isnot": True}}, {"paid": None}, True),
    ({"status": {"distinct": None}}, {"status": "x"}, True),
    ({"status": {"ilike": "P%"}}, {"status": "paid"}, True),
    ({"status": {"nlike": "p%"}}, {"status": "x"}, True),
    ({"amount": {"between": [1, 2]}}, {"amount": Decimal("1.5")}, True),
    ({"amount": {"nbetween": [1, 2]}}, {"amount": Decimal("1.5")}, False),
    ({"doc": {"eq": {"a": [1, 2]}}}, {"doc": {"a": [1, 2.0]}}, True),
    ({"$or": [{"status": "a"}, {"id": {"lt": 0}}]}, {"status": "b", "id": -1}, True),
    ({"$not": {"status": "a"}}, {"status": "a"}, False),
    ("status=eq.pending&amount=gte.100", {"status": "pending", "amount": Decimal(100)}, True),
    ("id=in.(1,2,3)", {"id": 3}, True),
    ("status=in.(\"a,b\",c)", {"status": "a,b"}, True),
    ("status=not.eq.a", {"status": "b"}, True),
    ("status=like.pen*", {"status": "pending"}, True),
    ("status=is.null", {"status": None}, True),
    ("paid=is.true", {"paid": True}, True),
    ("status=isdistinct.a", {"status": None}, True),
    ("or=(status.eq.a,and(amount.gt.5,amount.lt.10))", {"status": "b", "amount": Decimal(7)}, True),
    ("not.or=(status.eq.a,status.eq.b)", {"status": "b"}, False),
    ("status=eq.a%20b", {"status": "a b"}, True),
])
def test_object_and_postgrest_semantics(flt, record, expected):
    assert value(flt, **record) is expected


@pytest.mark.parametrize("flt, message", [
    ("nope = 1", "unknown column 'nope'"),
    ("status = 5", "cannot compare column 'status' (text) with a number literal 5"),
    ("id = 'abc'", 'invalid input syntax for type integer: "abc"'),
    ("qty = '40000'", "out of range for type smallint"),
    ("id = '3000000000'", "out of range for type integer"),
    ("amount = 'ten'", "invalid input syntax for type numeric"),
    ("ratio = '1e400'", "out of range for type double precision"),
    ("paid = 'maybe'", "invalid input syntax for type boolean"),
    ("paid = 1", "cannot compare column 'paid' (bool)"),
    ("ts > 'yesterday'", "invalid input syntax for type timestamp with time zone"),
    ("day = '2026-02-30'", "invalid input syntax for type date"),
    ("uid = 'not-a-uuid'", "invalid input syntax for type uuid"),
    ("doc = '{bad json'", "invalid input syntax for type jsonb"),
    ("doc > '1'", "operator > is not supported on column 'doc' (jsonb)"),
    ("raw = '{}'", "operator = is not supported on column 'raw' (json)"),
    ("tags = '{a}'", "operator = is not supported on column 'tags' (_text)"),
    ("span > '1 day'", "operator > is not supported on column 'span' (interval)"),
    ("mood < 'happy'", "operator < is not supported on column 'mood' (mood)"),
    ("id LIKE '1%'", "operator LIKE needs a text column; 'id' is int4"),
    ("status LIKE 'ab\\'", "LIKE pattern must not end with escape character"),
    ("id IS TRUE", "IS TRUE/FALSE/UNKNOWN needs a boolean column"),
    ("status = 1::int4", "cannot compare column 'status' (text) with a value cast to int4"),
    ("ts = '2026-01-01'::uuid", "invalid input syntax for type uuid"),
    ("ts = '1'::point", "casts to point are not supported"),
    ("blob = '\\xzz'", "invalid hexadecimal data for type bytea"),
    ({"status": {"eq": {"a": 1}}}, "a JSON object/array can only be compared with a jsonb column"),
])
def test_type_errors_are_reported_at_compile_time(flt, message):
    with pytest.raises(FilterError) as e:
        compile_filter(flt, SCHEMA)
    assert message in str(e.value)
    assert e.value.hint or "unknown column" not in message


def test_unknown_column_error_lists_the_columns():
    with pytest.raises(FilterError) as e:
        compile_filter({"stauts": "a"}, SCHEMA)
    assert e.value.position == "stauts"
    assert "status" in e.value.hint


def test_matches_is_where_semantics_and_undecidable_when_columns_are_absent():
    f = compile_filter("status = 'a' AND amount > 10", SCHEMA)
    assert f.matches({"status": "a", "amount": Decimal(11)}) is True
    assert f.matches({"status": None, "amount": Decimal(11)}) is False  # NULL does not match
    assert f.matches({"status": "a"}) is None  # amount absent: cannot decide
    assert f.matches({"status": "b"}) is False  # decided without amount
    assert f.matches({}) is None
    g = compile_filter("NOT (status = 'a' AND amount > 10)", SCHEMA)
    assert g.matches({"status": "b"}) is True  # NOT(false AND ?) is true
    assert g.matches({"status": None}) is None  # NOT(NULL AND ?) is NULL or true
    h = compile_filter("status = 'a' OR amount > 10", SCHEMA)
    assert h.matches({"status": "a"}) is True
    assert h.matches({"status": None}) is None


def test_equal_filters_compile_equal_whatever_the_syntax():
    a = compile_filter("status = 'pending' AND amount >= 100", SCHEMA)
    b = compile_filter({"status": "pending", "amount": {"gte": 100}}, SCHEMA)
    c = compile_filter("status=eq.pending&amount=gte.100", SCHEMA)
    assert a.node == b.node and a == b and hash(a) == hash(b)  # positions do not count
    assert c.node != a.node  # 100 is a number in SQL and the object form, a quoted value in PostgREST
    assert c.sql_value({"status": "pending", "amount": Decimal(100)}) is True
    assert compile_filter("status = 'x'", SCHEMA) != compile_filter("status = 'y'", SCHEMA)


def test_like_is_linear_on_pathological_patterns():
    import time as _time
    f = compile_filter("status LIKE '%a%a%a%a%a%a%a%a%a%a%b'", SCHEMA)
    s = "a" * 20_000
    t0 = _time.perf_counter()
    assert f.sql_value({"status": s}) is False
    assert _time.perf_counter() - t0 < 0.5


def test_timestamptz_literal_without_zone_is_utc():
    f = compile_filter("ts = '2026-06-01 12:00'", SCHEMA)
    assert f.sql_value({"ts": datetime(2026, 6, 1, 12, tzinfo=UTC)}) is True
    assert f.sql_value({"ts": datetime(2026, 6, 1, 14, tzinfo=timezone(timedelta(hours=2)))}) is True


@pytest.mark.parametrize("flt, record, expected", [
    ("day < '0001-01-01'", {"day": "0044-03-15 BC"}, True),  # BC dates (strings) sort before AD
    ("day > '-infinity'", {"day": "0044-03-15 BC"}, True),
    ("day = '-infinity'", {"day": "0044-03-15 BC"}, False),
    ("at > '9999-12-31 23:59:59'", {"at": "10000-01-01 00:00:00"}, True),  # beyond Python's years
    ("at < 'infinity'", {"at": "10000-01-01 00:00:00"}, True),
    ("clock > '23:59:59.999999'", {"clock": "24:00:00"}, True),
])
def test_date_values_python_cannot_hold(flt, record, expected):
    assert value(flt, **record) is expected


def test_values_outside_the_contract_are_undecidable_not_errors():
    f = compile_filter("id > 5", SCHEMA)
    assert f.matches({"id": "not an int"}) is None
    g = compile_filter("ts > '2026-01-01'", SCHEMA)
    assert g.matches({"ts": 12}) is None


def test_absurdly_deep_jsonb_values_are_undecidable_not_errors():
    doc: list = []
    for _ in range(100_000):
        doc = [doc]
    f = compile_filter("doc = '[]'", SCHEMA)
    assert f.matches({"doc": doc}) is None
