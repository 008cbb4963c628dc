"""SubscriptionIndex: same answers as evaluating every filter, UPDATE/DELETE/TOAST semantics."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, ColumnInfo, TableSchema
from filters import ALL_EVENTS, FilterError, Match, SubscriptionIndex, compile_filter

SCHEMA = TableSchema("public", "orders", (
    ColumnInfo("id", 23, "int4", is_key=True),
    ColumnInfo("user_id", 23, "int4"),
    ColumnInfo("status", 25, "text"),
    ColumnInfo("amount", 1700, "numeric"),
    ColumnInfo("ts", 1184, "timestamptz"),
    ColumnInfo("note", 25, "text"),  # a large value: may be an unchanged TOAST datum
))
FULL = TableSchema("public", "orders", SCHEMA.columns, replica_identity="full")
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def row(id=1, user_id=1, status="pending", amount="10", ts=T0, note="n"):
    return {"id": id, "user_id": user_id, "status": status,
            "amount": None if amount is None else Decimal(amount), "ts": ts, "note": note}


def insert(r):
    return ChangeEvent(schema="public", table="orders", type="INSERT", record=r, primary_key={"id": r["id"]})


def update(new, old=None, complete=False, toast=()):
    rec = {k: v for k, v in new.items() if k not in toast}
    return ChangeEvent(schema="public", table="orders", type="UPDATE", record=rec, old_record=old,
                       old_record_complete=complete, primary_key={"id": new["id"]}, unchanged_toast=list(toast))


def delete(old, complete=False):
    return ChangeEvent(schema="public", table="orders", type="DELETE",
                       old_record=old if complete else {"id": old["id"]}, old_record_complete=complete,
                       primary_key={"id": old["id"]})


def matches(index, event):
    return sorted(index.match(event), key=repr)


def make(*subs):
    index = SubscriptionIndex(SCHEMA)
    for sub_id, flt, *events in subs:
        index.add(sub_id, None if flt is None else compile_filter(flt, SCHEMA), *events)
    return index


def test_insert_matches_equality_in_range_scan_and_unfiltered():
    index = make(("u1", "user_id = 1"), ("u2", "user_id = 2"), ("in", {"status": ["pending", "paid"]}),
                 ("range", "amount BETWEEN 5 AND 15"), ("scan", "status LIKE 'pen%'"), ("all", None),
                 ("or", "user_id = 9 OR amount > 5"))
    assert matches(index, insert(row())) == sorted(
        [Match("u1", None), Match("in", None), Match("range", None), Match("scan", None), Match("all", None),
         Match("or", None)], key=repr)
    assert matches(index, insert(row(user_id=2, status="x", amount="100"))) == sorted(
        [Match("u2", None), Match("all", None), Match("or", None)], key=repr)


def test_event_types_are_filtered_per_subscription():
    index = make(("ins", "user_id = 1", {"INSERT"}), ("upd", "user_id = 1", ["update"]), ("star", "user_id = 1", "*"))
    assert {m.sub_id for m in index.match(insert(row()))} == {"ins", "star"}
    assert {m.sub_id for m in index.match(update(row()))} == {"upd", "star"}


def test_update_transitions_with_the_full_old_row():
    index = make(("pending", "status = 'pending'"))
    old, new = row(status="paid"), row(status="pending")
    assert index.match(update(new, old, complete=True)) == [Match("pending", "enter")]
    assert index.match(update(new, new, complete=True)) == [Match("pending", "stay")]
    assert index.match(update(old, new, complete=True)) == [Match("pending", "leave")]  # dashboard drops the row
    assert index.match(update(old, old, complete=True)) == []


def test_update_without_the_old_row_matches_on_the_new_row_only():
    index = make(("pending", "status = 'pending'"))
    assert index.match(update(row(status="pending"))) == [Match("pending", None)]
    assert index.match(update(row(status="paid"))) == []  # cannot know it left: documented


def test_update_on_key_filters_knows_the_old_membership_from_the_key():
    index = make(("id5", "id = 5"))
    assert index.match(update(row(id=5))) == [Match("id5", "stay")]  # the key did not change
    # the key changed: the old key is sent even under the default replica identity
    assert index.match(update(row(id=6), old={"id": 5})) == [Match("id5", "leave")]
    assert index.match(update(row(id=5), old={"id": 4})) == [Match("id5", "enter")]


def test_unfiltered_subscriptions_stay():
    index = make(("all", None))
    assert index.match(update(row())) == [Match("all", "stay")]
    assert index.match(delete(row())) == [Match("all", None)]


def test_delete_under_default_replica_identity_is_delivered_as_unknown():
    index = make(("pending", "status = 'pending'"), ("id1", "id = 1"), ("id2", "id = 2"),
                 ("both", "id = 2 AND status = 'x'"))
    got = matches(index, delete(row(id=1)))
    # the old row only has the key: filters on other columns cannot be decided, key filters can
    assert got == sorted([Match("pending", "unknown"), Match("id1", None)], key=repr)


def test_delete_with_the_full_old_row_is_decided():
    index = make(("pending", "status = 'pending'"), ("paid", "status = 'paid'"))
    assert index.match(delete(row(status="paid"), complete=True)) == [Match("paid", None)]


def test_unchanged_toast_is_never_read_as_null():
    index = make(("note_null", "note IS NULL"), ("note_n", "note = 'n'"), ("user", "user_id = 1"))
    new = row(note="n")
    # old row not available: a filter on the TOAST column cannot be decided
    got = matches(index, update(new, toast=["note"]))
    assert got == sorted([Match("note_null", "unknown"), Match("note_n", "unknown"), Match("user", None)], key=repr)
    # full old row: the unchanged value is the old one
    got = matches(index, update(new, old=row(note="n"), complete=True, toast=["note"]))
    assert got == sorted([Match("note_n", "stay"), Match("user", "stay")], key=repr)


def test_truncate_reaches_every_subscription_that_asked_for_it():
    index = make(("a", "user_id = 1"), ("b", None), ("c", "status = 'x'", {"INSERT"}))
    ev = ChangeEvent(schema="public", table="orders", type="TRUNCATE", truncated=["public.orders"])
    assert sorted(index.match(ev), key=repr) == [Match("a", None), Match("b", None)]


def test_add_replace_remove_and_shared_groups():
    index = make(("a", "user_id = 1"), ("b", "user_id = 1"))
    assert {m.sub_id for m in index.match(insert(row()))} == {"a", "b"}
    index.add("a", compile_filter("user_id = 2", SCHEMA))  # replace
    assert {m.sub_id for m in index.match(insert(row()))} == {"b"}
    index.remove("b")
    index.remove("b")  # idempotent
    assert index.match(insert(row())) == []
    assert len(index) == 1 and "a" in index
    index.remove("a")
    assert index._eq == {} and index._groups == {}  # nothing left behind


def test_bad_event_names_are_rejected():
    index = SubscriptionIndex(SCHEMA)
    for bad in (["INSERTED"], [], [1]):
        try:
            index.add("x", None, bad)
        except FilterError as e:
            assert "INSERT, UPDATE, DELETE, TRUNCATE" in e.hint
        else:
            raise AssertionError(f"{bad!r} accepted")


def test_update_schema_recompiles_and_reports_broken_filters():
    index = make(("a", "user_id = 1"), ("b", "status = 'x'"), ("c", "note = 'n'"))
    altered = TableSchema("public", "orders", tuple(
        ColumnInfo(c.name, 20, "int8", is_key=c.is_key) if c.name == "user_id" else c
        for c in SCHEMA.columns if c.name != "note"))
    dropped = index.update_schema(altered)
    assert [sub for sub, _ in dropped] == ["c"]
    assert "unknown column 'note'" in str(dropped[0][1])
    assert "c" not in index and len(index) == 2
    ev = insert({"id": 1, "user_id": 1, "status": "x", "amount": None, "ts": None})
    assert {m.sub_id for m in index.match(ev)} == {"a", "b"}


# ------------------------------------------------------------------ index == linear evaluation

FILTERS = st.sampled_from([
    "user_id = 1", "user_id = 2", "user_id IN (1, 3)", "status = 'pending'", "status IN ('paid', 'x')",
    "amount BETWEEN 5 AND 15", "amount >= 10 AND amount < 12.5", "amount > 100", "ts >= '2026-01-01' AND ts < '2026-01-02'",
    "status = 'pending' AND amount > 5", "user_id = 1 OR status = 'paid'", "NOT (user_id = 1)", "note IS NULL",
    "id = 3", "amount IS NULL", "status LIKE 'p%'", "user_id = 1 AND note = 'n'", "amount BETWEEN 1e-9 AND 2e-9",
])
ROWS = st.builds(
    row, id=st.integers(1, 4), user_id=st.one_of(st.none(), st.integers(1, 3)),
    status=st.sampled_from([None, "pending", "paid", "x"]),
    amount=st.sampled_from([None, "0", "5", "10", "12.5", "15", "100", "101", "NaN", "Infinity", "0.0000000015"]),
    ts=st.sampled_from([None, T0, T0 + timedelta(hours=23), T0 + timedelta(days=1), "infinity"]),
    note=st.sampled_from([None, "n"]))


@st.composite
def events(draw):
    kind = draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"]))
    new, old = draw(ROWS), draw(ROWS)
    if kind == "INSERT":
        return insert(new)
    if kind == "DELETE":
        return delete(old, complete=draw(st.booleans()))
    complete = draw(st.booleans())
    toast = ["note"] if draw(st.booleans()) else []
    if complete:
        return update(new, old=dict(old, id=new["id"], **({"note": new["note"]} if toast else {})),
                      complete=True, toast=toast)
    return update(new, toast=toast)


def _replay_against_linear(index, ops, compile_filter):
    """Apply (op, sub, filter text, events, change) steps; every match must equal _linear's."""
    subs = {}
    for op, sub, flt_text, evs, event in ops:
        if op == "add":
            flt = None if flt_text is None else compile_filter(flt_text)
            index.add(sub, flt, evs)
            subs[sub] = (flt, evs)
        elif op == "remove":
            index.remove(sub)
            subs.pop(sub, None)
        else:
            assert sorted(index.match(event), key=repr) == _linear(subs, event), event
    assert len(index) == len(subs)
    return subs


