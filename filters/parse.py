"""``parse_filter``: any of the three filter syntaxes -> the one AST (``filters.ast``).

Syntax selection with ``syntax="auto"``: a dict is the object form; a string is PostgREST when it
starts with ``column=operator.`` (``status=eq.pending``) or ``and=(`` / ``or=(`` (optionally
``not.``), and SQL otherwise. Pass ``syntax`` explicitly to skip detection.
"""

from __future__ import annotations

import json
from typing import Literal

from filters import limits
from filters.ast import Filter
from filters.errors import FilterError
from filters.parse_object import parse_object_filter
from filters.parse_postgrest import looks_like_postgrest, parse_postgrest_filter
from filters.parse_sql import check_text, parse_sql_filter

__all__ = ["parse_filter", "Syntax"]

Syntax = Literal["auto", "object", "sql", "postgrest"]


def parse_filter(spec: dict | str, *, syntax: Syntax = "auto") -> Filter:
    """Parse a filter; FilterError (position + hint) for anything not allowed."""
    if syntax not in ("auto", "object", "sql", "postgrest"):
        raise FilterError(f"unknown filter syntax {syntax!r}", hint="auto, object, sql or postgrest")
    if syntax == "object" or (syntax == "auto" and isinstance(spec, dict)):
        if not isinstance(spec, dict):
            raise FilterError("the object syntax needs a JSON object", hint='{"status": "pending"}')
        _check_object_size(spec)
        return parse_object_filter(spec)
    text = check_text(spec)
    if syntax == "postgrest" or (syntax == "auto" and looks_like_postgrest(text)):
        return parse_postgrest_filter(text)
    return parse_sql_filter(text)


def _check_object_size(spec: dict) -> None:
    try:
        size = len(json.dumps(spec, default=str))
    except (ValueError, RecursionError):  # circular or absurdly deep
        raise FilterError("the filter object is too deeply nested or circular") from None
    if size > limits.MAX_TEXT_LENGTH * 4:
        raise FilterError(f"the filter object is {size} bytes as JSON; the limit is {limits.MAX_TEXT_LENGTH * 4}")
