"""``SubscriptionIndex``: which subscriptions of one table does a change match, without trying all.

Pure. Subscriptions with the same filter and event set share one *group*, evaluated once per
change. Each group sits in exactly one place:

- an **equality bucket** ``(column, key)`` when a top-level conjunct is ``column = v`` or
  ``column IN (...)`` (one bucket per value); a change looks up its own value: O(1);
- a **range grid** cell when top-level conjuncts bound a numeric/date/timestamp column on both
  sides (``amount BETWEEN 10 AND 20``, ``ts >= a AND ts < b``): ranges are grouped by width class
  (powers of two) and filed under ``floor(low / 2**k)``; a change looks at two cells per class;
- the **scan** set otherwise (OR at the top, one-sided ranges, LIKE, ...): evaluated every change.

Buckets and cells only select candidates; every candidate is then decided by the filter itself
(or, for a filter that is just the indexed equality, by the bucket hit). Add and remove are O(1)
amortised (O(values) for an IN list). ``match`` semantics (UPDATE transitions, DELETE without the
old row, unchanged TOAST) are in docs/filters.md and ``SubscriptionIndex.match``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from filters.compile import CompiledFilter, EqualityHint, RangeHint, compile_filter
from filters.ast import Compare, InList
from filters.errors import FilterError

if TYPE_CHECKING:
    from cdc.events import ChangeEvent, TableSchema

__all__ = ["SubscriptionIndex", "Match", "ALL_EVENTS", "Transition"]

ALL_EVENTS: frozenset[str] = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE"})
Transition = Literal["enter", "stay", "leave", "unknown"] | None
_MISSING = object()
_K_MIN = -60  # smallest range width class: cells of 2**-60
# a value the key functions cannot place (infinity, NaN, a date string Python cannot hold):
# fall back to every group of that column, decided by the filters themselves
_UNPLACEABLE = (TypeError, ValueError, AttributeError, OverflowError, ArithmeticError)


class Match(NamedTuple):
    """A subscription a change is delivered to.

    ``transition``: None for a plain match (INSERT, DELETE, TRUNCATE, or an UPDATE whose old row
    is not known); for an UPDATE whose old membership is known, ``enter`` (old row did not match,
    new does), ``stay`` (both match) or ``leave`` (old matched, new does not: delivered so the
    client can drop the row); ``unknown`` when the filter cannot be decided because the columns it
    needs are not in the change (DELETE under the default replica identity, unchanged TOAST).
    """

    sub_id: Hashable
    transition: Transition


class _Group:
    __slots__ = ("flt", "events", "subs", "exact", "place")

    def __init__(self, flt: CompiledFilter | None, events: frozenset[str]) -> None:
        self.flt = flt
        self.events = events
        self.subs: dict[Hashable, None] = {}
        self.exact: EqualityHint | None = None  # the filter IS this equality: a bucket hit decides
        self.place: tuple = ()

    def verdict(self, view: dict) -> bool | None:
        """True / False / None (undecidable) for one row view."""
        if self.flt is None:
            return True
        hint = self.exact
        if hint is not None:
            v = view.get(hint.column, _MISSING)
            if v is _MISSING:
                return None
            if v is None:
                return False
            try:
                return (hint.key(v) if hint.key else v) in hint.keys
            except _UNPLACEABLE:
                return self.flt.matches(view)
        return self.flt.matches(view)


class _Buckets:
    """Equality buckets of one column: key -> {group id: group}."""

    __slots__ = ("key", "by_value", "groups")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.by_value: dict[Any, dict[int, _Group]] = {}
        self.groups: dict[int, _Group] = {}

    def add(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups[id(g)] = g
        for k in keys:
            self.by_value.setdefault(k, {})[id(g)] = g

    def remove(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups.pop(id(g), None)
        for k in keys:
            b = self.by_value.get(k)
            if b is not None:
                b.pop(id(g), None)
                if not b:
                    del self.by_value[k]

    def candidates(self, view: dict, column: str) -> Iterable[_Group]:
        v = view.get(column, _MISSING)
        if v is _MISSING:
            return self.groups.values()
        if v is None:
            return ()
        try:
            b = self.by_value.get(self.key(v) if self.key else v)
        except _UNPLACEABLE:
            return self.groups.values()
        return b.values() if b else ()


class _RangeGrid:
    """Two-sided ranges of one column, filed by width class k under cell floor(low / 2**k)."""

    __slots__ = ("key", "to_float", "cells", "classes", "groups")

    def __init__(self, hint: RangeHint) -> None:
        self.key = hint.key
        self.to_float = hint.to_float
        self.cells: dict[tuple[int, int], dict[int, _Group]] = {}
        self.classes: dict[int, int] = {}
        self.groups: dict[int, _Group] = {}

    @staticmethod
    def cell_of(hint: RangeHint) -> tuple[int, int] | None:
        width = max(hint.high - hint.low, 0.0)
        k = max(math.frexp(width)[1] + 1, _K_MIN)  # width < 2**(k-1): a range spans at most 2 cells
        try:
            return k, math.floor(math.ldexp(hint.low, -k))
        except (OverflowError, ValueError):
            return None

    def add(self, g: _Group, cell: tuple[int, int]) -> None:
        self.cells.setdefault(cell, {})[id(g)] = g
        self.classes[cell[0]] = self.classes.get(cell[0], 0) + 1
        self.groups[id(g)] = g

    def remove(self, g: _Group, cell: tuple[int, int]) -> None:
        b = self.cells.get(cell)
        if b is not None:
            b.pop(id(g), None)
            if not b:
                del self.cells[cell]
        n = self.classes.get(cell[0], 0) - 1
        if n > 0:
            self.classes[cell[0]] = n
        else:
            self.classes.pop(cell[0], None)
        self.groups.pop(id(g), None)

    def candidates(self, view: dict, column: str) -> Iterable[_Group]:
        v = view.get(column, _MISSING)
        if v is _MISSING:
            return self.groups.values()
        if v is None:
            return ()
        try:
            f = self.to_float(self.key(v) if self.key else v)
            if not math.isfinite(f):
                return self.groups.values()
            out: list[_Group] = []
            cells = self.cells
            for k in self.classes:
                c = math.floor(math.ldexp(f, -k))
                b = cells.get((k, c))
                if b:
                    out.extend(b.values())
                b = cells.get((k, c - 1))
                if b:
                    out.extend(b.values())
            return out
        except _UNPLACEABLE:
            return self.groups.values()


class SubscriptionIndex:
    """The subscriptions of one table. Not thread-safe; add/remove between matches, O(1) amortised."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self._groups: dict[tuple, _Group] = {}
        self._subs: dict[Hashable, _Group] = {}
        self._eq: dict[str, _Buckets] = {}
        self._ranges: dict[str, _RangeGrid] = {}
        self._scan: dict[int, _Group] = {}

    def __len__(self) -> int:
        return len(self._subs)

    def __contains__(self, sub_id: Hashable) -> bool:
        return sub_id in self._subs

    def add(self, sub_id: Hashable, flt: CompiledFilter | None, events: Iterable[str] = ALL_EVENTS) -> None:
        """Register (or replace) a subscription. ``flt`` None matches every row; ``events`` is a
        set of INSERT / UPDATE / DELETE / TRUNCATE, or ``"*"`` / ``{"*"}`` for all."""
        evs = _normalise_events(events)
        if sub_id in self._subs:
            self.remove(sub_id)
        gkey = (flt, evs)
        g = self._groups.get(gkey)
        if g is None:
            g = self._groups[gkey] = _Group(flt, evs)
            self._place(g)
        g.subs[sub_id] = None
        self._subs[sub_id] = g

    def remove(self, sub_id: Hashable) -> None:
        """Forget a subscription (no error if unknown)."""
        g = self._subs.pop(sub_id, None)
        if g is None:
            return
        del g.subs[sub_id]
        if not g.subs:
            del self._groups[(g.flt, g.events)]
            self._unplace(g)

    def update_schema(self, schema: TableSchema) -> list[tuple[Hashable, FilterError]]:
        """Recompile every filter for the table's new columns (ALTER TABLE). Subscriptions whose
        filter no longer compiles are removed and returned with the error, for the caller to tell
        their clients."""
        old = [(sub_id, g.flt, g.events) for sub_id, g in self._subs.items()]
        self.__init__(schema)  # type: ignore[misc]
        recompiled: dict[CompiledFilter, CompiledFilter | FilterError] = {}
        dropped: list[tuple[Hashable, FilterError]] = []
        for sub_id, flt, events in old:
            new: CompiledFilter | FilterError | None = None
            if flt is not None:
                new = recompiled.get(flt)
                if new is None:
                    try:
                        new = compile_filter(flt.node, schema)
                    except FilterError as e:
                        new = e
                    recompiled[flt] = new
            if isinstance(new, FilterError):
                dropped.append((sub_id, new))
            else:
                self.add(sub_id, new, events)
        return dropped

    # -- placement

    def _place(self, g: _Group) -> None:
        flt = g.flt
        if flt is None:
            g.place = ("scan",)
            self._scan[id(g)] = g
            return
        eq = next((h for h in flt.equality if h.keys), None)
        if eq is not None:
            if isinstance(flt.node, (Compare, InList)):
                g.exact = eq
            b = self._eq.get(eq.column)
            if b is None:
                b = self._eq[eq.column] = _Buckets(eq.key)
            b.add(g, eq.keys)
            g.place = ("eq", eq.column, eq.keys)
            return
        for hint in flt.range:
            cell = _RangeGrid.cell_of(hint)
            if cell is not None:
                grid = self._ranges.get(hint.column)
                if grid is None:
                    grid = self._ranges[hint.column] = _RangeGrid(hint)
                grid.add(g, cell)
                g.place = ("range", hint.column, cell)
                return
        g.place = ("scan",)
        self._scan[id(g)] = g

    def _unplace(self, g: _Group) -> None:
        kind = g.place[0]
        if kind == "eq":
            b = self._eq[g.place[1]]
            b.remove(g, g.place[2])
            if not b.groups:
                del self._eq[g.place[1]]
        elif kind == "range":
            grid = self._ranges[g.place[1]]
            grid.remove(g, g.place[2])
            if not grid.groups:
                del self._ranges[g.place[1]]
        else:
            self._scan.pop(id(g), None)

    def _candidates(self, view: dict, into: dict[int, _Group]) -> None:
        for column, b in self._eq.items():
            for g in b.candidates(view, column):
                into[id(g)] = g
        for column, grid in self._ranges.items():
            for g in grid.candidates(view, column):
                into[id(g)] = g

    # -- matching

    def match(self, event: ChangeEvent) -> list[Match]:
        """The subscriptions ``event`` is delivered to, with the row's transition.

        INSERT: the new row matches. UPDATE: the new row matches, or the old row matched and the
        new does not (``leave``; only when the old membership is known). DELETE: the old row
        matched. Undecidable filters (needed columns absent) are delivered as ``unknown``.
        TRUNCATE: every subscription that asked for TRUNCATE, whatever its filter.
        """
        typ = event.type
        out: list[Match] = []
        if typ == "TRUNCATE":
            for g in self._groups.values():
                if typ in g.events:
                    out.extend(Match(s, None) for s in g.subs)
            return out
        new, old = _views(event, self.schema)
        cands: dict[int, _Group] = dict(self._scan)
        if new is not None:
            self._candidates(new, cands)
        if old is not None and typ != "INSERT":
            self._candidates(old, cands)
        for g in cands.values():
            if typ not in g.events:
                continue
            if typ == "UPDATE":
                nv = g.verdict(new)
                if nv is None:
                    t: Transition = "unknown"
                else:
                    ov = g.verdict(old) if old is not None else None
                    if ov is None:
                        if not nv:
                            continue
                        t = None
                    elif nv:
                        t = "stay" if ov else "enter"
                    elif ov:
                        t = "leave"
                    else:
                        continue
            else:
                v = g.verdict(new if typ == "INSERT" else old)
                if v is False:
                    continue
                t = None if v else "unknown"
            out.extend(Match(s, t) for s in g.subs)
        return out


