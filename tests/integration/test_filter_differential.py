"""Differential test: our compiled predicate agrees with Postgres on the same WHERE clause.

Random rows go into a real table of many types; each row is read back as Postgres' text output and
converted by ``cdc.values`` (exactly what the CDC stream gives the filters). Random filters are
evaluated by Postgres (``SELECT id, (<filter>) FROM t``) and by ``compile_filter``: the SQL values
(true / false / NULL) must be identical, row by row.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.string import TextLoader
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cdc.events import ColumnInfo, TableSchema
from cdc.values import convert
from filters import FilterError, compile_filter

pytestmark = pytest.mark.postgres

COLUMNS = {  # name -> (SQL type, typname)
    "i": ("int4", "int4"), "b": ("int8", "int8"), "n": ("numeric", "numeric"), "f": ("float8", "float8"),
    "r": ("float4", "float4"), "t": ("text", "text"), "v": ("varchar(20)", "varchar"), "c": ("char(4)", "bpchar"),
    "bo": ("bool", "bool"), "d": ("date", "date"), "ts": ("timestamp", "timestamp"),
    "tz": ("timestamptz", "timestamptz"), "u": ("uuid", "uuid"), "j": ("jsonb", "jsonb"),
}
TEXTS = ["", "a", "A", "ab", "abc", "b", "B", "é", "Éa", "école", "a%b", "a_b", "a\\b", "it's", " a", "a ", "z", "日本",
         "ab%", "K"]
POOLS = {
    "i": ["-2147483648", "-1", "0", "1", "2", "100", "2147483647"],
    "b": ["-9223372036854775808", "0", "1", "100", "9007199254740993", "9223372036854775807"],
    "n": ["0", "1", "1.0", "1.5", "-2.25", "100", "99.95", "NaN", "Infinity", "-Infinity",
          "12345678901234567890.123456789", "0.000000000000000000001"],
    "f": ["0", "-0", "0.1", "1", "1.5", "NaN", "Infinity", "-Infinity", "1e300", "-2.5", "100"],
    "r": ["0.1", "1", "1.5", "NaN", "3.4e38", "-0.5", "Infinity", "100"],
    "t": TEXTS, "v": TEXTS, "c": ["a", "ab", "abcd", "", "a b", "A"],
    "bo": ["true", "false"],
    "d": ["2026-01-01", "2025-12-31", "1999-01-01", "2026-01-02", "infinity", "-infinity"],
    "ts": ["2026-01-01 00:00:00", "2026-01-01 12:30:00.5", "2025-12-31 23:59:59.999999", "2026-01-02 00:00:00",
           "infinity", "-infinity"],
    "tz": ["2026-01-01 00:00:00+00", "2026-01-01 01:00:00+01", "2025-12-31 23:00:00-01", "2026-01-01 00:00:00.000001+00",
           "infinity", "-infinity"],
    "u": ["00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
          "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "j": ['{"a": 1}', '{"a": 1.0}', "[1, 2]", '"x"', "1", "true", '{"b": [1, {"c": null}], "a": "x"}', "[]", "2.50"],
}
# literals that are not row values: other spellings Postgres accepts as input for the type
EXTRA_LITERALS = {
    "i": [" 42 ", "+7", "-0"], "n": ["1e2", "-0.0", ".5", "inf", "-inf", "nan"],
    "f": ["1e2", " .5", "-inf", "nan", "1.0000000000000002"], "r": ["0.1000000001", "1e-3", "nan"],
    "bo": ["t", "yes", "off", "0", "TRUE", "n"], "d": ["2026-1-1", "2026-01-01 "],
    "ts": ["2026-01-01T12:30:00.5", "2026-01-01 12:30:00.5+05", "2026-01-01", "2026-01-01 12:30"],
    "tz": ["2026-01-01T01:00:00+01:00", "2026-01-01 00:00:00Z", "2026-01-01", "2025-12-31 23:00:00-01:00",
           "2026-01-01 05:30:00+05:30"],
    "u": ["{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11"],
    "j": ['{"a":1}', '[1,2.0]', '{"a": 1, "a": 2}', '1.00', '{"b": [1, {"c": null}], "a": "x"}'],
}
ORDERED = {"i", "b", "n", "f", "r", "t", "v", "c", "bo", "d", "ts", "tz", "u"}
TEXTUAL = {"t", "v", "c"}
NUMERIC = {"i", "b", "n", "f", "r"}
LIKE_PATTERNS = ["%", "a%", "%b", "_", "a_", "%a%", "a\\%b", "a\\_b", "", "A%", "é%", "%\\\\%", "_b%", "a b%", "%%",
                 "abc", "ab__", "\\a%"]
CASTS = {"d": ["::timestamp", "::timestamptz"], "ts": ["::date", "::timestamptz"], "tz": ["::date", "::timestamp"],
         "n": ["::int4", "::float8"], "i": ["::numeric", "::int8", "::float8"], "f": ["::numeric", "::float4"],
         "r": ["::float8", "::numeric"], "t": ["::text", "::varchar"], "c": ["::text", "::bpchar"], "b": ["::int4"]}


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def literal(draw, col: str) -> str:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return "NULL"
    pool = POOLS[col] + EXTRA_LITERALS.get(col, [])
    text = draw(st.sampled_from(pool))
    if col in NUMERIC and choice <= 3 and text.strip().lstrip("+-").replace(".", "", 1).replace("e", "", 1).isdigit():
        return text.strip()  # an unquoted number: int or numeric literal
    if choice == 4 and col in CASTS:
        cast = draw(st.sampled_from(CASTS[col]))
        if cast == "::float4" and "e300" in text:
            return quote(text)
        return quote(text) + cast
    return quote(text)


@st.composite
def leaf(draw) -> str:
    col = draw(st.sampled_from(sorted(COLUMNS)))
    ops = ["=", "<>", "!=", "IS NULL", "IS NOT NULL", "IN", "NOT IN", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"]
    if col in ORDERED:
        ops += ["<", "<=", ">", ">=", "BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC"]
    if col in TEXTUAL:
        ops += ["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "LIKE ESCAPE"]
    if col == "bo":
        ops += ["IS TRUE", "IS NOT FALSE", "IS UNKNOWN", "bare", "NOT bare"]
    op = draw(st.sampled_from(ops))
    if op in ("IS NULL", "IS NOT NULL", "IS TRUE", "IS NOT FALSE", "IS UNKNOWN"):
        return f"{col} {op}"
    if op == "bare":
        return col
    if op == "NOT bare":
        return f"NOT {col}"
    if op in ("IN", "NOT IN"):
        items = draw(st.lists(literal(col), min_size=1, max_size=4))
        return f"{col} {op} ({', '.join(items)})"
    if "BETWEEN" in op:
        return f"{col} {op} {draw(literal(col))} AND {draw(literal(col))}"
    if op == "LIKE ESCAPE":
        pat = draw(st.sampled_from(LIKE_PATTERNS)).replace("\\", "!")
        return f"{col} LIKE {quote(pat)} ESCAPE '!'"
    if "LIKE" in op:
        return f"{col} {op} {quote(draw(st.sampled_from(LIKE_PATTERNS)))}"
    lit = draw(literal(col))
    if draw(st.booleans()) and op in ("=", "<", "<=", ">", ">="):  # literal on the left
        return f"{lit} {op} {col}"
    return f"{col} {op} {lit}"


def expr(depth: int = 2):
    if depth == 0:
        return leaf()
    sub = expr(depth - 1)
    return st.one_of(
        leaf(),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: "(" + " AND ".join(xs) + ")"),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: "(" + " OR ".join(xs) + ")"),
        sub.map(lambda x: f"NOT ({x})"),
    )


row_values = st.fixed_dictionaries({c: st.one_of(st.none(), st.sampled_from(POOLS[c])) for c in COLUMNS})


_SCHEMA_OIDS: dict[str, int] = {}


@pytest.fixture(scope="module")
def diff_db(pg_server):
    """One database for the module (the hypothesis examples reuse it): table t of every type."""
    name = "filter_diff_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    conn = psycopg.connect(pg_server.dsn_for(name), autocommit=True)
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO'")
    cols = ", ".join(f"{c} {t}" for c, (t, _) in COLUMNS.items())
    conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, {cols})")
    oids = dict(conn.execute(
        "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0").fetchall())
    _SCHEMA_OIDS.update(oids)
    schema = TableSchema("public", "t", tuple(
        [ColumnInfo("id", oids["id"], "int4", is_key=True)]
        + [ColumnInfo(c, oids[c], typname) for c, (_, typname) in COLUMNS.items()]))
    yield conn, schema
    conn.close()
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _load_rows(conn, rows: list[dict]) -> list[dict]:
    """Insert rows, read them back as the CDC stream would deliver them (text output -> cdc.values)."""
    conn.execute("TRUNCATE t")
    names = list(COLUMNS)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO t (id, {', '.join(names)}) VALUES (%s, {', '.join('%s::' + COLUMNS[c][0] for c in names)})",
            [(i, *[r[c] for c in names]) for i, r in enumerate(rows)])
    out = []
    cur = conn.cursor()
    for col in _SCHEMA_OIDS.values():  # read each value as Postgres' own text output, as pgoutput sends it
        cur.adapters.register_loader(col, TextLoader)
    for rec in cur.execute(f"SELECT id::text::int, {', '.join(names)} FROM t ORDER BY id").fetchall():
        record = {"id": int(rec[0])}
        for c, text in zip(names, rec[1:]):
            record[c] = convert(text, COLUMNS[c][1])
        out.append(record)
    return out


def _postgres_says(conn, where: str) -> tuple[list | None, str | None]:
    try:
        return [v for _, v in conn.execute(f"SELECT id, ({where}) FROM t ORDER BY id").fetchall()], None
    except psycopg.Error as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0]}"


def _assert_agrees_with_postgres(conn, schema, rows, spec, where: str) -> None:
    """Our compiled ``spec`` and Postgres evaluating ``where`` (its SQL) give the same value on every row.

    We may refuse what Postgres accepts only for the documented unsupported corners; we must refuse
    what Postgres refuses (at registration, with a message)."""
    records = _load_rows(conn, rows)
    expected, pg_error = _postgres_says(conn, where)
    try:
        flt = compile_filter(spec, schema)
    except FilterError as e:
        event("refused by both" if pg_error else "refused by us only (documented)")
        assert pg_error is not None or _documented_refusal(str(e)), f"we refused {spec!r} ({e}); Postgres accepts {where}"
        return
    assert pg_error is None, f"we accepted {spec!r} but Postgres refuses {where}: {pg_error}"
    got = [flt.sql_value(r) for r in records]
    event("accepted: some rows match" if True in got else "accepted: no row matches")
    assert got == expected, f"filter {spec!r} = {where}\nrows {records}\nours {got}\npostgres {expected}"


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row_values, min_size=1, max_size=6), where=expr())
def test_compiled_filter_agrees_with_postgres(diff_db, rows, where):
    conn, schema = diff_db
    _assert_agrees_with_postgres(conn, schema, rows, where, where)


def _documented_refusal(message: str) -> bool:
    return "LIKE pattern must not end with escape character" in message


def test_the_differential_test_can_fail(diff_db):
    """Guard against a vacuous property: a wrong predicate must disagree with Postgres."""
    conn, schema = diff_db
    records = _load_rows(conn, [{c: POOLS[c][1] for c in COLUMNS}, {c: None for c in COLUMNS}])
    expected, _ = _postgres_says(conn, "n = 1.0")
    assert expected == [True, None]
    assert [compile_filter("n = 1.0", schema).sql_value(r) for r in records] == expected
    assert [compile_filter("n <> 1.0", schema).sql_value(r) for r in records] != expected


# ------------------------------------------------------------------ object form and PostgREST

def _sql_literal(lit) -> str:
    """Render an AST literal back to SQL, only to ask Postgres the same question."""
    if lit.kind == "null":
        text = "NULL"
    elif lit.kind == "bool":
        text = "true" if lit.value else "false"
    elif lit.kind in ("int", "numeric"):
        text = str(lit.value)
        if lit.kind == "numeric" and not lit.value.is_finite():
            text = quote(text) + "::numeric"
    elif lit.kind == "json":
        import json as _json
        text = quote(_json.dumps(lit.value.value))
    else:
        text = quote(lit.value)
    return text + (f"::{lit.cast}" if lit.cast else "")


def to_sql(node) -> str:
    from filters.ast import And, Between, Compare, InList, IsBool, IsNull, Like, Not, Or
    if isinstance(node, And):
        return "(" + " AND ".join(to_sql(n) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(to_sql(n) for n in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {to_sql(node.item)})"
    col = '"' + node.column + '"'
    if isinstance(node, Compare):
        op = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
              "distinct": "IS DISTINCT FROM", "notdistinct": "IS NOT DISTINCT FROM"}[node.op]
        return f"({col} {op} {_sql_literal(node.value)})"
    if isinstance(node, InList):
        if not node.values:
            return "(false)" if not node.negated else "(true)"
        vals = ", ".join(_sql_literal(v) for v in node.values)
        return f"({col} {'NOT ' if node.negated else ''}IN ({vals}))"
    if isinstance(node, Between):
        return f"({col} {'NOT ' if node.negated else ''}BETWEEN {_sql_literal(node.low)} AND {_sql_literal(node.high)})"
    if isinstance(node, IsNull):
        return f"({col} IS {'NOT ' if node.negated else ''}NULL)"
    if isinstance(node, IsBool):
        word = {True: "TRUE", False: "FALSE", None: "UNKNOWN"}[node.value]
        return f"({col} IS {'NOT ' if node.negated else ''}{word})"
    if isinstance(node, Like):
        op = ("NOT " if node.negated else "") + ("ILIKE" if node.case_insensitive else "LIKE")
        esc = "" if node.escape == "\\" else f" ESCAPE {quote(node.escape or '')}"
        return f"({col} {op} {_sql_literal(node.pattern)}{esc})"
    raise AssertionError(node)


@st.composite
def object_condition(draw, col: str):
    pool = POOLS[col] + EXTRA_LITERALS.get(col, [])
    scalar = st.sampled_from(pool)
    if col in ("i", "b"):
        scalar = st.one_of(scalar, st.integers(-3, 200))
    if col == "n":
        scalar = st.one_of(scalar, st.sampled_from([0.1, 1.5, 99.95, -2.25, 100]))
    if col == "bo":
        scalar = st.one_of(scalar, st.booleans())
    ops = ["eq", "neq", "in", "nin", "is", "isnot", "distinct", "notdistinct"]
    if col in ORDERED:
        ops += ["lt", "lte", "gt", "gte", "between", "nbetween"]
    if col in TEXTUAL:
        ops += ["like", "ilike", "nlike", "nilike"]
    op = draw(st.sampled_from(ops + ["plain", "plain_null", "plain_list"]))
    if op == "plain":
        return draw(scalar)
    if op == "plain_null":
        return None
    if op == "plain_list":
        return draw(st.lists(scalar, min_size=1, max_size=3))
    if op in ("in", "nin"):
        return {op: draw(st.lists(st.one_of(scalar, st.none()), min_size=0, max_size=3))}
    if op in ("is", "isnot"):
        return {op: draw(st.sampled_from([None, True, False] if col == "bo" else [None]))}
    if op in ("between", "nbetween"):
        return {op: [draw(scalar), draw(scalar)]}
    if "like" in op:
        return {op: draw(st.sampled_from(LIKE_PATTERNS))}
    if op in ("distinct", "notdistinct"):
        return {op: draw(st.one_of(scalar, st.none()))}
    return {op: draw(scalar)}


def object_filter(depth: int = 2):
    leaf_ = st.sampled_from(sorted(COLUMNS)).flatmap(lambda c: object_condition(c).map(lambda v: {c: v}))
    if depth == 0:
        return leaf_
    sub = object_filter(depth - 1)
    return st.one_of(
        leaf_,
        st.lists(leaf_, min_size=2, max_size=3).map(lambda xs: {k: v for x in xs for k, v in x.items()}),
        st.lists(sub, min_size=1, max_size=3).map(lambda xs: {"$or": xs}),
        st.lists(sub, min_size=1, max_size=3).map(lambda xs: {"$and": xs}),
        sub.map(lambda x: {"$not": x}),
    )


POSTGREST_OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "in", "is", "isdistinct", "like", "ilike"]


@st.composite
def postgrest_condition(draw, in_logic: bool = False) -> str:
    col = draw(st.sampled_from(sorted(COLUMNS)))
    ops = ["eq", "neq", "in", "is", "isdistinct"]
    if col in ORDERED:
        ops += ["gt", "gte", "lt", "lte"]
    if col in TEXTUAL:
        ops += ["like", "ilike"]
    op = draw(st.sampled_from(ops))
    pool = POOLS[col] + EXTRA_LITERALS.get(col, [])
    from urllib.parse import quote as pct
    if op == "in":
        items = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=3))
        value = "(" + ",".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in items) + ")"
    elif op == "is":
        value = draw(st.sampled_from(["null", "not_null"] + (["true", "false", "unknown"] if col == "bo" else [])))
    elif "like" in op:
        value = draw(st.sampled_from([p for p in LIKE_PATTERNS if "*" not in p])).replace("%", "*")
    else:
        value = draw(st.sampled_from(pool))
    negate = "not." if draw(st.integers(0, 4)) == 0 else ""
    if in_logic and op not in ("in", "is"):  # inside or(...): quote the value (it may hold , or ( ))
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    encoded = pct(value, safe='(),"*\\')
    return f"{col}{'.' if in_logic else '='}{negate}{op}.{encoded}"


postgrest_filter = st.one_of(
    st.lists(postgrest_condition(), min_size=1, max_size=3).map("&".join),
    st.lists(postgrest_condition(in_logic=True), min_size=2, max_size=3).map(lambda xs: "or=(" + ",".join(xs) + ")"),
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row_values, min_size=1, max_size=5), spec=st.one_of(object_filter(), postgrest_filter))
def test_object_and_postgrest_filters_agree_with_postgres(diff_db, rows, spec):
    from filters import parse_filter
    conn, schema = diff_db
    try:
        node = parse_filter(spec)
    except FilterError as e:
        pytest.fail(f"generated filter {spec!r} did not parse: {e}")
    where = to_sql(node)
    _assert_agrees_with_postgres(conn, schema, rows, spec, where)


# ------------------------------------------------------------------ the index on real change events

def _stream(dsn: str, *statements: str) -> list:
    """Run statements, then decode what pgoutput sent for them with the project's decoder."""
    from cdc.decoding import make_decoder
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # the SQL interface decodes flushed WAL only
        for s in statements:
            conn.execute(s)
        rows = conn.execute(
            "SELECT lsn - '0/0'::pg_lsn, data FROM pg_logical_slot_get_binary_changes("
            "'filters_slot', NULL, NULL, 'proto_version', '1', 'publication_names', 'filters_pub')").fetchall()
    decoder = make_decoder("pgoutput")
    events = []
    for lsn, data in rows:
        for txn in decoder.feed(bytes(data), int(lsn)):
            events.extend(e for e in txn.events if type(e).__name__ == "ChangeEvent")
    return events


