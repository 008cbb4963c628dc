"""SQL filter syntax: one boolean expression over the table's columns, parsed by pglast.

Pure (pglast is the Postgres parser compiled as a library; nothing reaches a database).
Steps: check the text (size, NUL, UTF-8), scan it with the Postgres scanner (no comments, no ';',
no parameters, balanced and bounded parentheses), parse ``SELECT 1 WHERE <text>``, check that the
statement is exactly that, then translate the expression node by node, rejecting anything not in
the allowed set with a ``FilterError`` that names it and says what is allowed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pglast import ast as pg
from pglast import parse_sql as _pg_parse
from pglast import parser as _pg_parser
from pglast.enums import A_Expr_Kind, BoolExprType, BoolTestType, NullTestType

from filters import limits
from filters.ast import And, Between, Compare, InList, IsBool, IsNull, Like, Lit, Node, Not, Or
from filters.errors import FilterError

__all__ = ["parse_sql_filter", "ALLOWED_SQL"]

ALLOWED_SQL = ("a boolean expression over the table's columns: column <op> literal with =, <>, !=, <, <=, >, >=, "
               "IN (...), NOT IN (...), BETWEEN [SYMMETRIC] x AND y, IS [NOT] NULL, IS [NOT] TRUE/FALSE, "
               "IS [NOT] DISTINCT FROM, [NOT] LIKE / ILIKE [ESCAPE 'c'], combined with AND, OR, NOT and "
               "parentheses; literals may be cast ('2026-01-01'::timestamptz)")

_PREFIX = "SELECT 1 WHERE "
_COMPARE_OPS = {"=": "eq", "<>": "neq", "!=": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_FLIPPED = {"eq": "eq", "neq": "neq", "lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}
_SELECT_DEFAULTS = ("distinctClause", "intoClause", "fromClause", "groupClause", "havingClause",
                    "windowClause", "valuesLists", "sortClause", "limitOffset", "limitCount",
                    "lockingClause", "withClause", "larg", "rarg")


def check_text(text: Any, what: str = "filter") -> str:
    """Reject non-text, empty, oversized, NUL-containing or non-UTF-8 input."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raise FilterError(f"the {what} must be text, not bytes", hint="send the filter as a UTF-8 string")
    if not isinstance(text, str):
        raise FilterError(f"the {what} must be a string or an object, not {type(text).__name__}")
    if len(text) > limits.MAX_TEXT_LENGTH:
        raise FilterError(f"the {what} is {len(text)} characters long; the limit is {limits.MAX_TEXT_LENGTH}",
                          hint="split it into several subscriptions or use IN lists")
    if "\x00" in text:
        raise FilterError(f"the {what} contains a NUL character", position=text.index("\x00"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FilterError(f"the {what} is not valid UTF-8 text", position=e.start,
                          hint="send the filter as a UTF-8 string") from None
    if not text.strip():
        raise FilterError(f"the {what} is empty", hint="omit the filter to receive every change")
    return text


def parse_sql_filter(text: str) -> Node:
    """SQL text -> AST (FilterError with a 0-based character position on anything not allowed)."""
    check_text(text)
    _check_tokens(text)
    wrapped = _PREFIX + text
    try:
        stmts = _pg_parse(wrapped)
    except _pg_parser.ParseError as e:
        loc = e.args[1] if len(e.args) > 1 else None  # a character offset (node locations are bytes)
        pos = max(0, loc - len(_PREFIX)) if isinstance(loc, int) and loc >= 0 else None
        raise FilterError(f"SQL syntax error: {e.args[0]}", position=pos,
                          hint=f"a filter is {ALLOWED_SQL}") from None
    except RecursionError:
        raise FilterError("the filter is nested too deeply", hint=f"at most {limits.MAX_DEPTH} levels") from None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, pg.SelectStmt):
        raise FilterError("a filter is one expression, not several statements", hint=ALLOWED_SQL)
    stmt = stmts[0].stmt
    for name in _SELECT_DEFAULTS:
        if getattr(stmt, name, None):
            raise FilterError("a filter is one expression, not a query or part of one", hint=ALLOWED_SQL)
    if stmt.op:  # UNION / INTERSECT / EXCEPT
        raise FilterError("a filter is one expression, not a query or part of one", hint=ALLOWED_SQL)
    if stmt.whereClause is None:
        raise FilterError("the filter is empty", hint="omit the filter to receive every change")
    return _Translator(wrapped).bool_expr(stmt.whereClause, 1)


def _char_pos(wrapped: str, byte_loc: Any) -> int | None:
    """A parse-tree node location (bytes into the wrapped text) -> characters into the user's text."""
    if not isinstance(byte_loc, int) or byte_loc < 0:
        return None
    prefix = wrapped.encode("utf-8")[:byte_loc].decode("utf-8", errors="ignore")
    return max(0, len(prefix) - len(_PREFIX))


def _check_tokens(text: str) -> None:
    try:
        tokens = _pg_parser.scan(text)
    except _pg_parser.ParseError as e:
        loc = e.args[1] if len(e.args) > 1 else None
        pos = loc if isinstance(loc, int) and loc >= 0 else None
        raise FilterError(f"SQL syntax error: {e.args[0]}", position=pos, hint=ALLOWED_SQL) from None
    if len(tokens) > 4 * limits.MAX_NODES + 4 * limits.MAX_IN_LIST:
        raise FilterError(f"the filter has {len(tokens)} tokens; it is too large",
                          hint=f"at most {limits.MAX_NODES} conditions and {limits.MAX_IN_LIST} values per IN list")
    depth = 0
    for tok in tokens:
        pos = tok.start  # scanner offsets are characters
        if tok.name in ("SQL_COMMENT", "C_COMMENT"):
            raise FilterError("comments are not allowed in a filter", position=pos,
                              hint="remove the -- or /* */ comment")
        if tok.name == "ASCII_59":
            raise FilterError("';' is not allowed: a filter is a single expression", position=pos,
                              hint=ALLOWED_SQL)
        if tok.name == "PARAM":
            raise FilterError("parameters ($1) are not allowed; write the value as a literal", position=pos)
        if tok.name == "ASCII_40":
            depth += 1
            if depth > limits.MAX_DEPTH:
                raise FilterError(f"parentheses nested deeper than {limits.MAX_DEPTH}", position=pos,
                                  hint="flatten the expression")
        elif tok.name == "ASCII_41":
            depth -= 1
            if depth < 0:
                raise FilterError("unbalanced ')': a filter is a single expression", position=pos,
                                  hint=ALLOWED_SQL)
    if depth:
        raise FilterError("unbalanced '(': missing ')'", position=len(text))


class _Translator:
    def __init__(self, wrapped: str) -> None:
        self.wrapped = wrapped
        self.count = 0

    def pos(self, node: Any, fallback: int | None = None) -> int | None:
        loc = getattr(node, "location", None)
        p = _char_pos(self.wrapped, loc)
        return p if p is not None else fallback

    def bump(self, node: Any, depth: int) -> None:
        self.count += 1
        if self.count > limits.MAX_NODES:
            raise FilterError(f"the filter has more than {limits.MAX_NODES} conditions", position=self.pos(node))
        if depth > limits.MAX_DEPTH:
            raise FilterError(f"the filter is nested deeper than {limits.MAX_DEPTH} levels",
                              position=self.pos(node), hint="flatten the expression")

    # -- boolean structure

    def bool_expr(self, n: Any, depth: int) -> Node:
        self.bump(n, depth)
        if isinstance(n, pg.BoolExpr):
            items = tuple(self.bool_expr(a, depth + 1) for a in n.args)
            if n.boolop == BoolExprType.AND_EXPR:
                return And(items)
            if n.boolop == BoolExprType.OR_EXPR:
                return Or(items)
            return Not(items[0])
        if isinstance(n, pg.A_Expr):
            return self.a_expr(n)
        if isinstance(n, pg.NullTest):
            col = self.column(n.arg, "IS NULL")
            return IsNull(col, negated=n.nulltesttype == NullTestType.IS_NOT_NULL, pos=self.pos(n.arg))
        if isinstance(n, pg.BooleanTest):
            col = self.column(n.arg, "IS TRUE/FALSE")
            kind = BoolTestType(n.booltesttype).name
            value = {"TRUE": True, "FALSE": False, "UNKNOWN": None}[kind.rsplit("_", 1)[1]]
            return IsBool(col, value, negated="_NOT_" in kind, pos=self.pos(n.arg))
        if isinstance(n, pg.ColumnRef):
            col = self.column(n, "a condition")
            return Compare(col, "eq", Lit(True, "bool"), pos=self.pos(n))
        if isinstance(n, pg.A_Const):
            raise FilterError("a constant is not a filter", position=self.pos(n),
                              hint="compare a column with a value; omit the filter to receive every change")
        raise self.not_allowed(n)

    def not_allowed(self, n: Any, where: int | None = None) -> FilterError:
        kind = type(n).__name__
        what = {"FuncCall": "function calls are not allowed",
                "SubLink": "subqueries are not allowed",
                "ParamRef": "parameters are not allowed",
                "TypeCast": "casts are allowed on literals only, not on columns or expressions",
                "A_ArrayExpr": "array literals are not allowed",
                "CaseExpr": "CASE is not allowed", "CoalesceExpr": "COALESCE is not allowed",
                "RowExpr": "row constructors are not allowed", "A_Indirection": "subscripts are not allowed",
                "CollateClause": "COLLATE is not allowed", "MinMaxExpr": "GREATEST/LEAST are not allowed",
                "SQLValueFunction": "functions like now() or current_user are not allowed",
                }.get(kind, f"{kind} is not allowed")
        return FilterError(what, position=self.pos(n, where), hint=f"a filter is {ALLOWED_SQL}")

    # -- leaves

    def column(self, n: Any, context: str) -> str:
        if isinstance(n, pg.ColumnRef):
            fields = n.fields
            if len(fields) == 1 and isinstance(fields[0], pg.String):
                return fields[0].sval
            if any(isinstance(f, pg.A_Star) for f in fields):
                raise FilterError("* is not allowed in a filter", position=self.pos(n))
            name = ".".join(getattr(f, "sval", "?") for f in fields)
            raise FilterError(f"qualified column reference {name!r} is not allowed: a filter can only read the "
                              "subscribed table's own columns", position=self.pos(n),
                              hint="write the bare column name")
        if isinstance(n, pg.A_Const) or self._is_cast_literal(n):
            raise FilterError(f"{context} needs a column on one side", position=self.pos(n))
        raise self.not_allowed(n)

    def _is_cast_literal(self, n: Any) -> bool:
        return isinstance(n, pg.TypeCast) and isinstance(n.arg, pg.A_Const)

    def literal(self, n: Any, where: int | None) -> Lit:
        if isinstance(n, pg.A_Const):
            return self._const(n, None, where)
        if isinstance(n, pg.TypeCast):
            if isinstance(n.arg, pg.TypeCast):
                raise FilterError("only one cast per literal is allowed", position=self.pos(n, where))
            if not isinstance(n.arg, pg.A_Const):
                raise FilterError("casts are allowed on literals only, not on columns or expressions",
                                  position=self.pos(n, where), hint="cast the literal: '2026-01-01'::date")
            return self._const(n.arg, self._type_name(n.typeName, where), where)
        if isinstance(n, pg.ColumnRef):
            raise FilterError("comparing two columns is not allowed: compare a column with a literal",
                              position=self.pos(n, where), hint=ALLOWED_SQL)
        if (isinstance(n, pg.A_Expr) and n.kind == A_Expr_Kind.AEXPR_OP and n.lexpr is None
                and len(n.name) == 1 and n.name[0].sval in ("+", "-") and isinstance(n.rexpr, pg.A_Const)
                and isinstance(n.rexpr.val, (pg.Integer, pg.Float))):  # unary sign on a number
            lit = self._const(n.rexpr, None, where)
            return Lit(-lit.value, lit.kind, None, where) if n.name[0].sval == "-" else lit
        if isinstance(n, pg.A_Expr) and n.kind == A_Expr_Kind.AEXPR_OP:
            raise FilterError("arithmetic and other operators are not allowed in values",
                              position=self.pos(n, where), hint="write the value as a literal")
        raise self.not_allowed(n, where)

    def _const(self, c: Any, cast: str | None, where: int | None) -> Lit:
        if c.isnull:
            return Lit(None, "null", cast, where)
        v = c.val
        if isinstance(v, pg.Integer):
            return Lit(int(v.ival), "int", cast, where)
        if isinstance(v, pg.Float):
            text = v.fval
            if any(ch in text for ch in "xXoObB_"):  # 0x1F, 0o17, 0b1, 1_000 literals (Postgres 16+)
                raise FilterError(f"number literal {text!r} is not supported; write it in decimal", position=where)
            return Lit(Decimal(text), "numeric", cast, where)
        if isinstance(v, pg.String):
            if len(v.sval) > limits.MAX_LITERAL_LENGTH:
                raise FilterError(f"a literal is {len(v.sval)} characters long; the limit is "
                                  f"{limits.MAX_LITERAL_LENGTH}", position=where)
            return Lit(v.sval, "unknown", cast, where)
        if isinstance(v, pg.Boolean):
            return Lit(bool(v.boolval), "bool", cast, where)
        raise FilterError("bit-string literals are not supported", position=where)

    def _type_name(self, tn: Any, where: int | None) -> str:
        if tn.arrayBounds:
            raise FilterError("casts to array types are not supported", position=where)
        if tn.typmods:
            raise FilterError("type modifiers in casts (varchar(10), numeric(10,2)) are not supported",
                              position=where, hint="cast to the plain type")
        names = [n.sval for n in tn.names]
        if len(names) == 2 and names[0] == "pg_catalog":
            names = names[1:]
        if len(names) != 1:
            raise FilterError(f"unknown type {'.'.join(names)!r} in cast", position=where)
        return names[0]

    def a_expr(self, n: Any) -> Node:
        kind = n.kind
        where = self.pos(n)
        opname = ".".join(s.sval for s in n.name) if n.name else ""
        if kind == A_Expr_Kind.AEXPR_OP:
            if opname not in _COMPARE_OPS or n.lexpr is None:
                raise FilterError(f"operator {opname!r} is not allowed", position=where,
                                  hint="comparison operators are =, <>, !=, <, <=, >, >=")
            op = _COMPARE_OPS[opname]
            if isinstance(n.lexpr, pg.ColumnRef):
                return Compare(self.column(n.lexpr, opname), op, self.literal(n.rexpr, where), pos=where)
            if isinstance(n.rexpr, pg.ColumnRef):
                return Compare(self.column(n.rexpr, opname), _FLIPPED[op], self.literal(n.lexpr, where), pos=where)
            self.literal(n.lexpr, where)  # raises for anything that is not a literal
            raise FilterError(f"{opname} needs a column on one side", position=where)
        if kind in (A_Expr_Kind.AEXPR_DISTINCT, A_Expr_Kind.AEXPR_NOT_DISTINCT):
            op = "distinct" if kind == A_Expr_Kind.AEXPR_DISTINCT else "notdistinct"
            if isinstance(n.rexpr, pg.ColumnRef) and not isinstance(n.lexpr, pg.ColumnRef):
                return Compare(self.column(n.rexpr, "IS DISTINCT FROM"), op, self.literal(n.lexpr, where), pos=where)
            return Compare(self.column(n.lexpr, "IS DISTINCT FROM"), op, self.literal(n.rexpr, where), pos=where)
        if kind == A_Expr_Kind.AEXPR_IN:
            col = self.column(n.lexpr, "IN")
            if not isinstance(n.rexpr, (list, tuple)):
                raise self.not_allowed(n.rexpr, where)
            if len(n.rexpr) > limits.MAX_IN_LIST:
                raise FilterError(f"an IN list has {len(n.rexpr)} values; the limit is {limits.MAX_IN_LIST}",
                                  position=where, hint="split the subscription")
            values = tuple(self.literal(v, where) for v in n.rexpr)
            return InList(col, values, negated=opname == "<>", pos=where)
        if kind in (A_Expr_Kind.AEXPR_LIKE, A_Expr_Kind.AEXPR_ILIKE):
            col = self.column(n.lexpr, "LIKE")
            escape: str | None = "\\"
            pattern_node = n.rexpr
            if isinstance(pattern_node, pg.FuncCall):
                fname = [s.sval for s in pattern_node.funcname]
                if fname[-1] != "like_escape" or len(pattern_node.args or ()) != 2:
                    raise self.not_allowed(pattern_node, where)
                pattern_node, esc_node = pattern_node.args
                esc = self.literal(esc_node, where)
                if esc.kind != "unknown" or esc.cast is not None or len(esc.value) > 1:
                    raise FilterError("ESCAPE takes a string of at most one character", position=where)
                escape = esc.value or None
            pattern = self.literal(pattern_node, where)
            return Like(col, pattern, case_insensitive=kind == A_Expr_Kind.AEXPR_ILIKE,
                        negated=opname.startswith("!"), escape=escape, pos=where)
        if kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN,
                    A_Expr_Kind.AEXPR_BETWEEN_SYM, A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM):
            col = self.column(n.lexpr, "BETWEEN")
            low, high = (self.literal(v, where) for v in n.rexpr)
            return Between(col, low, high,
                           negated=kind in (A_Expr_Kind.AEXPR_NOT_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM),
                           symmetric=kind in (A_Expr_Kind.AEXPR_BETWEEN_SYM, A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM),
                           pos=where)
        if kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL):
            raise FilterError("ANY/ALL are not allowed", position=where, hint="use IN (...) or NOT IN (...)")
        if kind == A_Expr_Kind.AEXPR_SIMILAR:
            raise FilterError("SIMILAR TO is not allowed", position=where, hint="use LIKE or ILIKE")
        raise FilterError(f"{A_Expr_Kind(kind).name} is not allowed", position=where, hint=ALLOWED_SQL)
