"""``nuvem-realtime tail`` as a user runs it: a real process, real Postgres, JSON lines on stdout."""

import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.integration._cdc_helpers import slot_state, sql

PLUGINS = ["pgoutput", "wal2json"]


def _start(dsn: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "tail", "--database-url", dsn,
                             "--status-interval", "0.2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_streaming(dsn: str, slot: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = slot_state(dsn, slot)
        if state is not None and state[1]:
            return
        if proc.poll() is not None:
            raise AssertionError(f"tail exited early ({proc.returncode}): {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("tail did not start streaming")
        time.sleep(0.05)


def _finish(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[int, list[dict], str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


def _publications(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT pubname FROM pg_publication")]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_limit_and_temporary_print_wal2json_and_leave_nothing(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, status text)", "CREATE TABLE other (id int)")
    proc = _start(pg_dsn, "--temporary", "--limit", "3", "--slot", "tail_tmp", "--format", "wal2json",
                  "--plugin", plugin, "--tables", "orders")
    _wait_streaming(pg_dsn, "tail_tmp", proc)
    sql(pg_dsn, "INSERT INTO other VALUES (1)",
        *[f"INSERT INTO orders VALUES ({i}, 'new')" for i in range(1, 6)])
    code, lines, err = _finish(proc)
    assert code == 0, err
    assert [x["action"] for x in lines] == ["B", "I", "C"] * 3
    rows = [x for x in lines if x["action"] == "I"]
    assert [x["table"] for x in rows] == ["orders"] * 3
    assert [{c["name"]: c["value"] for c in x["columns"]} for x in rows] == [
        {"id": i, "status": "new"} for i in (1, 2, 3)]
    assert slot_state(pg_dsn, "tail_tmp") is None  # temporary slot gone
    assert _publications(pg_dsn) == []  # the publication it created was dropped


@pytest.mark.parametrize("plugin", PLUGINS)
def test_events_format_and_persistent_slot_resume(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    slot = f"tail_keep_{plugin}"
    proc = _start(pg_dsn, "--limit", "2", "--slot", slot, "--plugin", plugin)
    _wait_streaming(pg_dsn, slot, proc)
    sql(pg_dsn, "INSERT INTO t VALUES (1, 'a')", "UPDATE t SET v = 'b' WHERE id = 1",
        "BEGIN", "INSERT INTO t VALUES (2, 'c')", "INSERT INTO t VALUES (3, 'd')", "COMMIT")
    code, lines, err = _finish(proc)
    assert code == 0, err
    changes = [x for x in lines if x["kind"] == "change"]
    assert [(c["type"], c["record"]) for c in changes] == [
        ("INSERT", {"id": 1, "v": "a"}), ("UPDATE", {"id": 1, "v": "b"})]
    assert all(c["schema"] == "public" and c["table"] == "t" and "/" in c["commit_lsn"] for c in changes)
    assert slot_state(pg_dsn, slot) is not None  # persistent: kept for the next run

    # the next run resumes after what was printed; a transaction cut by --limit comes back whole
    proc = _start(pg_dsn, "--limit", "1", "--slot", slot, "--plugin", plugin)
    code, lines, err = _finish(proc)
    assert code == 0, err
    assert [x["record"] for x in lines if x["kind"] == "change"] == [{"id": 2, "v": "c"}]
    proc = _start(pg_dsn, "--limit", "2", "--slot", slot, "--plugin", plugin)
    code, lines, err = _finish(proc)
    assert [x["record"]["id"] for x in lines if x["kind"] == "change"] == [2, 3]


def test_sigterm_stops_cleanly(pg_dsn):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    proc = _start(pg_dsn, "--temporary", "--slot", "tail_sig")
    _wait_streaming(pg_dsn, "tail_sig", proc)
    sql(pg_dsn, "INSERT INTO t VALUES (1)")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code, lines, err = _finish(proc)
    assert code == 0, err
    assert [x["record"] for x in lines if x["kind"] == "change"] == [{"id": 1}]
    assert slot_state(pg_dsn, "tail_sig") is None and _publications(pg_dsn) == []


def test_missing_table_is_a_clear_error(pg_dsn):
    proc = _start(pg_dsn, "--temporary", "--tables", "orders,nope", "--slot", "tail_err")
    code, lines, err = _finish(proc)
    assert code == 1 and lines == []
    assert "orders, nope" in err and "do not exist" in err and "hint:" in err and "--tables" in err
    assert slot_state(pg_dsn, "tail_err") is None and _publications(pg_dsn) == []


def test_no_database_url_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("NUVEM_DATABASE_URL", raising=False)
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "tail"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--database-url" in proc.stderr


@pytest.mark.parametrize("plugin", PLUGINS)
def test_wal2json_format_prints_the_primary_key_not_the_replica_identity(pg_dsn, plugin):
    # what the wal2json plugin prints as "pk": the table's primary key, whatever the identity
    sql(pg_dsn, "CREATE TABLE full_pk (id int PRIMARY KEY, v text)", "ALTER TABLE full_pk REPLICA IDENTITY FULL",
        "CREATE TABLE by_index (id int PRIMARY KEY, code text NOT NULL UNIQUE, v text)",
        "ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code_key",
        "CREATE TABLE full_nopk (a int, b text)", "ALTER TABLE full_nopk REPLICA IDENTITY FULL")
    proc = _start(pg_dsn, "--temporary", "--limit", "4", "--slot", "tail_pk", "--format", "wal2json",
                  "--plugin", plugin)
    _wait_streaming(pg_dsn, "tail_pk", proc)
    sql(pg_dsn, "INSERT INTO full_pk VALUES (1, 'a')", "INSERT INTO by_index VALUES (1, 'c1', 'a')",
        "INSERT INTO full_nopk VALUES (1, 'a')",
        "CREATE TABLE later (k text, n int, PRIMARY KEY (n, k))", "INSERT INTO later VALUES ('x', 1)")
    code, lines, err = _finish(proc)
    assert code == 0, err
    pk = {x["table"]: x["pk"] for x in lines if x["action"] == "I"}
    assert pk == {"full_pk": [{"name": "id", "type": "integer"}],
                  "by_index": [{"name": "id", "type": "integer"}],
                  "full_nopk": [],
                  "later": [{"name": "n", "type": "integer"}, {"name": "k", "type": "text"}]}
