"""Sans-IO conversion of Postgres text output to JSON-friendly Python values, by type.

The value contract (filters and clients rely on it), keyed by ``pg_type.typname``:

==========================  ===============================================================
int2, int4, int8, oid       ``int``
numeric                     ``decimal.Decimal``, exact (also ``NaN``, ``Infinity``, ``-Infinity``)
float4, float8              ``float`` (incl. nan, inf, -inf)
bool                        ``bool``
text, varchar, bpchar,      ``str`` as Postgres prints it (bpchar keeps its padding)
name, char, uuid
json, jsonb                 the parsed JSON value, never a string of JSON
date                        ``datetime.date``
time / timetz               ``datetime.time`` (timetz with a fixed-offset tzinfo)
timestamp                   naive ``datetime.datetime``
timestamptz                 aware ``datetime.datetime`` in UTC
interval, bytea, enums,     ``str`` as Postgres prints it (bytea: ``\\x0a0b``)
anything else
arrays (``_<elem>``)        ``list`` (nested for several dimensions); elements by element type
SQL NULL                    ``None``
==========================  ===============================================================

Date/time values Python cannot hold stay the strings Postgres printed: ``infinity``,
``-infinity``, BC dates, years past 9999, ``24:00:00``. They are never dropped or nulled.

The input is the output of a session with ``DateStyle=ISO`` and ``IntervalStyle=postgres`` (what
pgoutput and wal2json use when the replication connection sets ``CONNECTION_OPTIONS``).

``to_pg_text(value, type_name)`` goes back the other way (for the wal2json rendering), and
``format_type(type_oid, typmod, type_name)`` prints a type the way Postgres' ``format_type`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "CONNECTION_OPTIONS",
    "BUILTIN_TYPE_NAMES",
    "ValueError_",
    "converter_for",
    "inline_kind",
    "convert",
    "parse_array",
    "to_pg_text",
    "format_type",
    "quote_ident",
]

# libpq "options" for the replication connection: the text formats this module parses.
CONNECTION_OPTIONS = "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=1"

Converter = Callable[[str], Any]

BUILTIN_TYPE_NAMES: dict[int, str] = {
    16: 'bool', 17: 'bytea', 18: 'char', 19: 'name', 20: 'int8', 21: 'int2', 22: 'int2vector',
    23: 'int4', 24: 'regproc', 25: 'text', 26: 'oid', 27: 'tid', 28: 'xid', 29: 'cid',
    30: 'oidvector', 32: 'pg_ddl_command', 71: 'pg_type', 75: 'pg_attribute', 81: 'pg_proc',
    83: 'pg_class', 114: 'json', 142: 'xml', 143: '_xml', 194: 'pg_node_tree', 199: '_json',
    210: '_pg_type', 269: 'table_am_handler', 270: '_pg_attribute', 271: '_xid8', 272: '_pg_proc',
    273: '_pg_class', 325: 'index_am_handler', 600: 'point', 601: 'lseg', 602: 'path', 603: 'box',
    604: 'polygon', 628: 'line', 629: '_line', 650: 'cidr', 651: '_cidr', 700: 'float4',
    701: 'float8', 705: 'unknown', 718: 'circle', 719: '_circle', 774: 'macaddr8',
    775: '_macaddr8', 790: 'money', 791: '_money', 829: 'macaddr', 869: 'inet', 1000: '_bool',
    1001: '_bytea', 1002: '_char', 1003: '_name', 1005: '_int2', 1006: '_int2vector',
    1007: '_int4', 1008: '_regproc', 1009: '_text', 1010: '_tid', 1011: '_xid', 1012: '_cid',
    1013: '_oidvector', 1014: '_bpchar', 1015: '_varchar', 1016: '_int8', 1017: '_point',
    1018: '_lseg', 1019: '_path', 1020: '_box', 1021: '_float4', 1022: '_float8', 1027: '_polygon',
    1028: '_oid', 1033: 'aclitem', 1034: '_aclitem', 1040: '_macaddr', 1041: '_inet',
    1042: 'bpchar', 1043: 'varchar', 1082: 'date', 1083: 'time', 1114: 'timestamp',
    1115: '_timestamp', 1182: '_date', 1183: '_time', 1184: 'timestamptz', 1185: '_timestamptz',
    1186: 'interval', 1187: '_interval', 1231: '_numeric', 1248: 'pg_database', 1263: '_cstring',
    1266: 'timetz', 1270: '_timetz', 1560: 'bit', 1561: '_bit', 1562: 'varbit', 1563: '_varbit',
    1700: 'numeric', 1790: 'refcursor', 2201: '_refcursor', 2202: 'regprocedure', 2203: 'regoper',
    2204: 'regoperator', 2205: 'regclass', 2206: 'regtype', 2207: '_regprocedure',
    2208: '_regoper', 2209: '_regoperator', 2210: '_regclass', 2211: '_regtype', 2249: 'record',
    2275: 'cstring', 2276: 'any', 2277: 'anyarray', 2278: 'void', 2279: 'trigger',
    2280: 'language_handler', 2281: 'internal', 2283: 'anyelement', 2287: '_record',
    2776: 'anynonarray', 2842: 'pg_authid', 2843: 'pg_auth_members', 2949: '_txid_snapshot',
    2950: 'uuid', 2951: '_uuid', 2970: 'txid_snapshot', 3115: 'fdw_handler', 3220: 'pg_lsn',
    3221: '_pg_lsn', 3310: 'tsm_handler', 3361: 'pg_ndistinct', 3402: 'pg_dependencies',
    3500: 'anyenum', 3614: 'tsvector', 3615: 'tsquery', 3642: 'gtsvector', 3643: '_tsvector',
    3644: '_gtsvector', 3645: '_tsquery', 3734: 'regconfig', 3735: '_regconfig',
    3769: 'regdictionary', 3770: '_regdictionary', 3802: 'jsonb', 3807: '_jsonb', 3831: 'anyrange',
    3838: 'event_trigger', 3904: 'int4range', 3905: '_int4range', 3906: 'numrange',
    3907: '_numrange', 3908: 'tsrange', 3909: '_tsrange', 3910: 'tstzrange', 3911: '_tstzrange',
    3912: 'daterange', 3913: '_daterange', 3926: 'int8range', 3927: '_int8range',
    4066: 'pg_shseclabel', 4072: 'jsonpath', 4073: '_jsonpath', 4089: 'regnamespace',
    4090: '_regnamespace', 4096: 'regrole', 4097: '_regrole', 4191: 'regcollation',
    4192: '_regcollation', 4451: 'int4multirange', 4532: 'nummultirange', 4533: 'tsmultirange',
    4534: 'tstzmultirange', 4535: 'datemultirange', 4536: 'int8multirange', 4537: 'anymultirange',
    4538: 'anycompatiblemultirange', 4600: 'pg_brin_bloom_summary',
    4601: 'pg_brin_minmax_multi_summary', 5017: 'pg_mcv_list', 5038: 'pg_snapshot',
    5039: '_pg_snapshot', 5069: 'xid8', 5077: 'anycompatible', 5078: 'anycompatiblearray',
    5079: 'anycompatiblenonarray', 5080: 'anycompatiblerange', 6101: 'pg_subscription',
    6150: '_int4multirange', 6151: '_nummultirange', 6152: '_tsmultirange',
    6153: '_tstzmultirange', 6155: '_datemultirange', 6157: '_int8multirange',
}


class ValueError_(ValueError):
    """A value's text is not what Postgres prints for its type (e.g. a malformed array literal).

    Whose fault: the input stream (or a DateStyle other than ISO on the replication connection).
    Hint: connect with ``options=CONNECTION_OPTIONS``.
    """


def _bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError_(f"not a Postgres boolean: {text!r} (expected 't' or 'f')")




def _json(text: str) -> Any:
    return json.loads(text)


def _date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text  # infinity, -infinity, BC dates, years past 9999


def _time(text: str) -> time | str:
    try:
        return time.fromisoformat(text)
    except ValueError:
        return text  # 24:00:00


def _timestamp(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


_UTC = timezone.utc
_fromisoformat = datetime.fromisoformat


def _timestamptz(text: str) -> datetime | str:
    try:
        dt = _fromisoformat(text)
    except ValueError:
        return text  # infinity, -infinity, BC, years past 9999
    tz = dt.tzinfo
    if tz is _UTC:  # the common case: a UTC session prints "+00"
        return dt
    if tz is None:  # not what ISO output prints; treat as UTC rather than guess
        return dt.replace(tzinfo=_UTC)
    try:
        return dt.astimezone(_UTC)
    except OverflowError:
        return text


def _str(text: str) -> str:
    return text


_SCALARS: dict[str, Converter] = {
    "int2": int, "int4": int, "int8": int, "oid": int,
    "numeric": Decimal,
    "float4": float, "float8": float,
    "bool": _bool,
    "json": _json, "jsonb": _json,
    "date": _date, "time": _time, "timetz": _time,
    "timestamp": _timestamp, "timestamptz": _timestamptz,
}


def _array_converter(elem: Converter, delim: str) -> Converter:
    identity = elem is _str

    def convert_array(text: str) -> list[Any]:
        # fast path: one dimension, no quoted elements (the common case)
        if text[:1] == "{" and text.find("{", 1) < 0 and '"' not in text and "\\" not in text:
            if text[-1:] != "}":
                raise ValueError_(f"malformed array literal {text[:60]!r}: expected '}}' at the end")
            if len(text) == 2:
                return []
            items = text[1:-1].split(delim)
            if "NULL" in items:
                return [None if item == "NULL" else elem(item) for item in items]
            return items if identity else list(map(elem, items))
        return parse_array(text, elem, delim)

    return convert_array


_cache: dict[str, Converter] = {}


def converter_for(type_name: str) -> Converter:
    """The function turning a column's text output into its value (see the module table)."""
    conv = _cache.get(type_name)
    if conv is None:
        if type_name.startswith("_") and len(type_name) > 1:
            elem_name = type_name[1:]
            conv = _array_converter(converter_for(elem_name), ";" if elem_name == "box" else ",")
        else:
            conv = _SCALARS.get(type_name, _str)
        _cache[type_name] = conv
    return conv


