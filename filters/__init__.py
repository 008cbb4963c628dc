"""Subscription filters: parse (object form / SQL via pglast / PostgREST), compile with SQL semantics, index.

Public surface::

    parse_filter(spec, *, syntax="auto") -> Filter          # filters.parse (Filter: the AST, filters.ast)
    compile_filter(spec_or_node, schema) -> CompiledFilter    # filters.compile
    SubscriptionIndex(schema).add / remove / match / update_schema   # filters.index
    FilterError (message, position, hint)                     # filters.errors

Pure: no asyncio, psycopg, aiohttp or redis. See docs/filters.md.
"""

from filters.ast import Filter, Node
from filters.compile import CompiledFilter, compile_filter
from filters.errors import FilterError
from filters.index import ALL_EVENTS, Match, SubscriptionIndex
from filters.parse import parse_filter

__all__ = ["parse_filter", "compile_filter", "CompiledFilter", "FilterError", "SubscriptionIndex", "Match",
           "ALL_EVENTS", "Filter", "Node"]
