"""Column types as the filter engine sees them: families, literal input, and comparison keys.

Pure. A *family* groups Postgres types that compare the same way (int2/int4/int8/oid are
``int``; text/varchar/name/"char" are ``text``; ...). For each family this module knows:

- ``parse``: the literal's text -> a Python value, accepting what Postgres' input function accepts
  for the common forms, raising ``ValueError`` with a message otherwise;
- ``key``: a record value (per the value contract of ``cdc.values``) -> a key that Python compares
  exactly as Postgres compares the column (numeric NaN above everything, timestamps as instants,
  bpchar without trailing spaces, jsonb structurally, ...). ``None`` means "the value itself".

Comparison keys of two families meet in a *domain* (``domain_of``): int with numeric compares
exactly as numbers, numeric/int with float as float8, date with timestamp(tz) as instants, bpchar
with text as text. Other mixes are type errors, reported when a filter is compiled.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

__all__ = [
    "Family", "family_of", "family_for_cast", "domain_of", "to_domain", "TOP", "BOTTOM",
    "ORDERED", "LIKEABLE", "EQUATABLE", "pg_lower", "to_float", "parse_text", "common_domain", "json_key",
]


class _Extreme:
    """Keys outside every ordinary value: TOP (numeric/float NaN, 'infinity') above all, BOTTOM
    ('-infinity') below all; LATE / EARLY just inside them for dates Python cannot hold (years
    after 9999, time 24:00:00 / BC dates): they order correctly against ordinary values."""

    __slots__ = ("_rank", "_name")

    def __init__(self, rank: int, name: str) -> None:
        self._rank = rank
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __hash__(self) -> int:
        return hash(self._name)

    def _cmp(self, other: object) -> int:
        r = other._rank if isinstance(other, _Extreme) else 0
        return (self._rank > r) - (self._rank < r)

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def __lt__(self, other: object) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: object) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: object) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: object) -> bool:
        return self._cmp(other) >= 0


TOP = _Extreme(2, "TOP")
LATE = _Extreme(1, "LATE")
EARLY = _Extreme(-1, "EARLY")
BOTTOM = _Extreme(-2, "BOTTOM")

Family = str  # "int", "numeric", "float4", "float8", "bool", "text", "bpchar", "uuid", "date",
# "time", "timetz", "timestamp", "timestamptz", "jsonb", "bytea", "json", "interval", "array",
# "other"

_TYPE_FAMILY: dict[str, Family] = {
    "int2": "int", "int4": "int", "int8": "int", "oid": "int",
    "numeric": "numeric", "float4": "float4", "float8": "float8", "bool": "bool",
    "text": "text", "varchar": "text", "name": "text", "char": "text", "bpchar": "bpchar",
    "uuid": "uuid", "date": "date", "time": "time", "timetz": "timetz",
    "timestamp": "timestamp", "timestamptz": "timestamptz",
    "jsonb": "jsonb", "json": "json", "bytea": "bytea", "interval": "interval",
}
ORDERED = frozenset({"int", "numeric", "float4", "float8", "bool", "text", "bpchar", "uuid", "date",
                     "time", "timetz", "timestamp", "timestamptz", "bytea"})
LIKEABLE = frozenset({"text", "bpchar"})
EQUATABLE = ORDERED | {"jsonb", "other"}

# Names a cast may use (after pglast's normalisation), mapped to pg_type.typname.
_CAST_ALIASES = {
    "int": "int4", "integer": "int4", "smallint": "int2", "bigint": "int8", "decimal": "numeric",
    "real": "float4", "double precision": "float8", "float": "float8", "boolean": "bool",
    "character varying": "varchar", "character": "bpchar", "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp", "time with time zone": "timetz",
    "time without time zone": "time",
}


def family_of(type_name: str) -> Family:
    """The family of a column's ``pg_type.typname`` (arrays start with ``_``)."""
    if type_name.startswith("_"):
        return "array"
    return _TYPE_FAMILY.get(type_name, "other")


def family_for_cast(name: str) -> tuple[str, Family] | None:
    """``(typname, family)`` for a cast target, or None when casts to it are not supported."""
    typname = _CAST_ALIASES.get(name, name)
    fam = _TYPE_FAMILY.get(typname)
    if fam is None or fam in ("json", "interval"):
        return None
    return typname, fam


# ---------------------------------------------------------------- literal input, per family

_INT_RANGE = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1),
              "int8": (-(2**63), 2**63 - 1), "oid": (-(2**31), 2**32 - 1)}
