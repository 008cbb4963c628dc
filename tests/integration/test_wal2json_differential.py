"""Differential test: our wal2json rendering (decoded from pgoutput) equals what the real wal2json
plugin prints for the same transactions, read with ``pg_recvlogical`` on a second slot.

Objects are compared parsed, numbers as ``Decimal`` (so 1.50 == 1.5 but 1.5 != 1.6); the values
of json/jsonb columns (strings holding JSON) are compared parsed too, since we re-serialize the
JSON value (Postgres keeps a json column's original whitespace). A json/jsonb ``null`` is not in
the workload: it becomes ``None`` in our events, indistinguishable from SQL NULL. Empty transactions (DDL only),
which pgoutput in Postgres 15 does not send, are dropped from the plugin's output. Every other
line must also be byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cdc.decoding import make_decoder, render_wal2json
from cdc.events import parse_lsn
from cdc.wal2json_render import DEFAULT_OPTIONS

pytestmark = pytest.mark.postgres

BIG = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i)"

SETUP = [
    "CREATE TYPE status AS ENUM ('new', 'paid', 'shipped')",
    """CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(40), status status, total numeric(12,2),
        ratio float8, small real, flags bool[], tags text[], meta jsonb, raw json, placed timestamptz,
        local_ts timestamp(3), due date, at_time time, at_tz timetz, wait interval, token uuid, blob bytea,
        code char(4), qty int2, n int4, big_n numeric, scores numeric[], notes text)""",
    "CREATE TABLE items (order_id bigint, line int, sku text, price numeric(8,3), PRIMARY KEY (order_id, line))",
    "CREATE TABLE audit (id int PRIMARY KEY, who text, body text)",
    "ALTER TABLE audit REPLICA IDENTITY FULL",
    "CREATE TABLE by_index (id int NOT NULL, k text NOT NULL, v int)",
    "CREATE UNIQUE INDEX by_index_k ON by_index (k)",
    "ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_k",
]

WORKLOAD = [
    [f"""INSERT INTO orders VALUES
        (1, 'Ana "A" O''Neil', 'new', 1234567890.50, 0.1, 1.5, '{{t,f,NULL}}', '{{"a b",NULL,"",x,"q\\"q","a;b","x,y",null}}',
         '{{"k": [1, 2.50, null], "b": {{"c": "ü"}}}}', '{{"z":  1,   "a": [true]}}', '2024-05-06 07:08:09.123456+02',
         '2024-01-01 00:00:00.5', '2024-02-29', '12:34:56.5', '12:00:00+05:30', '1 year 2 mons 3 days 04:05:06',
         'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x00ff10', 'ab', -32768, 2147483647,
         12345678901234567890.000000001, '{{1.5,NaN,-0.001}}', {BIG}),
        (2, NULL, 'paid', 0, 'NaN', '-Infinity', '{{}}', NULL, '"s"', '[]', 'infinity', '-infinity',
         'infinity', '24:00:00', NULL, '-1 days', NULL, '', NULL, 0, -1, 'NaN', NULL, 'short')""",
     "INSERT INTO items VALUES (1, 1, 'sku-1', 9.999), (1, 2, 'sku-2', 0.001), (2, 1, 'é', NULL)"],
    ["UPDATE orders SET status = 'shipped', ratio = 1e20, small = 3.4028235e38 WHERE id = 1"],  # TOAST notes unchanged
    ["UPDATE orders SET id = 3, notes = 'replaced' WHERE id = 2",
     "UPDATE items SET line = 3 WHERE order_id = 1 AND line = 2",
     "DELETE FROM items WHERE order_id = 2"],
    [f"INSERT INTO audit VALUES (1, 'me', {BIG}), (2, 'you', 'tiny')"],
    ["UPDATE audit SET who = 'them'", "DELETE FROM audit WHERE id = 2"],
    ["INSERT INTO by_index VALUES (1, 'k1', 10), (2, 'k2', 20)",
     "UPDATE by_index SET v = 11 WHERE k = 'k1'", "UPDATE by_index SET k = 'k3' WHERE k = 'k2'",
     "DELETE FROM by_index WHERE k = 'k1'"],
    ["ALTER TABLE items ADD COLUMN qty int DEFAULT 1", "INSERT INTO items VALUES (5, 1, 'new', 1.5, 7)"],
    ["TRUNCATE items, by_index"],
    ["INSERT INTO orders (id, ratio, small, due) VALUES (10, 1e-7, 1e15, '2000-01-01'), (11, 123456789012345678, -0.5, NULL)",
     "DELETE FROM orders WHERE id = 10"],
]


def _options() -> dict[str, str]:
    return DEFAULT_OPTIONS.plugin_options()


def _parse_line(line: bytes | str, json_columns: set[str]) -> Any:
    obj = json.loads(line, parse_float=Decimal, parse_int=Decimal)
    for section in ("columns", "identity"):
        for col in obj.get(section, ()):
            if col["name"] in json_columns and isinstance(col.get("value"), str):
                col["value"] = json.loads(col["value"], parse_float=Decimal, parse_int=Decimal)
    return obj


def _drop_empty_transactions(lines: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for line in lines:
        if b'"action":"C"' in line and out and b'"action":"B"' in out[-1]:
            out.pop()
            continue
        out.append(line)
    return out


def test_our_wal2json_rendering_equals_the_real_plugin(pg_dsn):
    recvlogical = shutil.which("pg_recvlogical")
    assert recvlogical, "pg_recvlogical is not on PATH (Debian: apt-get install postgresql-client-15)"
    suffix = uuid.uuid4().hex[:8]
    pub, po_slot, wj_slot = f"pub_{suffix}", f"po_{suffix}", f"wj_{suffix}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # SQL decoding reads flushed WAL only
        conn.execute(f"CREATE PUBLICATION {pub} FOR ALL TABLES")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (po_slot,))
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (wj_slot,))
        for stmt in SETUP:
            conn.execute(stmt)
        for txn in WORKLOAD:
            with conn.transaction():
                for stmt in txn:
                    conn.execute(stmt)
        endpos = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        pks: dict[str, list[str]] = {}
        for table, cols in conn.execute(
                "SELECT n.nspname || '.' || c.relname, array_agg(a.attname ORDER BY k.ord)"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)"
                " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
                " WHERE i.indisprimary GROUP BY 1").fetchall():
            pks[table] = list(cols)
        for table in ("orders", "items", "audit", "by_index"):
            pks.setdefault(f"public.{table}", [])  # no primary key: the plugin prints "pk":[]
        opts = [x for kv in {"proto_version": "1", "publication_names": pub}.items() for x in kv]
        rows = conn.execute(
            "SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, %s, %s, %s, %s)",
            [po_slot, *opts]).fetchall()

    cmd = [recvlogical, "-d", pg_dsn, "--slot", wj_slot, "--start", "--endpos", endpos,
           "--no-loop", "-f", "-"]
    for k, v in _options().items():
        cmd += ["-o", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    real = _drop_empty_transactions([ln for ln in proc.stdout.splitlines() if ln.strip()])

    dec = make_decoder("pgoutput")
    ours: list[bytes] = []
    for lsn, data in rows:
        for txn in dec.feed(bytes(data), parse_lsn(lsn)):
            ours.extend(render_wal2json(txn, primary_keys=pks, type_schemas=dec.type_schemas))

    json_columns = {"meta", "raw"}
    assert len(ours) == len(real), (len(ours), len(real))
    n_changes = sum(1 for ln in real if b'"action":"B"' not in ln and b'"action":"C"' not in ln)
    assert n_changes >= 25, "the workload should exercise many row changes"
    actions = {json.loads(ln)["action"] for ln in real}
    assert actions == {"B", "C", "I", "U", "D", "T"}
    for i, (a, b) in enumerate(zip(ours, real)):
        assert _parse_line(a, json_columns) == _parse_line(b, json_columns), (
            f"line {i} differs:\n ours: {a[:600]!r}\n real: {b[:600]!r}")
    # beyond JSON equality: every line without a json/jsonb value is byte-identical
    for a, b in zip(ours, real):
        if b'"name":"meta"' not in b and b'"name":"raw"' not in b:
            assert a == b, f"\n ours: {a[:600]!r}\n real: {b[:600]!r}"
