"""The one small filter AST that all three syntaxes (object form, SQL, PostgREST) parse into.

Nodes are frozen, hashable dataclasses: two filters that mean the same thing structurally compare
equal, which the index uses to evaluate a shared filter once per change.

Leaves always compare one column with literals; there are no column-to-column comparisons, no
functions and no arithmetic. Literals keep the kind the user wrote (a quoted string is ``unknown``
and takes the column's type, like a quoted SQL literal) and an optional explicit cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal as _L, Union

__all__ = [
    "Lit", "Compare", "InList", "Between", "IsNull", "IsBool", "Like", "And", "Or", "Not",
    "Node", "Filter", "CompareOp", "LitKind", "columns_of", "walk",
]

CompareOp = _L["eq", "neq", "lt", "lte", "gt", "gte", "distinct", "notdistinct"]
LitKind = _L["unknown", "int", "numeric", "bool", "null", "json"]


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal value. ``kind``: unknown (quoted string, typed by the column), int, numeric
    (``Decimal``), bool, null, json (a JSON array/object from the object form)."""

    value: object
    kind: LitKind
    cast: str | None = None  # a normalised type name ("timestamptz", "int4", ...) or None
    # where it was written: char offset (SQL/PostgREST) or a path (object form); not part of equality
    pos: int | str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "numeric" and not isinstance(self.value, Decimal):
            raise TypeError("numeric literal must be a Decimal")


@dataclass(frozen=True, slots=True)
class Compare:
    """``column <op> literal``; distinct / notdistinct are IS [NOT] DISTINCT FROM."""

    column: str
    op: CompareOp
    value: Lit
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class InList:
    column: str
    values: tuple[Lit, ...]
    negated: bool = False
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Between:
    column: str
    low: Lit
    high: Lit
    negated: bool = False
    symmetric: bool = False
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class IsNull:
    column: str
    negated: bool = False  # IS NOT NULL
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class IsBool:
    """``column IS [NOT] TRUE/FALSE/UNKNOWN`` (value None is UNKNOWN); never returns NULL."""

    column: str
    value: bool | None
    negated: bool = False
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Like:
    column: str
    pattern: Lit
    case_insensitive: bool = False
    negated: bool = False
    escape: str | None = "\\"  # None: no escape character (ESCAPE '')
    pos: int | str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: "Node"


Node = Union[Compare, InList, Between, IsNull, IsBool, Like, And, Or, Not]
Filter = Node  # what parse_filter returns


def walk(node: Node):
    """Every node of the tree, depth first (iterative: safe on deep trees)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)


def columns_of(node: Node) -> frozenset[str]:
    """The columns a filter reads."""
    return frozenset(n.column for n in walk(node) if hasattr(n, "column"))
