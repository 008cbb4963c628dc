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
from collections.abc import Callable, Hashable, Iterable
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
    """Subscriptions sharing one filter and event set; ``decide(view)`` -> True / False / None."""

    __slots__ = ("flt", "events", "subs", "exact", "place", "decide", "_out")

    def __init__(self, flt: CompiledFilter | None, events: frozenset[str]) -> None:
        self.flt = flt
        self.events = events
        self.subs: dict[Hashable, None] = {}
        self.exact: EqualityHint | None = None  # the filter IS this equality: a bucket hit decides
        self.place: tuple = ()
        self.decide: Callable[[dict], bool | None] = _always if flt is None else flt.matches
        self._out: dict[Transition, list[Match]] = {}  # Match lists, built once per membership

    def add(self, sub_id: Hashable) -> None:
        self.subs[sub_id] = None
        self._out.clear()

    def remove(self, sub_id: Hashable) -> None:
        del self.subs[sub_id]
        self._out.clear()

    def matches(self, t: Transition) -> list[Match]:
        out = self._out.get(t)
        if out is None:
            out = self._out[t] = [Match(s, t) for s in self.subs]
        return out


def _always(view: dict) -> bool:
    return True


def _equality_decider(hint: EqualityHint, fallback: Callable[[dict], bool | None]) -> Callable[[dict], bool | None]:
    column, key, keys = hint.column, hint.key, hint.keys

    def decide(view: dict) -> bool | None:
        v = view.get(column, _MISSING)
        if v is _MISSING:
            return None
        if v is None:
            return False
        try:
            return (key(v) if key else v) in keys
        except _UNPLACEABLE:
            return fallback(view)

    return decide


def _range_decider(hint: RangeHint, fallback: Callable[[dict], bool | None]) -> Callable[[dict], bool | None]:
    column, key = hint.column, hint.key
    lo, lo_incl, hi, hi_incl = hint.exact  # type: ignore[misc]

    def decide(view: dict) -> bool | None:
        v = view.get(column, _MISSING)
        if v is _MISSING:
            return None
        if v is None:
            return False
        try:
            k = key(v) if key else v
            return (lo <= k if lo_incl else lo < k) and (k <= hi if hi_incl else k < hi)
        except _UNPLACEABLE:
            return fallback(view)

    return decide


class _Bucket:
    """The groups filed under one (column, value), with per-event-type results cached: the Match
    list of groups the hit decides by itself, and the groups that still need their filter."""

    __slots__ = ("groups", "_cache")

    def __init__(self) -> None:
        self.groups: dict[int, _Group] = {}
        self._cache: dict[str, tuple[list[Match], list[_Group]]] = {}

    def changed(self) -> None:
        self._cache.clear()

    def resolved(self, typ: str) -> tuple[list[Match], list[_Group]]:
        cached = self._cache.get(typ)
        if cached is None:
            decided: list[Match] = []
            undecided: list[_Group] = []
            for g in self.groups.values():
                if typ in g.events:
                    if g.exact is not None:
                        decided.extend(g.matches(None))
                    else:
                        undecided.append(g)
            cached = self._cache[typ] = (decided, undecided)
        return cached


