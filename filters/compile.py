"""Compile a filter AST against a table's columns into a predicate with SQL semantics.

Pure. ``compile_filter(spec_or_filter, schema)`` checks every column and literal against the table
(unknown column, operator not defined for the type, literal that does not parse as the column's
type: all ``FilterError`` now, never when a change arrives) and returns a ``CompiledFilter``:

- ``sql_value(record)`` -> True / False / None: the expression's SQL value (three-valued logic,
  NULL is None). Every column it reads must be in ``record``.
- ``matches(record)`` -> True / False / None: WHERE semantics (NULL does not match), except that
  None means *undecidable*: a column the result depends on is absent from ``record`` (an
  unchanged TOAST value, or an old row that carries only the key). A result that does not depend
  on the absent columns is still decided (``a = 1 AND b = 2`` with ``a = 3`` is False).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from filters import types as T
from filters.ast import And, Between, Compare, InList, IsBool, IsNull, Like, Lit, Node, Not, Or, columns_of
from filters.errors import FilterError

if TYPE_CHECKING:  # the event model is only needed for types here
    from cdc.events import ColumnInfo, TableSchema

__all__ = ["CompiledFilter", "compile_filter", "EqualityHint", "RangeHint"]

Leaf = Callable[[dict], Any]  # record -> True / False / None; KeyError when the column is absent

# possible-value sets for undecidable evaluation: bit per SQL truth value
_T, _F, _N = 1, 2, 4
_ANY = _T | _F | _N
_BIT = {True: _T, False: _F, None: _N}


def _combine(op: Callable[[Any, Any], Any]) -> list[list[int]]:
    vals = (True, False, None)
    table = [[0] * 8 for _ in range(8)]
    for a in range(8):
        for b in range(8):
            m = 0
            for x in vals:
                for y in vals:
                    if a & _BIT[x] and b & _BIT[y]:
                        m |= _BIT[op(x, y)]
            table[a][b] = m
    return table


def _and3(x: Any, y: Any) -> Any:
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def _or3(x: Any, y: Any) -> Any:
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


_ODD_VALUE = (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)
_AND_TABLE = _combine(_and3)
_OR_TABLE = _combine(_or3)
_NOT_MASK = [((m & _T) << 1) | ((m & _F) >> 1) | (m & _N) for m in range(8)]


@dataclass(frozen=True, slots=True)
class EqualityHint:
    """A top-level conjunct ``column = v`` / ``column IN (...)``: the filter can only match rows
    whose ``key(record[column])`` is in ``keys``. ``key`` None means the value itself."""

    column: str
    keys: frozenset
    key: Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class RangeHint:
    """Top-level conjuncts bounding ``column`` on both sides: only rows with
    ``low <= to_float(key(value)) <= high`` can match."""

    column: str
    low: float
    high: float
    key: Callable[[Any], Any] | None
    to_float: Callable[[Any], float]
    # set when the whole filter is this range: ``low_key <(=) key(value) <(=) high_key`` decides it
    exact: tuple[Any, bool, Any, bool] | None = None


class CompiledFilter:
    """A filter bound to one table's columns. Immutable; equal filters (same AST, same column
    types) compare and hash equal, so the index evaluates a shared filter once per change."""

    __slots__ = ("node", "columns", "equality", "range", "_fast", "_slow", "_identity", "_hash")

    def __init__(self, node: Node, fast: Leaf, slow: Callable[[dict], int], identity: tuple,
                 equality: tuple[EqualityHint, ...], range_: tuple[RangeHint, ...]) -> None:
        self.node = node
        self.columns = columns_of(node)
        self.equality = equality
        self.range = range_
        self._fast = fast
        self._slow = slow
        self._identity = identity
        self._hash = hash(identity)

    def sql_value(self, record: dict) -> bool | None:
        """The SQL value of the expression on a complete record (KeyError if a column is absent)."""
        return self._fast(record)

    def matches(self, record: dict) -> bool | None:
        """WHERE semantics; None = undecidable: a column it depends on is absent (or holds a value
        outside the value contract, which is never an error here)."""
        try:
            return self._fast(record) is True
        except KeyError:
            try:
                mask = self._slow(record)
            except _ODD_VALUE:
                return None
            if mask == _T:
                return True
            return None if mask & _T else False
        except _ODD_VALUE:  # a value outside the value contract: undecidable, never an error
            return None

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, CompiledFilter) and self._hash == other._hash
                                 and self._identity == other._identity)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"CompiledFilter({self.node!r})"


def compile_filter(spec_or_filter: Any, schema: TableSchema) -> CompiledFilter:
    """Parse (if needed) and compile against ``schema``; FilterError names what is wrong."""
    from filters.parse import parse_filter  # late: parse imports pglast, compile stays light

    if isinstance(spec_or_filter, CompiledFilter):  # e.g. recompiling for a changed schema
        spec_or_filter = spec_or_filter.node
    node = spec_or_filter if _is_node(spec_or_filter) else parse_filter(spec_or_filter)
    c = _Compiler(schema)
    fast, slow = c.node(node)
    equality, range_ = c.hints(node)
    types = tuple(sorted((n, schema.column(n).type_name) for n in columns_of(node)))
    return CompiledFilter(node, fast, slow, (node, types), equality, range_)


def _is_node(x: Any) -> bool:
    return isinstance(x, (Compare, InList, Between, IsNull, IsBool, Like, And, Or, Not))


# ---------------------------------------------------------------- the compiler


@dataclass(frozen=True, slots=True)
class _Operand:
    """A column and a literal prepared for comparison in a common domain."""

    column: str
    col_key: Callable[[Any], Any] | None
    lit_key: Any  # the literal's key in the domain; None for SQL NULL
    domain: str


class _Compiler:
    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema

    # -- columns and literals

    def column(self, name: str, pos: Any) -> tuple[ColumnInfo, str]:
        col = self.schema.column(name)
        if col is None:
            names = ", ".join(c.name for c in self.schema.columns)
            raise FilterError(f"unknown column {name!r} in table {self.schema.schema}.{self.schema.table}",
                              position=pos, hint=f"columns are: {names}")
        return col, T.family_of(col.type_name)

    def operand(self, name: str, lit: Lit, what: str, pos: Any, in_list: tuple[Lit, ...] = ()) -> _Operand:
        col, fam = self.column(name, pos)
        if fam in ("array", "json", "interval"):
            raise FilterError(f"column {name!r} is {col.type_name}: {what} is not supported on this type",
                              position=pos, hint=_NULL_ONLY_HINT)
        lit_fam, value = self.literal(lit, col, fam, pos)
        domain = T.domain_of(fam, lit_fam)
        if in_list and domain is not None:  # IN compares in the common type of column and all values
            fams = [self.literal(x, col, fam, pos)[0] for x in in_list if x.kind != "null"]
            domain = T.common_domain(fam, fams) or domain
            if domain != fam and lit.kind == "unknown" and lit.cast is None:
                # a quoted value takes the common type (timestamptz keeps its zone, ...)
                lit_fam = domain
                value = self.parse(lit.value, domain, domain, lit.pos if lit.pos is not None else pos)
        if domain is None:
            raise FilterError(f"cannot compare column {name!r} ({col.type_name}) with a {_describe(lit, lit_fam)}",
                              position=lit.pos if lit.pos is not None else pos,
                              hint=f"write the value as a quoted string so it takes the column's type, "
                                   f"or cast it to {col.type_name}")
        if value is None:
            return _Operand(name, T.to_domain(fam, domain), None, domain)
        lit_key_fn = T.to_domain(lit_fam, domain)
        try:
            key = lit_key_fn(value) if lit_key_fn else value
        except ValueError as e:
            raise FilterError(str(e), position=lit.pos) from None
        return _Operand(name, T.to_domain(fam, domain), key, domain)

    def literal(self, lit: Lit, col: ColumnInfo, fam: str, pos: Any) -> tuple[str, Any]:
        """(family, value) of a literal; value None for NULL."""
        where = lit.pos if lit.pos is not None else pos
        if lit.kind == "null":
            return fam, None
        if lit.cast is not None:
            target = T.family_for_cast(lit.cast)
            if target is None:
                raise FilterError(f"casts to {lit.cast} are not supported", position=where,
                                  hint="cast to a scalar type: int, numeric, float8, bool, text, uuid, date, "
                                       "time, timestamp, timestamptz, jsonb, bytea")
            typname, lit_fam = target
            text = lit.value if isinstance(lit.value, str) else _to_text(lit.value)
            return lit_fam, self.parse(text, typname, lit_fam, where)
        if lit.kind == "unknown":
            return fam, self.parse(lit.value, col.type_name, fam, where)
        if lit.kind == "int":
            return "int", lit.value
        if lit.kind == "numeric":
            return "numeric", lit.value
        if lit.kind == "bool":
            return "bool", lit.value
        if lit.kind == "json":
            if fam != "jsonb":
                raise FilterError(f"a JSON object/array can only be compared with a jsonb column, "
                                  f"not {col.name!r} ({col.type_name})", position=where)
            return "jsonb", getattr(lit.value, "value", lit.value)
        raise FilterError(f"unsupported literal {lit.value!r}", position=where)

    def parse(self, text: str, typname: str, fam: str, where: Any) -> Any:
        try:
            return T.parse_text(text, typname, fam)
        except ValueError as e:
            raise FilterError(str(e), position=where,
                              hint=f"the value must be valid input for type {typname}") from None

    def ordered(self, name: str, op: str, pos: Any) -> None:
        col, fam = self.column(name, pos)
        if fam not in T.ORDERED:
            raise FilterError(f"operator {op} is not supported on column {name!r} ({col.type_name})",
                              position=pos, hint=_hint_for(fam))

    def equatable(self, name: str, op: str, pos: Any) -> None:
        col, fam = self.column(name, pos)
        if fam not in T.EQUATABLE:
            raise FilterError(f"operator {op} is not supported on column {name!r} ({col.type_name})",
                              position=pos, hint=_hint_for(fam))

    # -- nodes -> (fast, slow)

    def node(self, n: Node) -> tuple[Leaf, Callable[[dict], int]]:
        if isinstance(n, And):
            parts = [self.node(x) for x in n.items]
            return _and_fast([p[0] for p in parts]), _fold_slow([p[1] for p in parts], _AND_TABLE)
        if isinstance(n, Or):
            parts = [self.node(x) for x in n.items]
            return _or_fast([p[0] for p in parts]), _fold_slow([p[1] for p in parts], _OR_TABLE)
        if isinstance(n, Not):
            fast, slow = self.node(n.item)
            return _not_fast(fast), (lambda r, s=slow: _NOT_MASK[s(r)])
        leaf = self.leaf(n)
        return leaf, _slow_leaf(leaf)

    def leaf(self, n: Node) -> Leaf:
        if isinstance(n, Compare):
            return self.compare(n)
        if isinstance(n, InList):
            return self.in_list(n)
        if isinstance(n, Between):
            return self.between(n)
        if isinstance(n, IsNull):
            self.column(n.column, n.pos)
            c = n.column
            return (lambda r: r[c] is not None) if n.negated else (lambda r: r[c] is None)
        if isinstance(n, IsBool):
            return self.is_bool(n)
        if isinstance(n, Like):
            return self.like(n)
        raise FilterError(f"unsupported filter node {type(n).__name__}")

    def compare(self, n: Compare) -> Leaf:
        opname = _OP_NAMES[n.op]
        if n.op in ("lt", "lte", "gt", "gte"):
            self.ordered(n.column, opname, n.pos)
        else:
            self.equatable(n.column, opname, n.pos)
        o = self.operand(n.column, n.value, f"operator {opname}", n.pos)
        return _compare_leaf(o, n.op)

    def in_list(self, n: InList) -> Leaf:
        self.equatable(n.column, "NOT IN" if n.negated else "IN", n.pos)
        # Postgres compares a list of two or more values in their common type, a single value with =
        common = n.values if len(n.values) > 1 else ()
        ops = [self.operand(n.column, v, "IN", n.pos, common) for v in n.values]
        c = n.column
        has_null = any(o.lit_key is None for o in ops)
        if not ops:  # empty list (object form / PostgREST): IN is false, NOT IN true, even for NULL
            return (lambda r: (r[c], True)[1]) if n.negated else (lambda r: (r[c], False)[1])
        if len({o.domain for o in ops}) == 1:
            key = ops[0].col_key
            keys = frozenset(o.lit_key for o in ops if o.lit_key is not None)
            miss = None if has_null else False

            def in_leaf(r: dict) -> Any:
                v = r[c]
                if v is None:
                    return None
                return True if (key(v) if key else v) in keys else miss
        else:  # literals of several domains: OR of equalities
            eqs = [_compare_leaf(o, "eq") for o in ops]
            in_leaf = _or_fast(eqs)
        return _not_fast(in_leaf) if n.negated else in_leaf

    def between(self, n: Between) -> Leaf:
        op = ("NOT " if n.negated else "") + "BETWEEN" + (" SYMMETRIC" if n.symmetric else "")
        self.ordered(n.column, op, n.pos)
        lo = _compare_leaf(self.operand(n.column, n.low, op, n.pos), "gte")
        hi = _compare_leaf(self.operand(n.column, n.high, op, n.pos), "lte")
        leaf = _and_fast([lo, hi])
        if n.symmetric:
            lo2 = _compare_leaf(self.operand(n.column, n.high, op, n.pos), "gte")
            hi2 = _compare_leaf(self.operand(n.column, n.low, op, n.pos), "lte")
            leaf = _or_fast([leaf, _and_fast([lo2, hi2])])
        return _not_fast(leaf) if n.negated else leaf

    def is_bool(self, n: IsBool) -> Leaf:
        col, fam = self.column(n.column, n.pos)
        if fam != "bool":
            raise FilterError(f"IS TRUE/FALSE/UNKNOWN needs a boolean column; {n.column!r} is {col.type_name}",
                              position=n.pos, hint="use = or IS NULL for other types")
        c, want, neg = n.column, n.value, n.negated
        return lambda r: (r[c] is want) != neg

    def like(self, n: Like) -> Leaf:
        op = ("NOT " if n.negated else "") + ("ILIKE" if n.case_insensitive else "LIKE")
        col, fam = self.column(n.column, n.pos)
        if fam not in T.LIKEABLE:
            raise FilterError(f"operator {op} needs a text column; {n.column!r} is {col.type_name}",
                              position=n.pos, hint="LIKE/ILIKE work on text, varchar, char and name columns")
        lit = n.pattern
        if lit.kind == "null":
            c = n.column
            return lambda r: (r[c], None)[1]
        if lit.kind != "unknown" or (lit.cast is not None and T.family_for_cast(lit.cast) not in
                                     (("text", "text"), ("varchar", "text"), ("bpchar", "bpchar"))):
            raise FilterError(f"the pattern of {op} must be a string", position=lit.pos or n.pos)
        pattern = lit.value
        if n.case_insensitive:
            pattern = T.pg_lower(pattern)
        matcher = _like_matcher(pattern, n.escape, lit.pos or n.pos)
        c, neg = n.column, n.negated
        if n.case_insensitive:
            lower = T.pg_lower

            def like_leaf(r: dict) -> Any:
                v = r[c]
                return None if v is None else matcher(lower(v)) != neg
        else:
            def like_leaf(r: dict) -> Any:
                v = r[c]
                return None if v is None else matcher(v) != neg
        return like_leaf

    # -- index hints

    def hints(self, node: Node) -> tuple[tuple[EqualityHint, ...], tuple[RangeHint, ...]]:
        conjuncts = list(node.items) if isinstance(node, And) else [node]
        eq: list[EqualityHint] = []
        lows: dict[str, float] = {}
        highs: dict[str, float] = {}
        for n in conjuncts:
            if isinstance(n, Compare) and n.op in ("eq", "notdistinct") or isinstance(n, InList) and not n.negated:
                values = [n.value] if isinstance(n, Compare) else list(n.values)
                common = tuple(values) if isinstance(n, InList) and len(values) > 1 else ()
                ops = [self.operand(n.column, v, "", None, common) for v in values]
                col_fam = T.family_of(self.schema.column(n.column).type_name)
                if ops and all(o.domain == col_fam for o in ops):
                    keys = frozenset(o.lit_key for o in ops if o.lit_key is not None)
                    eq.append(EqualityHint(n.column, keys, T.to_domain(col_fam, col_fam)))
            elif isinstance(n, Between) and not n.negated and not n.symmetric:
                lo = self._bound(n.column, n.low)
                hi = self._bound(n.column, n.high)
                if lo is not None:
                    lows[n.column] = max(lo, lows.get(n.column, lo))
                if hi is not None:
                    highs[n.column] = min(hi, highs.get(n.column, hi))
            elif isinstance(n, Compare) and n.op in ("gt", "gte", "lt", "lte"):
                b = self._bound(n.column, n.value)
                if b is not None and n.op in ("gt", "gte"):
                    lows[n.column] = max(b, lows.get(n.column, b))
                elif b is not None:
                    highs[n.column] = min(b, highs.get(n.column, b))
        eq.sort(key=lambda h: len(h.keys))
        ranges = []
        for column in lows.keys() & highs.keys():
            fam = T.family_of(self.schema.column(column).type_name)
            ranges.append(RangeHint(column, lows[column], highs[column], T.to_domain(fam, fam), T.to_float(fam),
                                    self._exact_range(node, column, fam)))
        return tuple(eq), tuple(ranges)

    def _exact_range(self, node: Node, column: str, fam: str) -> tuple[Any, bool, Any, bool] | None:
        """(low key, low inclusive, high key, high inclusive) when the filter is only this range."""
        if isinstance(node, Between) and not node.negated and not node.symmetric:
            bounds = [("gte", node.low), ("lte", node.high)]
        elif (isinstance(node, And) and len(node.items) == 2
              and all(isinstance(n, Compare) and n.column == column and n.op in ("gt", "gte", "lt", "lte")
                      for n in node.items)):
            bounds = [(n.op, n.value) for n in node.items]
        else:
            return None
        low = high = None
        for op, lit in bounds:
            o = self.operand(column, lit, "", None)
            if o.domain != fam or o.lit_key is None:
                return None
            key = o.lit_key
            if fam == "numeric" and type(key) is int:
                key = Decimal(key)  # Decimal-to-Decimal comparisons: same result, no conversion per change
            if op in ("gt", "gte") and low is None:
                low = (key, op == "gte")
            elif op in ("lt", "lte") and high is None:
                high = (key, op == "lte")
            else:
                return None
        return (*low, *high) if low and high else None

    def _bound(self, column: str, lit: Lit) -> float | None:
        """The literal as a finite float in the column's own domain, or None."""
        fam = T.family_of(self.schema.column(column).type_name)
        o = self.operand(column, lit, "", None)
        to_float = T.to_float(fam)
        if o.domain != fam or to_float is None or o.lit_key is None or isinstance(o.lit_key, type(T.TOP)):
            return None
        try:
            f = to_float(o.lit_key)
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            return None
        return f if abs(f) < 1e300 else None