_INT_RE = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)
_NUM_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
_SPECIAL_FLOAT = {"nan": math.nan, "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf,
                  "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}
_SPECIAL_NUMERIC = {"nan": Decimal("NaN"), "infinity": Decimal("Infinity"), "+infinity": Decimal("Infinity"),
                    "-infinity": Decimal("-Infinity"), "inf": Decimal("Infinity"),
                    "+inf": Decimal("Infinity"), "-inf": Decimal("-Infinity")}
_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?", re.ASCII)
_TZ_RE = re.compile(r"\s*(?:(Z|UTC|GMT)|([+-])(\d{1,2})(?::?(\d{2}))?(?::(\d{2}))?)", re.ASCII | re.IGNORECASE)


def _parse_int(text: str, typname: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(f'invalid input syntax for type {_pretty(typname)}: "{text}"')
    v = int(text)
    lo, hi = _INT_RANGE.get(typname, _INT_RANGE["int8"])
    if not lo <= v <= hi:
        raise ValueError(f'value "{text}" is out of range for type {_pretty(typname)}')
    return v


def _parse_numeric(text: str) -> Decimal:
    special = _SPECIAL_NUMERIC.get(text.strip().lower())
    if special is not None:
        return special
    if not _NUM_RE.fullmatch(text):
        raise ValueError(f'invalid input syntax for type numeric: "{text}"')
    return Decimal(text.strip())


def _f32(x: Any) -> float:
    try:
        return struct.unpack("f", struct.pack("f", float(x)))[0]
    except OverflowError:  # beyond float4: Postgres would have refused it on input
        return math.copysign(math.inf, float(x))


def _parse_float(text: str, typname: str) -> float:
    stripped = text.strip().lower()
    if stripped in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[stripped]
    if not _NUM_RE.fullmatch(text):
        raise ValueError(f'invalid input syntax for type {_pretty(typname)}: "{text}"')
    v = float(stripped)
    if math.isinf(v) or (typname == "float4" and abs(v) > 3.4028234663852886e38):
        raise ValueError(f'"{text}" is out of range for type {_pretty(typname)}')
    return _f32(v) if typname == "float4" else v


def _parse_bool(text: str) -> bool:
    s = text.strip().lower()
    if s:
        for word, value, min_len in (("true", True, 1), ("false", False, 1), ("yes", True, 1),
                                     ("no", False, 1), ("on", True, 2), ("off", False, 2)):
            if len(s) >= min_len and word.startswith(s):
                return value
        if s in ("1", "0"):
            return s == "1"
    raise ValueError(f'invalid input syntax for type boolean: "{text}"')


def _parse_uuid(text: str) -> str:
    s = text.strip()
    try:
        if s.lower().startswith("urn:"):
            raise ValueError
        return str(uuid.UUID(s))
    except ValueError:
        raise ValueError(f'invalid input syntax for type uuid: "{text}"') from None


def _parse_date(text: str) -> date | str:
    try:
        v = _parse_timestamp(text, False)  # Postgres drops a time of day (and zone) given to date
    except ValueError:
        raise ValueError(f'invalid input syntax for type date: "{text}" (expected YYYY-MM-DD)') from None
    return v if isinstance(v, str) else v.date()


def _micros(frac: str | None) -> tuple[int, int]:
    """Fraction digits -> (microseconds, carry seconds), rounded half to even like Postgres."""
    if not frac:
        return 0, 0
    us = round(Decimal("0." + frac) * 1_000_000)
    return (us - 1_000_000, 1) if us >= 1_000_000 else (int(us), 0)


def _parse_time_part(text: str, s: str) -> tuple[time, int, str]:
    """Leading HH:MM[:SS[.f]] of s -> (time, carry days, rest)."""
    m = _TIME_RE.match(s)
    if not m:
        raise ValueError
    us, carry = _micros(m[4])
    h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0) + carry
    extra = 0
    if sec == 60:
        sec, mi = 0, mi + 1
    if mi == 60:
        mi, h = 0, h + 1
    if h == 24 and mi == 0 and sec == 0 and us == 0:
        h, extra = 0, 1
    return time(h, mi, sec, us), extra, s[m.end():]


def _parse_offset(rest: str) -> tuple[timezone | None, str]:
    m = _TZ_RE.match(rest)
    if not m:
        return None, rest
    if m[1]:
        return timezone.utc, rest[m.end():]
    sign = -1 if m[2] == "-" else 1
    off = timedelta(hours=int(m[3]), minutes=int(m[4] or 0), seconds=int(m[5] or 0))
    if off >= timedelta(hours=16):
        raise ValueError
    return timezone(sign * off), rest[m.end():]


def _parse_timestamp(text: str, with_tz: bool) -> datetime | str:
    typ = "timestamp with time zone" if with_tz else "timestamp without time zone"
    s = text.strip()
    low = s.lower()
    if low in ("infinity", "+infinity", "-infinity"):
        return low.lstrip("+")
    try:
        m = _DATE_RE.match(s)
        if not m:
            raise ValueError
        d = date(int(m[1]), int(m[2]), int(m[3]))
        rest = s[m.end():]
        t, carry, tz = time(0), 0, None
        if rest[:1] in ("T", "t", " "):
            rest = rest[1:].lstrip() if rest[:1] == " " else rest[1:]
            t, carry, rest = _parse_time_part(text, rest)
            tz, rest = _parse_offset(rest)
        elif rest:
            tz, rest = _parse_offset(rest)
        if rest.strip():
            raise ValueError
        dt = datetime.combine(d, t) + timedelta(days=carry)
    except (ValueError, OverflowError):
        raise ValueError(f'invalid input syntax for type {typ}: "{text}" '
                         "(expected ISO 8601, e.g. 2026-01-31 12:00:00+00)") from None
    if not with_tz:
        return dt  # Postgres ignores a zone given to timestamp without time zone
    return (dt.replace(tzinfo=tz) if tz else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _parse_time(text: str, with_tz: bool) -> time:
    s = text.strip()
    try:
        t, carry, rest = _parse_time_part(text, s)
        tz, rest = _parse_offset(rest)
        if rest.strip() or carry:
            raise ValueError
    except ValueError:
        raise ValueError(f'invalid input syntax for type {"timetz" if with_tz else "time"}: "{text}" '
                         "(expected HH:MM[:SS[.ffffff]])") from None
    return t.replace(tzinfo=tz or timezone.utc) if with_tz else t


def _parse_jsonb(text: str) -> Any:
    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constants)
    except ValueError as e:
        raise ValueError(f'invalid input syntax for type jsonb: "{_short(text)}" ({e})') from None


_HEX_RE = re.compile(r"(?:\s*[0-9a-fA-F]{2})*\s*", re.ASCII)


def _parse_bytea(text: str) -> str:
    if text[:2] in ("\\x", "\\X"):
        body = text[2:]
        if not _HEX_RE.fullmatch(body):
            raise ValueError(f'invalid hexadecimal data for type bytea: "{_short(text)}"')
        return "\\x" + "".join(body.split()).lower()
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C:
            if raw[i + 1:i + 2] == b"\\":
                out.append(0x5C)
                i += 2
                continue
            octal = raw[i + 1:i + 4]
            if len(octal) == 3 and all(0x30 <= o <= 0x37 for o in octal) and octal[0] <= 0x33:
                out.append(int(octal, 8))
                i += 4
                continue
            raise ValueError(f'invalid input syntax for type bytea: "{_short(text)}"')
        out.append(c)
        i += 1
    return "\\x" + out.hex()


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _pretty(typname: str) -> str:
    return {"int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real",
            "float8": "double precision"}.get(typname, typname)


def parse_text(text: str, typname: str, family: Family) -> Any:
    """A literal's text -> the value Postgres' input function would produce (ValueError if not)."""
    if "\x00" in text:
        raise ValueError("literals must not contain NUL characters")
    if family == "int":
        return _parse_int(text, typname)
    if family == "numeric":
        return _parse_numeric(text)
    if family in ("float4", "float8"):
        return _parse_float(text, family)
    if family == "bool":
        return _parse_bool(text)
    if family == "uuid":
        return _parse_uuid(text)
    if family == "date":
        return _parse_date(text)
    if family in ("timestamp", "timestamptz"):
        return _parse_timestamp(text, family == "timestamptz")
    if family in ("time", "timetz"):
        return _parse_time(text, family == "timetz")
    if family == "jsonb":
        return _parse_jsonb(text)
    if family == "bytea":
        return _parse_bytea(text)
    return text  # text, bpchar, other (enums, unknown types: compared by their text)


# ---------------------------------------------------------------- comparison keys and domains

# (family a, family b) -> the domain both are compared in
_DOMAINS: dict[frozenset[str], str] = {
    frozenset({"int", "numeric"}): "numeric",
    frozenset({"int", "float4"}): "float8", frozenset({"int", "float8"}): "float8",
    frozenset({"numeric", "float4"}): "float8", frozenset({"numeric", "float8"}): "float8",
    frozenset({"float4", "float8"}): "float8",
    frozenset({"date", "timestamp"}): "timestamp", frozenset({"date", "timestamptz"}): "timestamptz",
    frozenset({"timestamp", "timestamptz"}): "timestamptz",
    frozenset({"text", "bpchar"}): "text",
}


_COMMON_ORDER = {"int": 0, "numeric": 1, "float4": 2, "float8": 3, "date": 0, "timestamp": 1, "timestamptz": 2,
                 "bpchar": 0, "text": 1}


def common_domain(column: Family, literals: list[Family]) -> str | None:
    """The type an IN list is compared in (Postgres' select_common_type over column and values):
    unlike ``=``, a float4 column with numeric values compares as float4."""
    fams = [column, *literals]
    if any(domain_of(column, f) is None for f in literals):
        return None
    if len(set(fams)) == 1:
        return column
    if all(f in _COMMON_ORDER for f in fams):
        return max(fams, key=lambda f: _COMMON_ORDER[f])
    return None


def domain_of(a: Family, b: Family) -> str | None:
    """Where values of families a and b are compared, or None if Postgres would refuse."""
    if a == b:
        return a
    return _DOMAINS.get(frozenset({a, b}))


_EPOCH = datetime(1970, 1, 1)


def _numeric_key(v: Any) -> Any:
    return TOP if v != v else v


def _float4_key(v: Any) -> Any:
    return TOP if v != v else _f32(v)


def _float8_key(v: Any) -> Any:
    return TOP if v != v else float(v)


def _infinite(v: str) -> Any:
    """Date/time values the value contract leaves as strings."""
    if v == "infinity":
        return TOP
    if v == "-infinity":
        return BOTTOM
    return EARLY if v.endswith("BC") else LATE  # BC dates; years after 9999, 24:00:00


def _time_key(v: Any) -> Any:
    return _infinite(v) if isinstance(v, str) else v


def _ts_key(v: Any) -> Any:
    return _infinite(v) if isinstance(v, str) else v


def _date_to_ts(v: Any) -> Any:
    if isinstance(v, str):
        return _infinite(v)
    return datetime(v.year, v.month, v.day) if type(v) is date else v


def _to_tstz(v: Any) -> Any:
    if isinstance(v, str):
        return _infinite(v)
    if type(v) is date:
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc)
    return v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)