_INLINE_KINDS: dict[Any, str] = {
    _str: "str", int: "int", Decimal: "numeric", float: "float", _bool: "bool",
    _timestamptz: "timestamptz", _timestamp: "timestamp", _date: "date",
}


def inline_kind(type_name: str) -> str:
    """How ``cdc.assembler.compile_row_decoder`` converts this type without a call: "str" (the
    text as is), "str_array" (an array of such), "int", "numeric", "float", "bool",
    "timestamptz", "timestamp", "date", or "call" (it calls ``converter_for(type_name)``).
    Derived from ``converter_for``, so both paths agree on the type mapping."""
    if type_name[:1] == "_" and type_name != "_box" and converter_for(type_name[1:]) is _str:
        return "str_array"  # 1-D, unquoted: split inline; anything else: converter_for
    return _INLINE_KINDS.get(converter_for(type_name), "call")


def convert(text: str | None, type_name: str) -> Any:
    """One value: ``None`` stays ``None``; otherwise ``converter_for(type_name)(text)``."""
    if text is None:
        return None
    return converter_for(type_name)(text)


def parse_array(text: str, elem: Converter = _str, delim: str = ",") -> list[Any]:
    """Parse an array literal as Postgres prints it: ``{1,NULL,"a b"}``, ``{{1,2},{3,4}}``,
    ``[0:1]={1,2}`` (explicit bounds are dropped). ``NULL`` elements become ``None``."""
    pos = 0
    if text.startswith("["):
        eq = text.find("=")
        if eq < 0:
            raise ValueError_(f"malformed array literal {text[:60]!r}: bounds without '='")
        pos = eq + 1
    n = len(text)
    if pos >= n or text[pos] != "{":
        raise ValueError_(f"malformed array literal {text[:60]!r}: expected '{{'")
    stack: list[list[Any]] = []
    result: list[Any] | None = None
    while pos < n:
        ch = text[pos]
        if ch == "{":
            new: list[Any] = []
            if stack:
                stack[-1].append(new)
            stack.append(new)
            pos += 1
        elif ch == "}":
            if not stack:
                raise ValueError_(f"malformed array literal {text[:60]!r}: unbalanced '}}'")
            done = stack.pop()
            pos += 1
            if not stack:
                result = done
                break
        elif ch == delim:
            pos += 1
        elif ch == '"':
            pos += 1
            parts = []
            start = pos
            while True:
                if pos >= n:
                    raise ValueError_(f"malformed array literal {text[:60]!r}: unterminated quote")
                c = text[pos]
                if c == "\\":
                    parts.append(text[start:pos])
                    parts.append(text[pos + 1:pos + 2])
                    pos += 2
                    start = pos
                elif c == '"':
                    parts.append(text[start:pos])
                    pos += 1
                    break
                else:
                    pos += 1
            if not stack:
                raise ValueError_(f"malformed array literal {text[:60]!r}")
            stack[-1].append(elem("".join(parts)))
        else:
            start = pos
            while pos < n and text[pos] not in (delim, "}"):
                pos += 1
            token = text[start:pos].strip(" \t\n\r\v\f")  # array_isspace: ASCII only
            if not stack:
                raise ValueError_(f"malformed array literal {text[:60]!r}")
            if token.upper() == "NULL":
                stack[-1].append(None)
            else:
                stack[-1].append(elem(token.replace("\\", "") if "\\" in token else token))
    if result is None or pos != n:
        raise ValueError_(f"malformed array literal {text[:60]!r}: unbalanced braces")
    return result