_OP_NAMES = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
             "distinct": "IS DISTINCT FROM", "notdistinct": "IS NOT DISTINCT FROM"}
_NULL_ONLY_HINT = "array, json and interval columns support only IS NULL / IS NOT NULL"


def _hint_for(fam: str) -> str:
    if fam == "other":
        return "columns of this type (enum, or a type the filter engine does not know) support =, <>, IN, " \
               "IS [NOT] DISTINCT FROM and IS NULL; their order is not known"
    if fam == "jsonb":
        return "jsonb columns support =, <>, IN, IS [NOT] DISTINCT FROM and IS NULL"
    return _NULL_ONLY_HINT


def _describe(lit: Lit, fam: str) -> str:
    if lit.cast:
        return f"value cast to {lit.cast}"
    return {"int": "number", "numeric": "number", "bool": "boolean"}.get(lit.kind, fam) + f" literal {lit.value!r}"


def _to_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _compare_leaf(o: _Operand, op: str) -> Leaf:
    c, key, L = o.column, o.col_key, o.lit_key
    if op == "distinct" or op == "notdistinct":
        want = op == "distinct"
        if L is None:
            return lambda r: (r[c] is not None) == want
        if key is None:
            return lambda r: (True if (v := r[c]) is None else v != L) == want
        return lambda r: (True if (v := r[c]) is None else key(v) != L) == want
    if L is None:
        return lambda r: (r[c], None)[1]
    if key is None:
        if op == "eq":
            return lambda r: None if (v := r[c]) is None else v == L
        if op == "neq":
            return lambda r: None if (v := r[c]) is None else v != L
        if op == "lt":
            return lambda r: None if (v := r[c]) is None else v < L
        if op == "lte":
            return lambda r: None if (v := r[c]) is None else v <= L
        if op == "gt":
            return lambda r: None if (v := r[c]) is None else v > L
        return lambda r: None if (v := r[c]) is None else v >= L
    if op == "eq":
        return lambda r: None if (v := r[c]) is None else key(v) == L
    if op == "neq":
        return lambda r: None if (v := r[c]) is None else key(v) != L
    if op == "lt":
        return lambda r: None if (v := r[c]) is None else key(v) < L
    if op == "lte":
        return lambda r: None if (v := r[c]) is None else key(v) <= L
    if op == "gt":
        return lambda r: None if (v := r[c]) is None else key(v) > L
    return lambda r: None if (v := r[c]) is None else key(v) >= L