def test_index_semantics_on_real_change_events(pg_dsn):
    """Transitions, DELETE under the default identity and unchanged TOAST, on what the stream sends."""
    from cdc.events import ColumnInfo as CI
    from filters import Match, SubscriptionIndex
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text, note text)")
        conn.execute("ALTER TABLE orders ALTER COLUMN note SET STORAGE EXTERNAL")  # force TOAST
        conn.execute("CREATE PUBLICATION filters_pub FOR TABLE orders")
        conn.execute("SELECT pg_create_logical_replication_slot('filters_slot', 'pgoutput')")
    big = "x" * 10_000
    schema = TableSchema("public", "orders", (CI("id", 23, "int4", is_key=True), CI("status", 25, "text"),
                                              CI("note", 25, "text")))

    def index():
        idx = SubscriptionIndex(schema)
        idx.add("pending", compile_filter("status = 'pending'", schema))
        idx.add("id1", compile_filter({"id": 1}, schema))
        idx.add("note", compile_filter({"note": {"like": "x%"}}, schema))
        return idx

    # default replica identity: the old row is not sent
    ins, upd, upd_toast, dele = _stream(
        pg_dsn,
        f"INSERT INTO orders VALUES (1, 'pending', '{big}')",
        "UPDATE orders SET status = 'paid' WHERE id = 1",
        "UPDATE orders SET status = 'pending' WHERE id = 1",
        "DELETE FROM orders WHERE id = 1")
    idx = index()
    assert sorted(idx.match(ins)) == sorted([Match("pending", None), Match("id1", None), Match("note", None)])
    assert "note" in upd.unchanged_toast and "note" not in upd.record  # the stream's TOAST shape
    assert sorted(idx.match(upd)) == sorted([Match("id1", "stay"), Match("note", "unknown")])  # no leave
    assert sorted(idx.match(upd_toast)) == sorted([Match("pending", None), Match("id1", "stay"),
                                                   Match("note", "unknown")])
    assert dele.old_record == {"id": 1}
    assert sorted(idx.match(dele)) == sorted([Match("pending", "unknown"), Match("id1", None),
                                              Match("note", "unknown")])

    # REPLICA IDENTITY FULL: transitions, TOAST from the old row, decided DELETEs
    full = TableSchema("public", "orders", schema.columns, replica_identity="full")
    upd, back, dele = _stream_tail(pg_dsn, big)
    idx = index()
    idx.update_schema(full)
    assert upd.old_record_complete
    assert sorted(idx.match(upd)) == sorted([Match("pending", "leave"), Match("note", "stay")])
    assert sorted(idx.match(back)) == sorted([Match("pending", "enter"), Match("note", "stay")])
    assert sorted(idx.match(dele)) == sorted([Match("pending", None), Match("note", None)])


def _stream_tail(dsn: str, big: str) -> list:
    events = _stream(
        dsn,
        "ALTER TABLE orders REPLICA IDENTITY FULL",
        f"INSERT INTO orders VALUES (2, 'pending', '{big}')",
        "UPDATE orders SET status = 'paid' WHERE id = 2",
        "UPDATE orders SET status = 'pending' WHERE id = 2",
        "DELETE FROM orders WHERE id = 2")
    assert [e.type for e in events] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    return events[1:]