# ---------------------------------------------------------------------------------------------
# Python value -> Postgres text output (the inverse of the table above; used by wal2json_render)


def _frac(us: int) -> str:
    return ("." + f"{us:06d}".rstrip("0")) if us else ""


def _offset(dt: datetime | time) -> str:
    off = dt.utcoffset()
    if off is None:
        return ""
    secs = int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = f"{sign}{h:02d}"
    if m or s:
        out += f":{m:02d}"
    if s:
        out += f":{s:02d}"
    return out


def _float_text(v: float, type_name: str = "float8") -> str:
    """float4out/float8out (shortest exact digits, as with extra_float_digits >= 1)."""
    if v != v:
        return "NaN"
    if v in (_INF, -_INF):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(v)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = len(digits) + int(exp) - 1  # position of the first digit
    limit = 6 if type_name == "float4" else 15
    neg = "-" if sign else ""
    if -4 <= exp10 < limit:
        if exp10 < 0:
            return f"{neg}0.{'0' * (-exp10 - 1)}{ds}"
        whole = ds[:exp10 + 1].ljust(exp10 + 1, "0")
        frac = ds[exp10 + 1:]
        return f"{neg}{whole}.{frac}" if frac else f"{neg}{whole}"
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{neg}{mant}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


_INF = float("inf")


