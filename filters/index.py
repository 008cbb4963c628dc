"""``SubscriptionIndex``: which subscriptions of one table does a change match, without trying all.

Pure. Subscriptions with the same filter and event set share one *group*, evaluated once per
change. Each group sits in exactly one place:

- an **equality bucket** ``(column, key)`` when a top-level conjunct is ``column = v`` or
  ``column IN (...)`` (one bucket per value); a change looks up its own value: O(1);
- a **range grid** when top-level conjuncts bound a numeric/date/timestamp column on both sides
  (``amount BETWEEN 10 AND 20``, ``ts >= a AND ts < b``): a range of width w is filed in the
  size class s (a multiple of 3) with ``2**s <= w < 8 * 2**s``, in every cell ``floor(x / 2**s)``
  it overlaps (at most 10); a change looks at one cell per class. Cells strictly inside a range
  need no check at all, the end cells a float comparison (exact bounds only when the value's
  float equals a bound);
- the **scan** set otherwise (OR at the top, one-sided ranges, LIKE, ...): evaluated every change.

Buckets and cells only select candidates; every candidate is then decided by the filter itself
(or, for a filter that is just the indexed equality or range, by the hit and its bounds). Each
group keeps its Match list current as subscriptions come and go, so a change never builds one.
Add and remove are O(1) amortised (O(values) for an IN list). ``match`` semantics (UPDATE
transitions, DELETE without the old row, unchanged TOAST) are in docs/filters.md and
``SubscriptionIndex.match``.
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
_K_MIN = -60  # ranges narrower than 2**-60 share the cells of 2**-63
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


_new_match = tuple.__new__  # Match(s, t) without the Python-level NamedTuple __new__


class _Group:
    """Subscriptions sharing one filter and event set; ``decide(view)`` -> True / False / None."""

    __slots__ = ("flt", "events", "subs", "exact", "exact_range", "place", "plain", "_out")

    def __init__(self, flt: CompiledFilter | None, events: frozenset[str]) -> None:
        self.flt = flt
        self.events = events
        self.subs: dict[Hashable, int] = {}  # sub_id -> its position in ``plain``
        self.exact: EqualityHint | None = None  # the filter IS this equality: a bucket hit decides
        self.exact_range: RangeHint | None = None  # the filter IS this range: its bounds decide
        self.place: tuple = ()
        # the transition-None Match list, kept up to date on add/remove (O(1): append, swap-remove)
        # so that a change never builds it; buckets and range cells hold this very list
        self.plain: list[Match] = []
        self._out: dict[Transition, list[Match]] | None = None  # other transitions, built on demand

    def add(self, sub_id: Hashable) -> None:
        if sub_id in self.subs:
            return
        self.subs[sub_id] = len(self.plain)
        self.plain.append(_new_match(Match, (sub_id, None)))
        self._out = None

    def remove(self, sub_id: Hashable) -> None:
        pos = self.subs.pop(sub_id)
        last = self.plain.pop()
        if pos < len(self.plain):
            self.plain[pos] = last
            self.subs[last.sub_id] = pos
        self._out = None

    def matches(self, t: Transition) -> list[Match]:
        if t is None:
            return self.plain
        if self._out is None:
            self._out = {}
        out = self._out.get(t)
        if out is None:
            out = self._out[t] = [_new_match(Match, (s, t)) for s in self.subs]
        return out

    def decide(self, view: dict) -> bool | None:
        """True / False / None (undecidable) for one row view."""
        flt = self.flt
        if flt is None:
            return True
        hint = self.exact or self.exact_range
        if hint is None:
            return flt.matches(view)
        v = view.get(hint.column, _MISSING)
        if v is _MISSING:
            return None
        if v is None:
            return False
        try:
            k = hint.key(v) if hint.key else v
            if self.exact is not None:
                return k in hint.keys
            lo, lo_incl, hi, hi_incl = hint.exact
            return (lo <= k if lo_incl else lo < k) and (k <= hi if hi_incl else k < hi)
        except _UNPLACEABLE:
            return flt.matches(view)


class _Bucket:
    """The groups filed under one (column, value), with per-event-type results cached: the Match
    list of groups the hit decides by itself, and the groups that still need their filter."""

    __slots__ = ("groups", "_cache", "_trans")

    def __init__(self) -> None:
        self.groups: dict[int, _Group] = {}
        self._cache: dict[str, tuple[list[Match], list[_Group], list[_Group]]] | None = None
        self._trans: dict[tuple[str, Transition], list[Match]] | None = None

    def changed(self) -> None:
        self._cache = self._trans = None

    def resolved(self, typ: str) -> tuple[list[Match], list[_Group]]:
        """(Match list of the groups this hit decides, groups that still need their filter)."""
        r = self.resolve(typ)
        return r[0], r[1]

    def transition(self, typ: str, t: Transition) -> list[Match]:
        """The Match list, with transition ``t``, of every group this hit decides for ``typ``."""
        if self._trans is None:
            self._trans = {}
        out = self._trans.get((typ, t))
        if out is None:
            decided = self.resolve(typ)[2]
            out = decided[0].matches(t) if len(decided) == 1 else [m for g in decided for m in g.matches(t)]
            self._trans[(typ, t)] = out
        return out

    def resolve(self, typ: str) -> tuple[list[Match], list[_Group], list[_Group]]:
        """(Match list of the decided groups, undecided groups, decided groups) for ``typ``."""
        if self._cache is None:
            self._cache = {}
        cached = self._cache.get(typ)
        if cached is None:
            decided: list[_Group] = []
            undecided: list[_Group] = []
            for g in self.groups.values():
                if typ in g.events:
                    (decided if g.exact is not None else undecided).append(g)
            matches = decided[0].plain if len(decided) == 1 else [m for g in decided for m in g.plain]
            cached = self._cache[typ] = (matches, undecided, decided)
        return cached


class _Buckets:
    """Equality buckets of one column: key -> bucket of groups."""

    __slots__ = ("key", "by_value", "fast", "groups")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.by_value: dict[Any, _Bucket] = {}
        # for INSERT/DELETE lookups: the bucket, replaced by its Match list once known that the
        # hit decides every group in it for every event type (one hop instead of five)
        self.fast: dict[Any, _Bucket | list[Match]] = {}
        self.groups: dict[int, _Group] = {}

    def add(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups[id(g)] = g
        for k in keys:
            b = self.by_value.get(k)
            if b is None:
                b = self.by_value[k] = _Bucket()
            b.groups[id(g)] = g
            b.changed()
            self._refresh(k, b)

    def remove(self, g: _Group, keys: Iterable[Any]) -> None:
        self.groups.pop(id(g), None)
        for k in keys:
            b = self.by_value.get(k)
            if b is not None:
                b.groups.pop(id(g), None)
                b.changed()
                if b.groups:
                    self._refresh(k, b)
                else:
                    del self.by_value[k]
                    del self.fast[k]

    def touch(self, keys: Iterable[Any]) -> None:
        """A group's subscriptions changed: drop the cached results of its buckets."""
        for k in keys:
            b = self.by_value.get(k)
            if b is not None:
                b.changed()
                self._refresh(k, b)

    def _refresh(self, k: Any, b: _Bucket) -> None:
        """A bucket of one group that the hit decides for every event type is answered by that
        group's own (always current) Match list: no cache to build on the first change."""
        if len(b.groups) == 1:
            g = next(iter(b.groups.values()))
            if g.exact is not None and g.events is ALL_EVENTS:
                self.fast[k] = g.plain
                return
        self.fast[k] = b

    def settle(self, k: Any, b: _Bucket, typ: str) -> tuple[list[Match], list[_Group]]:
        """Resolve a bucket for ``typ``; remember its Match list if it holds for every type."""
        decided, undecided = b.resolved(typ)
        if not undecided and all(g.events is ALL_EVENTS for g in b.groups.values()):
            self.fast[k] = decided
        return decided, undecided