def _not_fast(f: Leaf) -> Leaf:
    """SQL NOT: NULL stays NULL."""

    def negated(r: dict) -> Any:
        v = f(r)
        return None if v is None else not v

    return negated


def _and_fast(fs: list[Leaf]) -> Leaf:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs

        def and2(r: dict) -> Any:
            x = a(r)
            if x is False:
                return False
            y = b(r)
            if y is False:
                return False
            return None if x is None or y is None else True

        return and2

    def and_n(r: dict) -> Any:
        result: Any = True
        for f in fs:
            v = f(r)
            if v is False:
                return False
            if v is None:
                result = None
        return result

    return and_n


def _or_fast(fs: list[Leaf]) -> Leaf:
    if len(fs) == 1:
        return fs[0]

    def or_n(r: dict) -> Any:
        result: Any = False
        for f in fs:
            v = f(r)
            if v is True:
                return True
            if v is None:
                result = None
        return result

    return or_n


def _slow_leaf(leaf: Leaf) -> Callable[[dict], int]:
    def slow(r: dict) -> int:
        try:
            return _BIT[leaf(r)]
        except KeyError:
            return _ANY

    return slow


def _fold_slow(parts: list[Callable[[dict], int]], table: list[list[int]]) -> Callable[[dict], int]:
    def slow(r: dict) -> int:
        it = iter(parts)
        m = next(it)(r)
        for p in it:
            m = table[m][p(r)]
        return m

    return slow


