"""Object filter syntax (the seed's ``filter: { status: 'pending' }``), from parsed JSON.

Rules (docs/filters.md has the full table):

- ``{"col": value, ...}``: every entry must hold (AND). A scalar means ``=``, ``null`` means
  ``IS NULL``, a list means ``IN``.
- ``{"col": {"<op>": operand, ...}}``: operator objects, several operators are ANDed.
  eq neq lt lte gt gte (scalar), in nin (list), is isnot (null / true / false),
  distinct notdistinct (scalar or null), like ilike nlike nilike (string pattern),
  between nbetween ([low, high]).
- ``{"$and": [f, ...]}``, ``{"$or": [f, ...]}``, ``{"$not": f}`` combine filters.

Strings take the column's type (like quoted SQL literals); numbers are exact (JSON ``99.95`` is
the numeric 99.95); a JSON object or array is a jsonb value.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from filters import limits
from filters.ast import And, Between, Compare, InList, IsBool, IsNull, Like, Lit, Node, Not, Or
from filters.errors import FilterError
from filters.types import json_key

__all__ = ["parse_object_filter", "OBJECT_OPERATORS"]

_COMPARE = {"eq": "eq", "neq": "neq", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte",
            "distinct": "distinct", "notdistinct": "notdistinct"}
_LIKE = {"like": (False, False), "ilike": (True, False), "nlike": (False, True), "nilike": (True, True)}
OBJECT_OPERATORS = (*_COMPARE, "in", "nin", "is", "isnot", *_LIKE, "between", "nbetween")
_LOGIC = ("$and", "$or", "$not")


def parse_object_filter(spec: dict) -> Node:
    """Object form -> AST (FilterError with a path like ``amount.gte`` as the position)."""
    return _ObjectParser().filter(spec, "", 1)


class _ObjectParser:
    def __init__(self) -> None:
        self.count = 0

    def bump(self, path: str, depth: int) -> None:
        self.count += 1
        if self.count > limits.MAX_NODES:
            raise FilterError(f"the filter has more than {limits.MAX_NODES} conditions", position=path or None)
        if depth > limits.MAX_DEPTH:
            raise FilterError(f"the filter is nested deeper than {limits.MAX_DEPTH} levels", position=path or None,
                              hint="flatten the $and / $or / $not nesting")

    def filter(self, spec: Any, path: str, depth: int) -> Node:
        if not isinstance(spec, dict):
            raise FilterError(f"a filter object must be an object, not {_json_type(spec)}", position=path or None,
                              hint='{"column": value, "other": {"gte": 10}}')
        if not spec:
            raise FilterError("the filter object is empty", position=path or None,
                              hint="omit the filter to receive every change")
        self.bump(path, depth)
        items: list[Node] = []
        for key, value in spec.items():
            at = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or not key:
                raise FilterError("column names must be non-empty strings", position=at)
            _check_string(key, at)
            if key.startswith("$"):
                items.append(self.logic(key, value, at, depth))
            else:
                items.extend(self.column(key, value, at, depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def logic(self, key: str, value: Any, at: str, depth: int) -> Node:
        if key == "$not":
            return Not(self.filter(value, at, depth + 1))
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} takes a non-empty list of filter objects", position=at)
            items = tuple(self.filter(v, f"{at}[{i}]", depth + 1) for i, v in enumerate(value))
            if len(items) == 1:
                return items[0]
            return And(items) if key == "$and" else Or(items)
        raise FilterError(f"unknown logical operator {key!r}", position=at, hint="use $and, $or or $not")

    def column(self, col: str, value: Any, at: str, depth: int) -> list[Node]:
        if value is None:
            return [IsNull(col, pos=at)]
        if isinstance(value, list):
            return [self.in_list(col, value, False, at)]
        if not isinstance(value, dict):
            return [Compare(col, "eq", self.literal(value, at), pos=at)]
        if not value:
            raise FilterError(f"the operator object for {col!r} is empty", position=at,
                              hint=f"operators: {', '.join(OBJECT_OPERATORS)}")
        out: list[Node] = []
        for op, operand in value.items():
            self.bump(at, depth)
            where = f"{at}.{op}"
            if op in _COMPARE:
                if operand is None and op in ("eq", "neq"):
                    raise FilterError(f"{op}: null never matches (SQL NULL is not equal to anything)",
                                      position=where, hint='use {"is": null} or {"isnot": null}')
                out.append(Compare(col, _COMPARE[op], self.literal(operand, where, allow_json=True), pos=where))
            elif op in ("in", "nin"):
                if not isinstance(operand, list):
                    raise FilterError(f"{op} takes a list of values", position=where)
                out.append(self.in_list(col, operand, op == "nin", where))
            elif op in ("is", "isnot"):
                if operand is None:
                    out.append(IsNull(col, negated=op == "isnot", pos=where))
                elif isinstance(operand, bool):
                    out.append(IsBool(col, operand, negated=op == "isnot", pos=where))
                else:
                    raise FilterError(f"{op} takes null, true or false", position=where)
            elif op in _LIKE:
                if not isinstance(operand, str):
                    raise FilterError(f"{op} takes a string pattern (% any run, _ one character, \\ escapes)",
                                      position=where)
                ci, neg = _LIKE[op]
                out.append(Like(col, self.literal(operand, where), case_insensitive=ci, negated=neg, pos=where))
            elif op in ("between", "nbetween"):
                if not isinstance(operand, list) or len(operand) != 2:
                    raise FilterError(f"{op} takes a list of two values [low, high]", position=where)
                low, high = (self.literal(v, f"{where}[{i}]") for i, v in enumerate(operand))
                out.append(Between(col, low, high, negated=op == "nbetween", pos=where))
            else:
                raise FilterError(f"unknown operator {op!r} for column {col!r}", position=where,
                                  hint=f"operators: {', '.join(OBJECT_OPERATORS)}")
        return out

    def in_list(self, col: str, values: list, negated: bool, at: str) -> InList:
        if len(values) > limits.MAX_IN_LIST:
            raise FilterError(f"an in list has {len(values)} values; the limit is {limits.MAX_IN_LIST}",
                              position=at, hint="split the subscription")
        return InList(col, tuple(self.literal(v, f"{at}[{i}]") for i, v in enumerate(values)), negated, pos=at)

    def literal(self, v: Any, at: str, allow_json: bool = False) -> Lit:
        if v is None:
            return Lit(None, "null", pos=at)
        if isinstance(v, bool):
            return Lit(v, "bool", pos=at)
        if isinstance(v, int):
            return Lit(v, "int", pos=at)
        if isinstance(v, float):
            if math.isnan(v) or math.isinf(v):
                return Lit(Decimal(v), "numeric", pos=at)
            return Lit(Decimal(repr(v)), "numeric", pos=at)  # 99.95 means the numeric 99.95
        if isinstance(v, Decimal):
            return Lit(v, "numeric", pos=at)
        if isinstance(v, str):
            _check_string(v, at)
            if len(v) > limits.MAX_LITERAL_LENGTH:
                raise FilterError(f"a literal is {len(v)} characters long; the limit is {limits.MAX_LITERAL_LENGTH}",
                                  position=at)
            return Lit(v, "unknown", pos=at)
        if allow_json and isinstance(v, (dict, list)):
            _check_json_size(v, at)
            return Lit(_FrozenJson(v), "json", pos=at)
        raise FilterError(f"unsupported value of type {_json_type(v)}", position=at,
                          hint="values are strings, numbers, booleans or null")


def _check_string(s: str, at: str) -> None:
    if "\x00" in s:
        raise FilterError("strings must not contain NUL characters", position=at)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError("strings must be valid UTF-8 text", position=at) from None


def _check_json_size(v: Any, at: str) -> None:
    stack, seen = [(v, 1)], 0
    while stack:
        x, d = stack.pop()
        seen += 1
        if seen > limits.MAX_NODES * 4 or d > limits.MAX_DEPTH:
            raise FilterError("the JSON value is too large or too deeply nested", position=at)
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)


class _FrozenJson:
    """A JSON object/array literal kept hashable so the AST stays hashable."""

    __slots__ = ("value", "_key")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._key = json_key(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FrozenJson) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return repr(self.value)


def _json_type(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return "a string"
    return type(v).__name__