class _RangeGrid:
    """Two-sided ranges of one column, on a grid of cells per *size class*.

    A range of float width w is filed in class s with ``2**s <= w < 8 * 2**s`` (s a multiple of 3),
    in every cell ``floor(x / 2**s)`` from its low to its high end: at most 10 cells, so add and
    remove are O(1). A value looks at one cell per class present.

    The float bounds are monotone images of the exact ones, so a value whose float lies *strictly*
    inside them lies strictly inside the exact bounds, and one outside them is outside. A group
    whose whole filter is the range and that wants every event type (*simple*) is thus decided
    by floats alone except when the value's float equals a bound: in the cells strictly between
    its end cells it is filed as *covering* (its Match list is taken as is), in the end cells as a
    simple entry. Every other group is a *general* entry: float pre-check, then its filter.
    """

    __slots__ = ("key", "to_float", "classes", "counts", "groups")

    def __init__(self, hint: RangeHint) -> None:
        self.key = hint.key
        self.to_float = hint.to_float
        # s -> cell -> ({id: covering group's Match list}, {id: simple entry}, {id: general entry});
        # simple: (float lo, float hi, Match list, exact bounds, group); general: (lo, hi, group, None).
        # Match lists are held directly: one pointer less to chase per change
        self.classes: dict[int, dict[int, tuple[dict, dict, dict]]] = {}
        self.counts: dict[int, int] = {}  # s -> groups filed in that class
        self.groups: dict[int, _Group] = {}

    @staticmethod
    def cell_of(hint: RangeHint) -> tuple[int, int, int] | None:
        """(class s, first cell, last cell), or None when the bounds cannot be placed."""
        width = max(hint.high - hint.low, 0.0)
        e = max(math.frexp(width)[1], _K_MIN)  # width < 2**e, and >= 2**(e-1) unless 0
        s = 3 * ((e - 1) // 3)
        try:
            first, last = math.floor(math.ldexp(hint.low, -s)), math.floor(math.ldexp(hint.high, -s))
        except (OverflowError, ValueError):
            return None
        return (s, first, last) if 0 <= last - first <= 16 else None

    def add(self, g: _Group, place: tuple[int, int, int], hint: RangeHint) -> None:
        s, first, last = place
        cells = self.classes.setdefault(s, {})
        simple = hint.exact is not None and g.events is ALL_EVENTS
        entry = (hint.low, hint.high, g.plain, hint.exact, g) if simple else (hint.low, hint.high, g, None)
        for c in range(first, last + 1):
            cell = cells.get(c)
            if cell is None:
                cell = cells[c] = ({}, {}, {})
            if not simple:
                cell[2][id(g)] = entry
            elif first < c < last:
                cell[0][id(g)] = g.plain
            else:
                cell[1][id(g)] = entry
        self.counts[s] = self.counts.get(s, 0) + 1
        self.groups[id(g)] = g

    def remove(self, g: _Group, place: tuple[int, int, int]) -> None:
        s, first, last = place
        cells = self.classes.get(s, {})
        for c in range(first, last + 1):
            cell = cells.get(c)
            if cell is not None:
                for part in cell:
                    part.pop(id(g), None)
                if not (cell[0] or cell[1] or cell[2]):
                    del cells[c]
        n = self.counts.get(s, 0) - 1
        if n > 0:
            self.counts[s] = n
        else:
            self.counts.pop(s, None)
            self.classes.pop(s, None)
        self.groups.pop(id(g), None)

    def _float_of(self, v: Any) -> tuple[Any, float]:
        """(key, float) of a value; raises _UNPLACEABLE for absent, NaN or infinite values."""
        if v is _MISSING:
            raise ValueError
        kv = self.key(v) if self.key else v
        f = self.to_float(kv)
        if f - f != 0.0:  # inf or NaN
            raise ValueError
        return kv, f

    def split(self, v: Any) -> tuple[dict[int, _Group], list[_Group]]:
        """For a value: (simple groups it satisfies, general groups whose float bounds hold it,
        to be decided by their filters). Raises _UNPLACEABLE for an absent, NaN or infinite value."""
        if v is None:
            return {}, []
        kv, f = self._float_of(v)
        true: dict[int, _Group] = {}
        general: list[_Group] = []
        ldexp, floor = math.ldexp, math.floor
        for s, cells in self.classes.items():
            try:
                cell = cells.get(floor(ldexp(f, -s)))
            except OverflowError:  # beyond every placed bound of this class: in none of its ranges
                continue
            if cell is None:
                continue
            groups = self.groups
            for gid in cell[0]:
                true[gid] = groups[gid]
            for gid, (lo, hi, _, exact, g) in cell[1].items():
                if lo < f < hi:
                    true[gid] = g
                elif lo == f or f == hi:
                    elo, elo_incl, ehi, ehi_incl = exact
                    if (elo <= kv if elo_incl else elo < kv) and (kv <= ehi if ehi_incl else kv < ehi):
                        true[gid] = g
            general.extend(g for lo, hi, g, _ in cell[2].values() if lo <= f <= hi)
        return true, general

    def match_into(self, view: dict, column: str, typ: str, out: list[Match]) -> None:
        """Single-view matching (INSERT / DELETE): exact ranges decided inline on the value's key."""
        v = view.get(column, _MISSING)
        if v is None:
            return
        try:  # _float_of, inlined: this runs for every change
            if v is _MISSING:
                raise ValueError
            kv = self.key(v) if self.key else v
            f = self.to_float(kv)
            if f - f != 0.0:
                raise ValueError
        except _UNPLACEABLE:  # absent, NaN, infinite: every range of the column decides for itself
            for g in self.groups.values():
                _emit(g, view, typ, out)
            return
        ldexp, floor = math.ldexp, math.floor
        for s, cells in self.classes.items():
            try:
                cell = cells.get(floor(ldexp(f, -s)))
            except OverflowError:  # beyond every placed bound of this class: in none of its ranges
                continue
            if cell is None:
                continue
            covering, simple, general = cell
            for plain in covering.values():
                out.extend(plain)
            for lo, hi, plain, exact, _ in simple.values():
                if lo < f < hi:
                    out.extend(plain)
                elif lo == f or f == hi:  # on a float bound: the exact bounds decide
                    elo, elo_incl, ehi, ehi_incl = exact
                    if (elo <= kv if elo_incl else elo < kv) and (kv <= ehi if ehi_incl else kv < ehi):
                        out.extend(plain)
            for lo, hi, g, _ in general.values():
                if lo <= f <= hi:
                    _emit(g, view, typ, out)


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
        if flt is not None and not isinstance(flt, CompiledFilter):
            raise TypeError(f"add() takes a CompiledFilter or None, not {type(flt).__name__}: "
                            "compile_filter(spec, schema) first")
        if flt is not None:
            missing = [c for c in flt.columns if self.schema.column(c) is None]
            if missing:
                raise FilterError(f"the filter reads {', '.join(sorted(missing))}, not columns of "
                                  f"{self.schema.schema}.{self.schema.table}",
                                  hint="compile the filter against this table's schema")
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
                if hint.exact is not None:
                    g.exact_range = hint
                grid.add(g, cell, hint)
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

    # -- matching

    def match(self, event: ChangeEvent) -> list[Match]:
        """The subscriptions ``event`` is delivered to, with the row's transition.

        INSERT: the new row matches. UPDATE: the new row matches, or the old row matched and the
        new does not (``leave``; only when the old membership is known). DELETE: the old row
        matched. Undecidable filters (needed columns absent) are delivered as ``unknown``.
        TRUNCATE: every subscription that asked for TRUNCATE, whatever its filter.
        """
        typ = event.type
        if typ == "INSERT":
            return self._match_one(event.record or {}, typ)
        if typ == "TRUNCATE":
            out: list[Match] = []
            for g in self._groups.values():
                if typ in g.events:
                    out.extend(g.plain)
            return out
        new, old = _views(event, self.schema)
        if typ != "UPDATE":
            return self._match_one(old, typ)
        return self._match_update(new, old, typ)

    def _match_update(self, new: dict, old: dict | None, typ: str) -> list[Match]:
        """UPDATE: two row views. Groups an equality bucket decides get their transition from the
        buckets of the new and old values; every other candidate is decided on both views."""
        out: list[Match] = []
        generic: dict[int, _Group] = dict(self._scan)
        for column, b in self._eq.items():
            vn = new.get(column, _MISSING)
            vo = _MISSING if old is None else old.get(column, _MISSING)
            try:
                if vn is _MISSING:
                    raise ValueError
                bn = None if vn is None else b.by_value.get(b.key(vn) if b.key else vn)
                if vo is _MISSING:  # old membership unknown: plain matches on the new row
                    if bn is not None:
                        decided, undecided = bn.resolved(typ)
                        out.extend(decided)
                        for g in undecided:
                            generic[id(g)] = g
                    continue
                bo = None if vo is None else b.by_value.get(b.key(vo) if b.key else vo)
            except _UNPLACEABLE:
                generic.update(b.groups)
                continue
            if bn is not None and bn is bo:
                out.extend(bn.transition(typ, "stay"))
                for g in bn.resolve(typ)[1]:
                    generic[id(g)] = g
                continue
            # buckets of different values rarely share a group (an IN list holding both values)
            disjoint = bn is None or bo is None or bo.groups.keys().isdisjoint(bn.groups)
            if bn is not None:
                _, undecided, decided_groups = bn.resolve(typ)
                if disjoint:
                    out.extend(bn.transition(typ, "enter"))
                else:
                    for g in decided_groups:
                        out.extend(g.matches("stay" if id(g) in bo.groups else "enter"))
                for g in undecided:
                    generic[id(g)] = g
            if bo is not None:
                _, undecided, decided_groups = bo.resolve(typ)
                if disjoint:
                    out.extend(bo.transition(typ, "leave"))
                else:
                    for g in decided_groups:
                        if id(g) not in bn.groups:
                            out.extend(g.matches("leave"))
                for g in undecided:
                    generic[id(g)] = g
        for column, grid in self._ranges.items():
            vo = _MISSING if old is None else old.get(column, _MISSING)
            try:
                true_new, general = grid.split(new.get(column, _MISSING))
                true_old, general_old = (None, ()) if vo is _MISSING else grid.split(vo)
            except _UNPLACEABLE:  # every range of the column decides for itself
                generic.update(grid.groups)
                continue
            for g in general:
                generic[id(g)] = g
            for g in general_old:
                generic[id(g)] = g
            # simple groups (the filter is the range, every event type): decided by the grid
            if true_old is None:  # old membership unknown
                for g in true_new.values():
                    out.extend(g.plain)
                continue
            for gid, g in true_new.items():
                out.extend(g.matches("stay" if gid in true_old else "enter"))
            for gid, g in true_old.items():
                if gid not in true_new:
                    out.extend(g.matches("leave"))
        for g in generic.values():
            if typ not in g.events:
                continue
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
                k = b.key(v) if b.key else v
                hit = b.fast.get(k)
            except _UNPLACEABLE:
                for g in b.groups.values():
                    _emit(g, view, typ, out)
                continue
            if hit is None:
                continue
            if hit.__class__ is list:  # every group here is this equality, for every event type
                out.extend(hit)
                continue
            decided, undecided = b.settle(k, hit, typ)
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
    if events is ALL_EVENTS:
        return ALL_EVENTS
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
    return ALL_EVENTS if out == ALL_EVENTS else frozenset(out)  # one shared set: stays in cache