class _Buckets:
    """Equality buckets of one column: key -> bucket of groups."""

    __slots__ = ("key", "by_value", "groups")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.by_value: dict[Any, _Bucket] = {}
        self.groups: dict[int, _Group] = {}

    def add(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups[id(g)] = g
        for k in keys:
            b = self.by_value.get(k)
            if b is None:
                b = self.by_value[k] = _Bucket()
            b.groups[id(g)] = g
            b.changed()

    def remove(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups.pop(id(g), None)
        for k in keys:
            b = self.by_value.get(k)
            if b is not None:
                b.groups.pop(id(g), None)
                b.changed()
                if not b.groups:
                    del self.by_value[k]

    def touch(self, keys: Iterable[Any]) -> None:
        """A group's subscriptions changed: drop the cached results of its buckets."""
        for k in keys:
            b = self.by_value.get(k)
            if b is not None:
                b.changed()

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
        return b.groups.values() if b else ()


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
        # frexp: width < 2**k, and a float difference at or above 2**k never rounds below it; so
        # low <= v <= high puts floor(v / 2**k) in {cell, cell + 1}
        width = max(hint.high - hint.low, 0.0)
        k = max(math.frexp(width)[1], _K_MIN)
        try:
            return k, math.floor(math.ldexp(hint.low, -k))
        except (OverflowError, ValueError):
            return None

    def add(self, g: _Group, cell: tuple[int, int], hint: RangeHint) -> None:
        k, c = cell
        for at in {c, math.floor(math.ldexp(hint.high, -k))}:  # the cells of both ends (1 or 2)
            self.cells.setdefault((k, at), {})[id(g)] = (g, hint.low, hint.high, hint.exact)
        self.classes[k] = self.classes.get(k, 0) + 1
        self.groups[id(g)] = g

    def remove(self, g: _Group, cell: tuple[int, int]) -> None:
        k, c = cell
        for at in (c, c + 1):
            b = self.cells.get((k, at))
            if b is not None:
                b.pop(id(g), None)
                if not b:
                    del self.cells[(k, at)]
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
            ldexp, floor = math.ldexp, math.floor
            for k in self.classes:
                b = cells.get((k, floor(ldexp(f, -k))))
                if b:  # float bounds are monotone images of the exact ones: never drop a match
                    for g, lo, hi, _ in b.values():
                        if lo <= f <= hi:
                            out.append(g)
            return out
        except _UNPLACEABLE:
            return self.groups.values()

    def match_into(self, view: dict, column: str, typ: str, out: list[Match]) -> None:
        """Single-view matching (INSERT / DELETE): exact ranges decided inline on the value's key."""
        v = view.get(column, _MISSING)
        if v is None:
            return
        try:
            if v is _MISSING:
                raise ValueError
            kv = self.key(v) if self.key else v
            f = self.to_float(kv)
            if not math.isfinite(f):
                raise ValueError
        except _UNPLACEABLE:  # absent, NaN, infinite: every range of the column decides for itself
            for g in self.groups.values():
                _emit(g, view, typ, out)
            return
        cells = self.cells
        ldexp, floor = math.ldexp, math.floor
        for k in self.classes:
            b = cells.get((k, floor(ldexp(f, -k))))
            if b:
                for g, lo, hi, exact in b.values():
                    if lo <= f <= hi and typ in g.events:
                        if exact is None:
                            _emit(g, view, typ, out)
                        else:
                            elo, elo_incl, ehi, ehi_incl = exact
                            if ((elo <= kv if elo_incl else elo < kv)
                                    and (kv <= ehi if ehi_incl else kv < ehi)):
                                out.extend(g.matches(None))


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
        g.add(sub_id)
        self._subs[sub_id] = g
        if g.place[0] == "eq":
            self._eq[g.place[1]].touch(g.place[2])

    def remove(self, sub_id: Hashable) -> None:
        """Forget a subscription (no error if unknown)."""
        g = self._subs.pop(sub_id, None)
        if g is None:
            return
        g.remove(sub_id)
        if not g.subs:
            del self._groups[(g.flt, g.events)]
            self._unplace(g)
        elif g.place[0] == "eq":
            self._eq[g.place[1]].touch(g.place[2])

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
                g.decide = _equality_decider(eq, flt.matches)
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
                grid.add(g, cell, hint)
                if hint.exact is not None:
                    g.decide = _range_decider(hint, flt.matches)
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
                    out.extend(g.matches(None))
            return out
        new, old = _views(event, self.schema)
        if typ != "UPDATE":
            return self._match_one(new if typ == "INSERT" else old, typ)
        cands: dict[int, _Group] = dict(self._scan)
        if new is not None:
            self._candidates(new, cands)
        if old is not None and typ != "INSERT":
            self._candidates(old, cands)
        for g in cands.values():
            if typ not in g.events:
                continue
            if typ == "UPDATE":
                nv = g.decide(new)
                if nv is None:
                    t: Transition = "unknown"
                else:
                    ov = g.decide(old) if old is not None else None
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
            out.extend(g.matches(t))
        return out

    def _match_one(self, view: dict, typ: str) -> list[Match]:
        """INSERT / DELETE: one row view, so each group is found at most once (no dedup needed)."""
        out: list[Match] = []
        for g in self._scan.values():
            _emit(g, view, typ, out)
        for column, b in self._eq.items():
            v = view.get(column, _MISSING)
            if v is None:
                continue
            if v is _MISSING:
                for g in b.groups.values():
                    _emit(g, view, typ, out)
                continue
            try:
                bucket = b.by_value.get(b.key(v) if b.key else v)
            except _UNPLACEABLE:
                for g in b.groups.values():
                    _emit(g, view, typ, out)
                continue
            if bucket is not None:
                decided, undecided = bucket.resolved(typ)
                out.extend(decided)  # groups whose whole filter is this equality
                for g in undecided:
                    _emit(g, view, typ, out)
        for column, grid in self._ranges.items():
            grid.match_into(view, column, typ, out)
        return out


def _emit(g: _Group, view: dict, typ: str, out: list[Match]) -> None:
    if typ in g.events:
        v = g.decide(view)
        if v is not False:
            out.extend(g.matches(None if v else "unknown"))


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