def _linear(subs, event):
    """The reference: every filter evaluated on the row views, per the documented rules."""
    out = []
    if event.type == "DELETE":
        old = event.old_record
        for sub_id, (flt, evs) in subs.items():
            v = True if flt is None else flt.matches(old)
            if "DELETE" in evs and v is not False:
                out.append(Match(sub_id, None if v else "unknown"))
        return sorted(out, key=repr)
    new = dict(event.record)
    if event.type == "UPDATE" and event.old_record_complete:
        new.update({c: event.old_record[c] for c in event.unchanged_toast})
    old = None
    if event.type == "UPDATE":
        old = event.old_record if event.old_record is not None else dict(event.primary_key)
    for sub_id, (flt, evs) in subs.items():
        if event.type not in evs:
            continue
        nv = True if flt is None else flt.matches(new)
        if event.type == "INSERT":
            if nv is not False:
                out.append(Match(sub_id, None if nv else "unknown"))
            continue
        ov = True if flt is None else flt.matches(old)
        if nv is None:
            out.append(Match(sub_id, "unknown"))
        elif ov is None:
            if nv:
                out.append(Match(sub_id, None))
        elif nv or ov:
            out.append(Match(sub_id, "stay" if nv and ov else "enter" if nv else "leave"))
    return sorted(out, key=repr)


