"""Faults: Postgres restarts and dropped connections mid-stream; the worker loses nothing."""

import asyncio
import threading

import psycopg
import pytest

from cdc.worker import ReplicationWorker
from tests.integration._cdc_helpers import CollectingSink, eventually, running, slot_state, sql

PLUGINS = ["pgoutput", "wal2json"]


def _worker(dsn, sink, plugin, **kw):
    return ReplicationWorker(dsn, sink, plugin=plugin, slot=f"f_{plugin}", status_interval=0.2,
                             max_backoff=0.5, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_mid_stream_loses_nothing(pg_server, pg_dsn, plugin, mode):
    sql(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, plugin)
    async with running(w):
        # a backlog: one big transaction and many small ones, still streaming when the server goes
        sql(pg_dsn, "INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g",
            *[f"INSERT INTO orders VALUES ({i}, 'small')" for i in range(3001, 3201)])
        await sink.wait_for(lambda: len(sink.txns) >= 1)
        await asyncio.to_thread(pg_server.restart, mode)
        sql(pg_dsn, *[f"INSERT INTO orders VALUES ({i}, 'after')" for i in range(3201, 3301)])
        await sink.wait_for(lambda: 3300 in sink.ids("orders"), timeout=30)
        last_end = sink.txns[-1].end_lsn
        await eventually(lambda: slot_state(pg_dsn, w.slot)[0] >= last_end, what="slot confirmed")
    # the throwaway cluster runs with synchronous_commit=off: an immediate (crash) stop may drop the
    # last commits from the database itself. What must hold: every row that exists was delivered.
    with psycopg.connect(pg_dsn) as conn:
        in_db = {r[0] for r in conn.execute("SELECT id FROM orders")}
    assert set(range(1, 3001)) <= in_db and set(range(3201, 3301)) <= in_db
    ids = sink.ids("orders")
    assert set(ids) == in_db  # nothing lost; repeats allowed (at-least-once)
    assert w.reconnects >= 1
    # every transaction arrives whole: a repeated one is repeated entirely
    for t in sink.txns:
        rows = [e.record["id"] for e in t.events if type(e).__name__ == "ChangeEvent"]
        assert rows == list(range(rows[0], rows[0] + len(rows)))


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_connection_killed_mid_stream_reconnects(pg_server, pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, plugin)
    async with running(w):
        sql(pg_dsn, *[f"INSERT INTO t VALUES ({i})" for i in range(1, 51)])
        await sink.wait_for(lambda: 50 in sink.ids("t"))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # an admin ends the walsender
            conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                         " WHERE slot_name = %s", (w.slot,))
        sql(pg_dsn, *[f"INSERT INTO t VALUES ({i})" for i in range(51, 101)])
        await sink.wait_for(lambda: 100 in sink.ids("t"))
    assert set(sink.ids("t")) == set(range(1, 101))
    assert w.reconnects >= 1


@pytest.mark.slow
async def test_writes_during_restart_window_are_not_lost(pg_server, pg_dsn):
    """A writer keeps committing while the server restarts; every committed row arrives."""
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, "pgoutput")
    committed: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with psycopg.connect(pg_dsn, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("INSERT INTO t VALUES (%s)", (i,))
                committed.append(i)
            except psycopg.OperationalError:
                stop.wait(0.05)  # server down: this id was not committed, try the next one

    async with running(w):
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            await eventually(lambda: len(committed) >= 20, what="writes before restart")
            await asyncio.to_thread(pg_server.restart)
            n = len(committed)
            await eventually(lambda: len(committed) >= n + 20, what="writes after restart")
        finally:
            stop.set()
            await asyncio.to_thread(thread.join)
        with psycopg.connect(pg_dsn) as conn:
            in_db = {r[0] for r in conn.execute("SELECT id FROM t")}
        await sink.wait_for(lambda: in_db <= set(sink.ids("t")), timeout=30)
    assert len(in_db) >= 40 and in_db <= set(sink.ids("t"))


@pytest.mark.slow
async def test_keepalives_that_ask_for_a_reply_are_answered():
    """wal_sender_timeout=1s and a status interval of a minute: only answering the server's
    reply-requested keepalives keeps the connection alive."""
    from cdc.local_postgres import LocalPostgres

    with LocalPostgres(settings={"wal_sender_timeout": "1s"}) as pg:
        sql(pg.dsn, "CREATE TABLE t (id int PRIMARY KEY)")
        sink = CollectingSink()
        w = ReplicationWorker(pg.dsn, sink, slot="ka", status_interval=60, max_backoff=0.5)
        async with running(w):
            await asyncio.sleep(3.5)
            sql(pg.dsn, "INSERT INTO t VALUES (1)")
            await sink.wait_for(lambda: sink.ids("t") == [1])
            assert w.reconnects == 0
            with psycopg.connect(pg.dsn) as conn:
                pid = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'ka'").fetchone()[0]
            assert pid == w._last_pid  # still the first connection