def _elem_text(value: Any, elem_type: str, delim: str = ",") -> str:
    if value is None:
        return "NULL"
    text = to_pg_text(value, elem_type)
    assert text is not None
    # array_out quotes empty strings, NULL look-alikes, and anything with {}"\, the delimiter
    # or ASCII whitespace
    if (text == "" or text.upper() == "NULL" or delim in text
            or any(c in text for c in '{}"\\ \t\n\r\v\f')):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def to_pg_text(value: Any, type_name: str) -> str | None:
    """What Postgres prints for ``value`` of type ``type_name`` (ISO DateStyle, UTC for
    timestamptz). ``None`` -> ``None``. Inverse of ``convert`` up to json whitespace."""
    if value is None:
        return None
    if type_name in ("json", "jsonb"):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value, type_name)
    if isinstance(value, list):
        elem_type = type_name[1:] if type_name.startswith("_") else "text"
        delim = ";" if elem_type == "box" else ","
        return _elem_text_list(value, elem_type, delim)
    if isinstance(value, datetime):
        return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:"
                f"{value.minute:02d}:{value.second:02d}{_frac(value.microsecond)}{_offset(value)}")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return (f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
                f"{_frac(value.microsecond)}{_offset(value)}")
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _elem_text_list(value: list[Any], elem_type: str, delim: str) -> str:
    return "{" + delim.join(
        _elem_text_list(v, elem_type, delim) if isinstance(v, list) else _elem_text(v, elem_type, delim)
        for v in value) + "}"


# ---------------------------------------------------------------------------------------------
# format_type

_INTERVAL_FIELDS = {
    4: " year", 2: " month", 8: " day", 1024: " hour", 2048: " minute", 4096: " second",
    6: " year to month", 1032: " day to hour", 3080: " day to minute", 7176: " day to second",
    3072: " hour to minute", 7168: " hour to second", 6144: " minute to second", 32767: "",
}