@functools.lru_cache(maxsize=None)
def _compiled(text):
    return compile_filter(text, SCHEMA)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "add", "add", "remove", "match"]), st.integers(0, 15),
                              st.one_of(st.none(), FILTERS), st.sampled_from([ALL_EVENTS, frozenset({"UPDATE"})]),
                              events()), min_size=1, max_size=40))
def test_index_agrees_with_linear_evaluation(ops):
    index = SubscriptionIndex(SCHEMA)
    _replay_against_linear(index, ops, _compiled)


def test_range_grid_finds_ranges_of_every_width():
    index = SubscriptionIndex(SCHEMA)
    bounds = [(0, 0), (0, 1), (-3, 3), (1e-9, 2e-9), (5, 5_000_000), (-1e12, 1e12), (7.25, 7.5)]
    for i, (lo, hi) in enumerate(bounds):
        index.add(i, compile_filter(f"amount BETWEEN {lo!r} AND {hi!r}", SCHEMA))
    assert index._scan == {}  # all in the grid
    for probe in ["0", "1", "-3", "3", "0.0000000015", "5", "7.3", "4999999", "1e12", "-1e12", "2e12"]:
        expected = {i for i, (lo, hi) in enumerate(bounds) if Decimal(repr(lo)) <= Decimal(probe) <= Decimal(repr(hi))}
        assert {m.sub_id for m in index.match(insert(row(amount=probe)))} == expected, probe