def _timetz_key(v: Any) -> Any:
    if isinstance(v, str):  # 24:00:00+zz
        return (_infinite(v), 0)
    off = v.utcoffset() or timedelta(0)
    micros = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
    off_us = off.days * 86_400_000_000 + off.seconds * 1_000_000 + off.microseconds
    return micros - off_us, -(off.days * 86400 + off.seconds)


def _bpchar_key(v: str) -> str:
    return v.rstrip(" ")


def json_key(v: Any) -> Any:
    """jsonb equality as a hashable key: key order and 1 vs 1.0 do not matter, true is not 1."""
    if isinstance(v, dict):
        return ("o", frozenset((k, json_key(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("a", tuple(json_key(x) for x in v))
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, Decimal)):
        return ("n", v)
    if isinstance(v, float):
        return ("n", Decimal(repr(v)))
    if v is None:
        return ("z",)
    return ("s", v)


def to_domain(family: Family, domain: str) -> Callable[[Any], Any] | None:
    """The key function taking a value of ``family`` into ``domain`` (None: the value itself)."""
    if family == "bpchar":
        return _bpchar_key
    if domain == "numeric":
        return _numeric_key
    if domain == "float8":
        return _float4_key if family == "float4" else _float8_key
    if domain == "float4":
        return _float4_key
    if domain == "timestamp":
        return _date_to_ts
    if domain == "timestamptz":
        return _to_tstz
    if domain == "date":
        return _ts_key
    if domain == "timetz":
        return _timetz_key
    if domain == "time":
        return _time_key
    if domain == "jsonb":
        return json_key
    return None


def to_float(domain: str) -> Callable[[Any], float] | None:
    """Monotone key -> float map for range bucketing (None: the domain has no such map)."""
    if domain in ("int", "numeric", "float4", "float8"):
        return float
    if domain == "date":
        return lambda d: float(d.toordinal())
    if domain == "timestamp":
        return lambda d: (d - _EPOCH).total_seconds()
    if domain == "timestamptz":
        return lambda d: d.timestamp()
    return None


def pg_lower(s: str) -> str:
    """Lower-case as Postgres' ILIKE does: one character to one character."""
    if s.isascii():
        return s.lower()
    return "".join(lc if len(lc := c.lower()) == 1 else c for c in s)
