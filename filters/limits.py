"""Size limits every filter must fit in, checked before and while parsing (documented in docs/filters.md)."""

from __future__ import annotations

__all__ = ["MAX_TEXT_LENGTH", "MAX_NODES", "MAX_DEPTH", "MAX_IN_LIST", "MAX_LITERAL_LENGTH"]

MAX_TEXT_LENGTH = 16_384  # characters of a SQL / PostgREST filter (JSON size for the object form)
MAX_NODES = 1_000  # AST nodes (conditions + AND/OR/NOT), IN-list values not counted
MAX_DEPTH = 32  # nesting of AND / OR / NOT / parentheses
MAX_IN_LIST = 1_000  # values in one IN / NOT IN list
MAX_LITERAL_LENGTH = 4_096  # characters of one literal