def test_a_filter_compiled_for_another_table_is_refused():
    other = TableSchema("public", "users", (ColumnInfo("email", 25, "text"),))
    index = SubscriptionIndex(SCHEMA)
    try:
        index.add("x", compile_filter("email = 'a'", other))
    except FilterError as e:
        assert "email" in e.message and "public.orders" in e.message
    else:
        raise AssertionError("accepted")
    assert len(index) == 0


# ------------------------------------------------------------------ range grid == linear evaluation

_LOWS = ["-50", "-1", "0", "0.1", "0.1000000000000000000001", "3", "7.25", "8", "63", "1000", "123456.78",
         "1000000000000"]
_WIDTHS = ["0", "0.000000000001", "0.000000001", "0.5", "1", "7", "8", "9", "63", "64", "65", "511", "4096", "1000000"]
_NUDGES = ["0", "0.0000000000000000000001", "-0.0000000000000000000001", "0.5", "-0.5", "1", "-1", "8", "64", "100"]


@st.composite
def _range_filters(draw):
    lo = Decimal(draw(st.sampled_from(_LOWS)))
    hi = lo + Decimal(draw(st.sampled_from(_WIDTHS)))
    lo_s, hi_s = format(lo, "f"), format(hi, "f")
    form = draw(st.sampled_from(["between", "ge_lt", "gt_le", "gt_lt", "general", "ts"]))
    if form == "between":
        return f"amount BETWEEN {lo_s} AND {hi_s}"
    if form == "ge_lt":
        return f"amount >= {lo_s} AND amount < {hi_s}"
    if form == "gt_le":
        return f"amount > {lo_s} AND amount <= {hi_s}"
    if form == "gt_lt":
        return f"{lo_s} < amount AND amount < {hi_s}"
    if form == "general":  # a range plus a condition that is not indexed: decided by the filter
        return f"amount BETWEEN {lo_s} AND {hi_s} AND note IS NULL"
    days = draw(st.integers(0, 3))
    high = T0 + timedelta(days=days, hours=draw(st.sampled_from([0, 12])))
    return f"ts >= '2026-01-01' AND ts <= '{high.isoformat()}'"


@st.composite
def _range_amounts(draw):
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([None, "NaN", "Infinity", "-Infinity"]))
    base = Decimal(draw(st.sampled_from(_LOWS)))
    if kind < 5:  # near a high bound
        base += Decimal(draw(st.sampled_from(_WIDTHS)))
    return format(base + Decimal(draw(st.sampled_from(_NUDGES))), "f")


_RANGE_ROWS = st.builds(row, id=st.integers(1, 3), amount=_range_amounts(),
                        ts=st.sampled_from([None, T0, T0 + timedelta(days=1), T0 + timedelta(days=1, hours=12),
                                            T0 + timedelta(days=3, microseconds=1), "infinity"]),
                        note=st.sampled_from([None, "n"]))


@st.composite
def _range_events(draw):
    kind = draw(st.sampled_from(["INSERT", "UPDATE", "UPDATE", "DELETE"]))
    new, old = draw(_RANGE_ROWS), draw(_RANGE_ROWS)
    if kind == "INSERT":
        return insert(new)
    if kind == "DELETE":
        return delete(old, complete=draw(st.booleans()))
    if draw(st.booleans()):
        return update(new, old=dict(old, id=new["id"]), complete=True)
    return update(new)


