"""PostgREST filter syntax, as Supabase users write it: ``status=eq.pending&amount=gte.100``.

Grammar (values are percent-decoded after splitting; every value is a string that takes the
column's type, like a quoted SQL literal)::

    filter     := part ('&' part)*
    part       := column '=' condition | ['not.'] ('and' | 'or') '=' '(' list ')'
    condition  := ['not.'] op '.' value
    op         := eq | neq | gt | gte | lt | lte | like | ilike | in | is | isdistinct
    list       := item (',' item)*
    item       := column '.' condition | ['not.'] ('and' | 'or') '(' list ')'

``like``/``ilike`` take ``*`` for ``%``; ``in.(a,b,"c,d")`` quotes values holding , ( ) or ", and
so may a value inside ``and(...)`` / ``or(...)`` (``or=(a.eq."x,y",b.eq.1)``; a backslash escapes);
``is`` takes null, not_null, true, false, unknown.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from filters import limits
from filters.ast import And, Compare, InList, IsBool, IsNull, Like, Lit, Node, Not, Or
from filters.errors import FilterError

__all__ = ["parse_postgrest_filter", "looks_like_postgrest", "POSTGREST_OPERATORS"]

POSTGREST_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "is", "isdistinct")
_UNSUPPORTED = ("match", "imatch", "cs", "cd", "ov", "sl", "sr", "nxl", "nxr", "adj", "fts", "plfts",
                "phfts", "wfts", "any", "all")
_DETECT = re.compile(
    r"\s*(?:(?:not\.)?(?:or|and)=\(|[A-Za-z_][A-Za-z0-9_$]*=(?:not\.)?(?:%s)\.)"
    % "|".join(POSTGREST_OPERATORS + _UNSUPPORTED))
_HINT = ("PostgREST filters look like status=eq.pending&amount=gte.100, id=in.(1,2,3), "
         "deleted_at=is.null, or=(a.eq.1,b.gt.2); operators: " + ", ".join(POSTGREST_OPERATORS))


def looks_like_postgrest(text: str) -> bool:
    """The auto-detection rule: starts with ``column=op.`` or ``[not.]and=(`` / ``[not.]or=(``."""
    return _DETECT.match(text) is not None


def parse_postgrest_filter(text: str) -> Node:
    p = _Parser(text)
    parts = p.split(text, "&", 0)
    items = [p.part(seg, start) for seg, start in parts if seg]
    if not items:
        raise FilterError("the filter is empty", hint="omit the filter to receive every change")
    return items[0] if len(items) == 1 else And(tuple(items))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.count = 0

    def bump(self, pos: int, depth: int) -> None:
        self.count += 1
        if self.count > limits.MAX_NODES:
            raise FilterError(f"the filter has more than {limits.MAX_NODES} conditions", position=pos)
        if depth > limits.MAX_DEPTH:
            raise FilterError(f"the filter is nested deeper than {limits.MAX_DEPTH} levels", position=pos)

    def split(self, s: str, sep: str, offset: int) -> list[tuple[str, int]]:
        """Split on sep outside double quotes and parentheses; (segment, absolute offset)."""
        out, depth, quoted, start, i = [], 0, False, 0, 0
        while i < len(s):
            ch = s[i]
            if quoted:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise FilterError("unbalanced ')'", position=offset + i, hint=_HINT)
            elif ch == sep and depth == 0:
                out.append((s[start:i], offset + start))
                start = i + 1
            i += 1
        if quoted:
            raise FilterError("unterminated double quote", position=offset + len(s), hint=_HINT)
        if depth:
            raise FilterError("unbalanced '(': missing ')'", position=offset + len(s), hint=_HINT)
        out.append((s[start:], offset + start))
        return out

    def decode(self, s: str, pos: int) -> str:
        try:
            return unquote(s, errors="strict")
        except UnicodeDecodeError:
            raise FilterError("percent-encoded bytes are not valid UTF-8", position=pos) from None

    def part(self, seg: str, pos: int) -> Node:
        key, eq, value = seg.partition("=")
        if not eq:
            raise FilterError(f"expected column=operator.value, got {seg[:40]!r}", position=pos, hint=_HINT)
        key = self.decode(key, pos)
        vpos = pos + len(seg) - len(value)
        negated = key.startswith("not.")
        logic = key[4:] if negated else key
        if logic in ("and", "or"):
            node = self.logic(logic, value, vpos, 1)
            return Not(node) if negated else node
        return self.condition(key.strip(), self.decode(value, vpos), vpos, 1)

    def logic(self, op: str, body: str, pos: int, depth: int) -> Node:
        self.bump(pos, depth)
        if not (body.startswith("(") and body.endswith(")")):
            raise FilterError(f"{op} takes a parenthesised list: {op}=(a.eq.1,b.gt.2)", position=pos, hint=_HINT)
        items = [self.item(s, p, depth + 1) for s, p in self.split(body[1:-1], ",", pos + 1)]
        if not items:
            raise FilterError(f"{op}() is empty", position=pos)
        if len(items) == 1:
            return items[0]
        return And(tuple(items)) if op == "and" else Or(tuple(items))

    def item(self, s: str, pos: int, depth: int) -> Node:
        m = re.match(r"(not\.)?(and|or)\(", s)
        if m:
            node = self.logic(m[2], s[m.end() - 1:], pos + m.end() - 1, depth)
            return Not(node) if m[1] else node
        column, dot, rest = s.partition(".")
        if not dot:
            raise FilterError(f"expected column.operator.value, got {s[:40]!r}", position=pos, hint=_HINT)
        return self.condition(self.decode(column, pos).strip(), self.decode(rest, pos), pos + len(column) + 1, depth,
                              quoted=True)

    def condition(self, column: str, cond: str, pos: int, depth: int, quoted: bool = False) -> Node:
        """``[not.]op.value``; inside and()/or() a value may be double-quoted to hold , ( ) or "."""
        self.bump(pos, depth)
        if not column:
            raise FilterError("missing column name", position=pos, hint=_HINT)
        negated = cond.startswith("not.")
        if negated:
            cond = cond[4:]
        op, dot, value = cond.partition(".")
        if not dot:
            raise FilterError(f"expected operator.value after {column!r}, got {cond[:40]!r}", position=pos, hint=_HINT)
        if len(value) > limits.MAX_LITERAL_LENGTH:
            raise FilterError(f"a value is {len(value)} characters long; the limit is {limits.MAX_LITERAL_LENGTH}",
                              position=pos)
        if quoted and op != "in" and len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        node = self.operator(column, op, value, pos)
        return Not(node) if negated else node

    def operator(self, column: str, op: str, value: str, pos: int) -> Node:
        lit = Lit(value, "unknown", pos=pos)
        if op in ("eq", "neq", "gt", "gte", "lt", "lte"):
            return Compare(column, op, lit, pos=pos)
        if op == "isdistinct":
            return Compare(column, "distinct", lit, pos=pos)
        if op in ("like", "ilike"):
            return Like(column, Lit(value.replace("*", "%"), "unknown", pos=pos), case_insensitive=op == "ilike", pos=pos)
        if op == "in":
            return InList(column, self.in_values(value, pos), pos=pos)
        if op == "is":
            v = value.lower()
            if v == "null":
                return IsNull(column, pos=pos)
            if v == "not_null":
                return IsNull(column, negated=True, pos=pos)
            if v in ("true", "false", "unknown"):
                return IsBool(column, {"true": True, "false": False, "unknown": None}[v], pos=pos)
            raise FilterError(f"is.{value} is not allowed", position=pos, hint="is takes null, not_null, true, false or unknown")
        if op in _UNSUPPORTED:
            raise FilterError(f"PostgREST operator {op!r} is not supported", position=pos, hint=_HINT)
        raise FilterError(f"unknown operator {op!r} for column {column!r}", position=pos, hint=_HINT)

    def in_values(self, value: str, pos: int) -> tuple[Lit, ...]:
        if not (value.startswith("(") and value.endswith(")")):
            raise FilterError("in takes a parenthesised list: in.(1,2,3)", position=pos, hint=_HINT)
        body = value[1:-1]
        if not body:
            return ()
        items = self.split(body, ",", pos + 1)
        if len(items) > limits.MAX_IN_LIST:
            raise FilterError(f"an in list has {len(items)} values; the limit is {limits.MAX_IN_LIST}", position=pos)
        out = []
        for s, p in items:
            if len(s) >= 2 and s.startswith('"') and s.endswith('"'):
                s = re.sub(r"\\(.)", r"\1", s[1:-1])
            out.append(Lit(s, "unknown", pos=p))
        return tuple(out)
