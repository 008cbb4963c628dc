"""cdc.values: Postgres text output -> values by type, the way back, and format_type."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.values import (
    BUILTIN_TYPE_NAMES,
    ValueError_,
    convert,
    converter_for,
    format_type,
    parse_array,
    quote_ident,
    to_pg_text,
)

UTC = timezone.utc


@pytest.mark.parametrize("type_name, text, expected", [
    ("int2", "-32768", -32768), ("int4", "2147483647", 2147483647),
    ("int8", "-9223372036854775808", -9223372036854775808), ("oid", "4294967295", 4294967295),
    ("numeric", "12345678901234567890.000000001", Decimal("12345678901234567890.000000001")),
    ("numeric", "1.50", Decimal("1.50")), ("float4", "1.5", 1.5), ("float8", "-2.5e-300", -2.5e-300),
    ("float8", "Infinity", math.inf), ("float8", "-Infinity", -math.inf),
    ("bool", "t", True), ("bool", "f", False), ("text", "a\nb", "a\nb"), ("bpchar", "ab   ", "ab   "),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("json", '{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}), ("jsonb", '"s"', "s"),
    ("jsonb", "123456789012345678901234567890", 123456789012345678901234567890),
    ("date", "2024-02-29", date(2024, 2, 29)), ("date", "infinity", "infinity"),
    ("date", "0044-03-15 BC", "0044-03-15 BC"),
    ("time", "23:59:59.999999", time(23, 59, 59, 999999)), ("time", "24:00:00", "24:00:00"),
    ("timetz", "12:00:00+05:30", time(12, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("timestamp", "2024-01-01 00:00:00.5", datetime(2024, 1, 1, 0, 0, 0, 500000)),
    ("timestamp", "-infinity", "-infinity"),
    ("timestamptz", "2024-01-01 10:00:00+02", datetime(2024, 1, 1, 8, tzinfo=UTC)),
    ("timestamptz", "1900-01-01 00:00:00+05:53:28", datetime(1899, 12, 31, 18, 6, 32, tzinfo=UTC)),
    ("timestamptz", "infinity", "infinity"),
    ("interval", "1 year 2 mons", "1 year 2 mons"), ("bytea", "\\x0a0b", "\\x0a0b"),
    ("mood", "happy", "happy"), ("unknown", "x", "x"),
])
def test_scalars(type_name, text, expected):
    got = convert(text, type_name)
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, datetime) and expected.tzinfo is not None:
        assert got.utcoffset() == timedelta(0)


def test_nan_and_null():
    assert math.isnan(convert("NaN", "float8")) and convert("NaN", "numeric").is_nan()
    assert convert(None, "int4") is None and convert(None, "_int4") is None


def test_bad_boolean_names_the_value():
    with pytest.raises(ValueError_, match="not a Postgres boolean: 'yes'"):
        convert("yes", "bool")


@pytest.mark.parametrize("type_name, text, expected", [
    ("_int4", "{1,NULL,3}", [1, None, 3]),
    ("_int4", "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
    ("_int4", "[0:1]={7,8}", [7, 8]),
    ("_int4", "{}", []),
    ("_text", '{"a b",NULL,"NULL","",x,"q\\"u\\\\o"}', ["a b", None, "NULL", "", "x", 'q"u\\o']),
    ("_numeric", "{1.5,NaN}", None),
    ("_bool", "{t,f,NULL}", [True, False, None]),
    ("_json", '{"{\\"a\\": 1}"}', [{"a": 1}]),
    ("_date", "{2024-01-01,infinity}", [date(2024, 1, 1), "infinity"]),
    ("_timestamptz", '{"2024-06-01 12:00:00+00"}', [datetime(2024, 6, 1, 12, tzinfo=UTC)]),
    ("_box", "{(1,1),(0,0);(2,2),(1,1)}", ["(1,1),(0,0)", "(2,2),(1,1)"]),
    ("_mood", "{sad,happy}", ["sad", "happy"]),
])
def test_arrays(type_name, text, expected):
    got = convert(text, type_name)
    if expected is None:
        assert got[0] == Decimal("1.5") and got[1].is_nan()
    else:
        assert got == expected


@pytest.mark.parametrize("text", ["", "1,2", "{1,2", "{1,2}}", '{"a}', "[1:2]{1,2}"])
def test_malformed_arrays_raise_naming_the_literal(text):
    with pytest.raises(ValueError_, match="malformed array literal"):
        parse_array(text, int)


def test_converters_are_cached_per_type():
    assert converter_for("_int4") is converter_for("_int4")


# -- the way back (wal2json rendering) ---------------------------------------------------------

@pytest.mark.parametrize("value, type_name, text", [
    (Decimal("1E-8"), "numeric", "0.00000001"), (Decimal("NaN"), "numeric", "NaN"),
    (Decimal("-Infinity"), "numeric", "-Infinity"), (1e20, "float8", "1e+20"),
    (1e15, "float8", "1e+15"), (1e14, "float8", "100000000000000"), (1.5e-7, "float8", "1.5e-07"),
    (0.0001, "float8", "0.0001"), (16777216.0, "float4", "1.6777216e+07"), (-0.0, "float8", "-0"),
    (math.nan, "float8", "NaN"), (math.inf, "float4", "Infinity"), (True, "bool", "t"),
    (datetime(2024, 1, 1, 8, 0, 0, 120000, tzinfo=UTC), "timestamptz", "2024-01-01 08:00:00.12+00"),
    (datetime(2024, 1, 1), "timestamp", "2024-01-01 00:00:00"),
    (time(12, tzinfo=timezone(timedelta(hours=5, minutes=30))), "timetz", "12:00:00+05:30"),
    (time(12, tzinfo=timezone(timedelta(hours=-3))), "timetz", "12:00:00-03"),
    (date(2024, 2, 29), "date", "2024-02-29"),
    ({"b": [1, 2.5, None], "a": "x"}, "jsonb", '{"b": [1, 2.5, null], "a": "x"}'),
    ("s", "json", '"s"'), (False, "jsonb", "false"),
    ([1, None, 3], "_int4", "{1,NULL,3}"), ([[1, 2], [3, 4]], "_int4", "{{1,2},{3,4}}"),
    (["a b", None, "NULL", "", "x", 'q"u\\o'], "_text", '{"a b",NULL,"NULL","",x,"q\\"u\\\\o"}'),
    ([True, False], "_bool", "{t,f}"),
    (["a;b", "x,y", " ", "null", "\x85"], "_text", '{a;b,"x,y"," ","null",\x85}'),  # as array_out prints
    ([{"a": 1}], "_json", '{"{\\"a\\": 1}"}'),
])
def test_to_pg_text(value, type_name, text):
    assert to_pg_text(value, type_name) == text


@given(st.one_of(
    st.tuples(st.integers(-2**63, 2**63 - 1), st.just("int8")),
    st.tuples(st.decimals(allow_nan=False, allow_infinity=False), st.just("numeric")),
    st.tuples(st.floats(allow_nan=False), st.just("float8")),
    st.tuples(st.dates(), st.just("date")),
    st.tuples(st.datetimes(), st.just("timestamp")),
    st.tuples(st.datetimes(timezones=st.just(UTC)), st.just("timestamptz")),
    st.tuples(st.lists(st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)))), max_size=5),
              st.just("_text")),
    st.tuples(st.lists(st.lists(st.integers(-9, 9), min_size=2, max_size=2), min_size=1, max_size=3),
              st.just("_int4")),
))
def test_text_round_trip(pair):
    value, type_name = pair
    back = convert(to_pg_text(value, type_name), type_name)
    assert back == value and type(back) is type(value)


# -- format_type -------------------------------------------------------------------------------

@pytest.mark.parametrize("oid, typmod, name, expected", [
    (1043, 24, "varchar", "character varying(20)"), (1043, -1, "varchar", "character varying"),
    (1700, ((10 << 16) | 2) + 4, "numeric", "numeric(10,2)"),
    (1700, ((5 << 16) | (-2 & 0x7FF)) + 4, "numeric", "numeric(5,-2)"), (1700, -1, "numeric", "numeric"),
    (1184, -1, "timestamptz", "timestamp with time zone"),
    (1184, 6, "timestamptz", "timestamp(6) with time zone"),
    (1114, 3, "timestamp", "timestamp(3) without time zone"),
    (1083, 2, "time", "time(2) without time zone"), (1266, 0, "timetz", "time(0) with time zone"),
    (1007, -1, "_int4", "integer[]"), (1015, 11, "_varchar", "character varying(7)[]"),
    (1115, 2, "_timestamp", "timestamp(2) without time zone[]"),
    (1042, 5, "bpchar", "character(1)"), (1042, -1, "bpchar", "bpchar"), (18, -1, "char", '"char"'),
    (1560, 3, "bit", "bit(3)"), (1560, -1, "bit", '"bit"'), (1562, 5, "varbit", "bit varying(5)"),
    (1186, 327679, "interval", "interval year"), (1186, 470351871, "interval", "interval day to second"),
    (1186, 2147418115, "interval", "interval(3)"), (1186, 470286338, "interval", "interval day to second(2)"),
    (16, -1, "bool", "boolean"), (700, -1, "float4", "real"), (701, -1, "float8", "double precision"),
    (21, -1, "int2", "smallint"), (20, -1, "int8", "bigint"), (3802, -1, "jsonb", "jsonb"),
    (16385, -1, "mood", "mood"), (16386, -1, "_mood", "mood[]"),
    (16385, -1, "mood", "mood"), (16385, -1, "Mood", '"Mood"'),
])
def test_format_type(oid, typmod, name, expected):
    assert format_type(oid, typmod, name) == expected


def test_format_type_qualifies_user_types_with_a_schema():
    assert format_type(16385, -1, "mood", "public") == "public.mood"
    assert format_type(16386, -1, "_mood", "My Schema") == '"My Schema".mood[]'


def test_format_type_needs_a_name_for_unknown_oids():
    with pytest.raises(ValueError, match="unknown type OID 99999"):
        format_type(99999, -1)


def test_quote_ident():
    assert quote_ident("orders") == "orders" and quote_ident("user") == '"user"'
    assert quote_ident("Order") == '"Order"' and quote_ident('a"b') == '"a""b"'


def test_builtin_table_covers_the_value_contract():
    for oid, name in {16: "bool", 17: "bytea", 20: "int8", 114: "json", 1700: "numeric",
                      1184: "timestamptz", 2950: "uuid", 3802: "jsonb", 1007: "_int4"}.items():
        assert BUILTIN_TYPE_NAMES[oid] == name