@functools.lru_cache(maxsize=None)
def _compiled_full(text):
    return compile_filter(text, FULL)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "add", "add", "remove", "match", "match"]), st.integers(0, 11),
                              st.one_of(st.none(), _range_filters()),
                              st.sampled_from([ALL_EVENTS, frozenset({"UPDATE"}), frozenset({"INSERT", "DELETE"})]),
                              _range_events()), min_size=1, max_size=60))
def test_range_index_agrees_with_linear_evaluation_under_interleaved_changes(ops):
    """Random ranges of every width, values on, just inside and just outside their bounds (closer
    than a float can tell), NaN and infinities, subscriptions added and removed between changes."""
    index = SubscriptionIndex(FULL)
    subs = _replay_against_linear(index, ops, _compiled_full)
    for sub in list(subs):
        index.remove(sub)
    assert index._ranges == {} and index._groups == {}  # nothing left behind


def test_range_bounds_are_exact_on_every_side_of_every_cell():
    """Ranges of many widths and both inclusivities, probed exactly on, just inside and just
    outside each bound (differences a float cannot tell), and in the cells around them; INSERT and
    UPDATE with the full old row must agree with evaluating every filter."""
    lows = ["-1", "0.1", "0.1000000000000000000001", "3", "7.25", "63", "123456.78", "1000000000000"]
    widths = ["0", "0.000000001", "0.5", "7", "8", "9", "64", "4096"]
    subs = {}
    index = SubscriptionIndex(FULL)
    bounds = set()
    for lo_s in lows:
        for w in widths:
            lo, hi = Decimal(lo_s), Decimal(lo_s) + Decimal(w)
            bounds |= {lo, hi}
            lo_f, hi_f = format(lo, "f"), format(hi, "f")
            for form in (f"amount BETWEEN {lo_f} AND {hi_f}", f"amount > {lo_f} AND amount < {hi_f}",
                         f"amount >= {lo_f} AND amount < {hi_f}", f"amount > {lo_f} AND amount <= {hi_f}"):
                subs[form] = (_compiled_full(form), ALL_EVENTS)
                index.add(form, subs[form][0])
    assert index._scan == {}  # all on the grid
    nudges = [Decimal(n) for n in ("0", "1e-22", "-1e-22", "0.5", "-0.5", "-4")]
    probes = sorted({b + n for b in bounds for n in nudges})
    for i, p in enumerate(probes):
        ev = insert(row(amount=format(p, "f")))
        assert sorted(index.match(ev), key=repr) == _linear(subs, ev), p
        other = probes[(i * 7 + 3) % len(probes)]
        old = row(amount=format(other, "f"))
        ev = update(row(amount=format(p, "f")), old=old, complete=True)
        assert sorted(index.match(ev), key=repr) == _linear(subs, ev), (p, other)


def test_huge_values_next_to_tiny_ranges_are_matched_not_raised():
    """A value far beyond the float range of a fine cell grid (1e300 next to a range 1e-9 wide)
    is simply outside those ranges."""
    index = SubscriptionIndex(FULL)
    subs = {}
    for i, text in enumerate(["amount BETWEEN 1e-9 AND 2e-9", "amount BETWEEN 0 AND 1e300",
                              "amount BETWEEN -1e299 AND 5", "amount BETWEEN 1e-9 AND 2e-9 AND note IS NULL"]):
        subs[i] = (_compiled_full(text), ALL_EVENTS)
        index.add(i, subs[i][0])
    for probe in ["1e300", "-1e300", "1e299", "0.0000000015"]:
        ev = insert(row(amount=probe, note=None))
        assert sorted(index.match(ev), key=repr) == _linear(subs, ev), probe
        ev = update(row(amount=probe, note=None), old=row(amount="1e-9", note=None), complete=True)
        assert sorted(index.match(ev), key=repr) == _linear(subs, ev), probe