# ---------------------------------------------------------------- LIKE without backtracking


def _like_matcher(pattern: str, escape: str | None, pos: Any) -> Callable[[str], bool]:
    """LIKE as fixed-width segments between '%': leftmost greedy matching, linear, no regex blowup."""
    segments: list[list[str | None]] = [[]]  # None stands for '_'
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape:
            if i + 1 >= len(pattern):
                raise FilterError("LIKE pattern must not end with escape character", position=pos,
                                  hint=f"escape the escape character itself ({escape}{escape}) to match it")
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            segments.append([])
        else:
            segments[-1].append(None if ch == "_" else ch)
        i += 1
    regexes = [re.compile("".join("." if c is None else re.escape(c) for c in seg), re.DOTALL) for seg in segments]
    lengths = [len(seg) for seg in segments]
    if len(segments) == 1:
        only, n = regexes[0], lengths[0]
        return lambda s: len(s) == n and only.match(s) is not None
    first, last = regexes[0], regexes[-1]
    first_n, last_n = lengths[0], lengths[-1]
    middle = [(rx, ln) for rx, ln in zip(regexes[1:-1], lengths[1:-1]) if ln]
    min_len = sum(lengths)

    def match(s: str) -> bool:
        n = len(s)
        if n < min_len or first.match(s) is None:
            return False
        end = n - last_n
        if last.match(s, end) is None:
            return False
        at = first_n
        for rx, ln in middle:
            m = rx.search(s, at, end)
            if m is None:
                return False
            at = m.end()
        return True

    return match