# Postgres' SQL-standard spellings (format_type.c); with a typmod they take "(n)" etc.
_SPECIAL = {
    "bool": "boolean", "float4": "real", "float8": "double precision", "int2": "smallint",
    "int4": "integer", "int8": "bigint", "numeric": "numeric", "interval": "interval",
    "time": "time without time zone", "timetz": "time with time zone",
    "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
    "varbit": "bit varying", "varchar": "character varying", "bpchar": "character", "bit": "bit",
}

# Names quote_identifier() leaves alone: lowercase identifiers that are not keywords (except
# unreserved ones). Keywords are those of Postgres 15 that can collide with a type name.
_QUOTED_KEYWORDS = frozenset("""
all analyse analyze and any array as asc asymmetric authorization between bigint binary bit
boolean both case cast char character check coalesce collate collation column concurrently
constraint create cross current_catalog current_date current_role current_schema current_time
current_timestamp current_user dec decimal default deferrable desc distinct do else end except
exists extract false fetch float for foreign freeze from full grant greatest group grouping
having ilike in initially inner inout int integer intersect interval into is isnull join
json_array json_arrayagg json_object json_objectagg lateral leading least left like limit
localtime localtimestamp national natural nchar none normalize not notnull null nullif numeric
offset on only or order out outer overlaps overlay placing position precision primary real
references returning right row select session_user setof similar smallint some substring
symmetric table tablesample then time timestamp to trailing treat trim true union unique user
using values varchar variadic verbose when where window with xmlattributes xmlconcat xmlelement
xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
""".split())


def quote_ident(name: str) -> str:
    """Postgres' quote_identifier(): quote unless a plain lowercase non-keyword identifier."""
    safe = (name != "" and (name[0].islower() or name[0] == "_") and name.isascii()
            and all(c.islower() or c.isdigit() or c in "_$" for c in name)
            and name not in _QUOTED_KEYWORDS)
    return name if safe else '"' + name.replace('"', '""') + '"'


def _typmod_suffix(base: str, typmod: int) -> str:
    if base in ("varchar", "bpchar"):
        return f"({typmod - 4})"
    if base in ("bit", "varbit"):
        return f"({typmod})"
    if base == "numeric":
        t = typmod - 4
        precision = (t >> 16) & 0xFFFF
        scale = ((t & 0x7FF) ^ 1024) - 1024
        return f"({precision},{scale})"
    if base in ("time", "timestamp"):
        return f"({typmod}) without time zone"
    if base in ("timetz", "timestamptz"):
        return f"({typmod}) with time zone"
    if base == "interval":
        precision = typmod & 0xFFFF
        fields = _INTERVAL_FIELDS.get((typmod >> 16) & 0x7FFF, "")
        return f"{fields}({precision})" if precision != 0xFFFF else fields
    return f"({typmod})"


_TYPMOD_NAMES = {"time": "time", "timetz": "time", "timestamp": "timestamp",
                 "timestamptz": "timestamp", "varbit": "bit varying", "varchar": "character varying",
                 "bpchar": "character"}


def format_type(type_oid: int, typmod: int = -1, type_name: str | None = None,
                schema: str | None = None) -> str:
    """What ``format_type(type_oid, typmod)`` prints (the typmod-given form wal2json uses):
    ``character varying(20)``, ``numeric(10,2)``, ``timestamp with time zone``, ``integer[]``.

    ``type_name`` (pg_type.typname) is needed for types outside the built-in table; such types
    are printed qualified with ``schema`` when given (as Postgres does for a type not visible on
    the search_path), else unqualified; quoted when needed.
    """
    name = BUILTIN_TYPE_NAMES.get(type_oid) or type_name
    if name is None:
        raise ValueError(f"format_type: unknown type OID {type_oid} and no type_name given")
    is_array = name.startswith("_") and len(name) > 1
    base = name[1:] if is_array else name
    with_typmod = typmod >= 0
    if base in _SPECIAL:
        if with_typmod:
            out = _TYPMOD_NAMES.get(base, base) + _typmod_suffix(base, typmod)
        elif base in ("bpchar", "bit"):
            out = quote_ident(base)  # bare bpchar/bit mean (1) in SQL: print the catalog name
        else:
            out = _SPECIAL[base]
    else:
        out = quote_ident(base) if not schema else f"{quote_ident(schema)}.{quote_ident(base)}"
        if with_typmod:
            out += f"({typmod})"
    return out + "[]" if is_array else out