def _views(event: ChangeEvent, schema: TableSchema) -> tuple[dict | None, dict | None]:
    """(new row view, old row view) with only the columns truly known."""
    typ = event.type
    if typ == "INSERT":
        return event.record or {}, None
    if typ == "DELETE":
        return None, event.old_record if event.old_record is not None else dict(event.primary_key)
    new = event.record or {}
    old = event.old_record
    if event.unchanged_toast and old is not None and event.old_record_complete:
        # unchanged TOAST values equal the old row's values
        new = {**new, **{c: old[c] for c in event.unchanged_toast if c in old and c not in new}}
    if old is None:
        # the key did not change: the old row's key columns are the new row's
        old = dict(event.primary_key) if event.primary_key else None
    return new, old


def _normalise_events(events: Iterable[str] | str) -> frozenset[str]:
    if isinstance(events, str):
        events = [events]
    out = set()
    for e in events:
        if not isinstance(e, str):
            raise FilterError(f"event names are strings, not {type(e).__name__}",
                              hint="INSERT, UPDATE, DELETE, TRUNCATE or *")
        u = e.upper()
        if u == "*":
            return ALL_EVENTS
        if u not in ALL_EVENTS:
            raise FilterError(f"unknown event {e!r}", hint="INSERT, UPDATE, DELETE, TRUNCATE or *")
        out.add(u)
    if not out:
        raise FilterError("no events given", hint="INSERT, UPDATE, DELETE, TRUNCATE or *")
    return frozenset(out)
