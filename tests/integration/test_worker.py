"""The replication worker against a real Postgres: streaming, confirming, resuming; both plugins."""

import asyncio

import psycopg
import pytest

from cdc.worker import ReplicationWorker
from tests.integration._cdc_helpers import (CollectingSink, current_lsn, eventually, running,
                                            slot_state, sql)

PLUGINS = ["pgoutput", "wal2json"]


def _worker(dsn, sink, plugin, **kw):
    kw.setdefault("status_interval", 0.2)
    kw.setdefault("max_backoff", 0.5)
    return ReplicationWorker(dsn, sink, plugin=plugin, slot=kw.pop("slot", f"w_{plugin}"), **kw)


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_streams_insert_update_delete_truncate(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total numeric(10,2))",
        "CREATE TABLE items (id int PRIMARY KEY, order_id int)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, plugin)
    async with running(w):
        sql(pg_dsn,
            "INSERT INTO orders VALUES (1, 'pending', 10.50)",
            "BEGIN", "INSERT INTO orders VALUES (2, 'pending', 3.00)", "INSERT INTO items VALUES (7, 2)", "COMMIT",
            "BEGIN", "INSERT INTO orders VALUES (3, 'x', 1)", "ROLLBACK",
            "UPDATE orders SET status = 'paid' WHERE id = 1",
            "DELETE FROM orders WHERE id = 2",
            "TRUNCATE items")
        await sink.wait_for(lambda: len(sink.txns) >= 5)
        await asyncio.sleep(0.3)  # nothing more arrives (the rolled-back transaction)
        last_end = sink.txns[-1].end_lsn
        await eventually(lambda: slot_state(pg_dsn, w.slot)[0] >= last_end, what="slot confirmed")
    got = [[(e.type, e.table) for e in t.events if type(e).__name__ == "ChangeEvent"] for t in sink.txns]
    assert got == [
        [("INSERT", "orders")],
        [("INSERT", "orders"), ("INSERT", "items")],
        [("UPDATE", "orders")],
        [("DELETE", "orders")],
        [("TRUNCATE", "items")],
    ]
    ins, upd, dele = sink.events[0], sink.events[3], sink.events[4]
    assert ins.record == {"id": 1, "status": "pending", "total": pytest.approx(10.5)}
    assert str(ins.record["total"]) == "10.50"  # numeric stays exact
    assert upd.record["status"] == "paid" and upd.primary_key == {"id": 1}
    assert dele.primary_key == {"id": 2}
    assert all(t.commit_lsn and t.end_lsn >= t.commit_lsn and t.xid for t in sink.txns)
    assert [t.end_lsn for t in sink.txns] == sorted(t.end_lsn for t in sink.txns)
    assert w.confirmed_lsn >= last_end


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_worker_restarted_mid_stream_resumes_with_nothing_lost(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY)")
    first = CollectingSink()
    w1 = _worker(pg_dsn, first, plugin)
    task = asyncio.create_task(w1.run())
    await asyncio.wait_for(w1.started.wait(), 15)
    sql(pg_dsn, *[f"INSERT INTO orders VALUES ({i})" for i in range(1, 101)])
    await first.wait_for(lambda: len(first.ids("orders")) >= 30)
    task.cancel()  # a crash-like stop in the middle of the stream
    with pytest.raises(asyncio.CancelledError):
        await task
    sql(pg_dsn, *[f"INSERT INTO orders VALUES ({i})" for i in range(101, 151)])

    second = CollectingSink()
    w2 = _worker(pg_dsn, second, plugin)
    async with running(w2):
        await second.wait_for(lambda: 150 in second.ids("orders"))
    seen = first.ids("orders") + second.ids("orders")
    assert set(seen) == set(range(1, 151))  # nothing lost
    # at-least-once: what the second worker repeats is only the tail the first had not confirmed
    assert second.ids("orders") == sorted(second.ids("orders"))
    assert min(second.ids("orders")) > 1 or len(first.ids("orders")) < 100


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_stop_confirms_what_was_delivered(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, plugin, status_interval=30)  # only stop() confirms
    async with running(w):
        sql(pg_dsn, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
        await sink.wait_for(lambda: len(sink.txns) == 2)
    confirmed, active = slot_state(pg_dsn, w.slot)
    assert not active and confirmed >= sink.txns[-1].end_lsn == w.confirmed_lsn or confirmed >= sink.txns[-1].end_lsn
    again = CollectingSink()
    async with running(_worker(pg_dsn, again, plugin)):
        sql(pg_dsn, "INSERT INTO t VALUES (3)")
        await again.wait_for(lambda: 3 in again.ids("t"))
    assert again.ids("t") == [3]  # 1 and 2 were confirmed at stop: not repeated


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_sink_failure_holds_the_slot_and_redelivers(pg_dsn, plugin):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    failing = {2}
    sink = CollectingSink(fail=lambda txn: any((getattr(e, "record", None) or {}).get("id") in failing
                                               for e in txn.events))
    w = _worker(pg_dsn, sink, plugin, status_interval=0.1, max_backoff=0.2)
    async with running(w):
        sql(pg_dsn, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)")
        await sink.wait_for(lambda: sink.ids("t") == [1])
        await eventually(lambda: sink.failures >= 3, what="several failed deliveries")
        first_end = sink.txns[0].end_lsn
        lsn_after_inserts = current_lsn(pg_dsn)
        await asyncio.sleep(0.5)
        confirmed = slot_state(pg_dsn, w.slot)[0]
        assert first_end <= confirmed < lsn_after_inserts  # never past the undelivered transaction
        assert sink.ids("t") == [1]  # 3 is not delivered before 2
        failing.clear()  # downstream is back
        await sink.wait_for(lambda: 3 in sink.ids("t"))
        end3 = sink.txns[-1].end_lsn
        await eventually(lambda: slot_state(pg_dsn, w.slot)[0] >= end3, what="slot confirmed after recovery")
    assert sink.ids("t") == [1, 2, 3]
    assert w.reconnects >= 3


@pytest.mark.parametrize("plugin", PLUGINS)
async def test_unwatched_tables_and_idle_wal_advance_the_slot(pg_dsn, pg_server, plugin):
    sql(pg_dsn, "CREATE TABLE watched (id int PRIMARY KEY)", "CREATE TABLE noise (id int PRIMARY KEY)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, plugin, tables=["watched"], publication=f"only_watched_{plugin}")
    async with running(w):
        sql(pg_dsn, *[f"INSERT INTO noise VALUES ({i})" for i in range(200)])
        target = current_lsn(pg_dsn)
        await eventually(lambda: slot_state(pg_dsn, w.slot)[0] >= target, what="slot past unwatched traffic")
        # WAL written by another database (this one idle) also moves the slot
        sql(pg_server.dsn, "CREATE TABLE IF NOT EXISTS nuvem_idle_probe (v int)",
            "INSERT INTO nuvem_idle_probe VALUES (1)")
        target = current_lsn(pg_dsn)
        await eventually(lambda: slot_state(pg_dsn, w.slot)[0] >= target, what="slot past idle WAL")
        sql(pg_dsn, "INSERT INTO watched VALUES (1)")
        await sink.wait_for(lambda: sink.ids("watched") == [1])
    assert [e.table for e in sink.events] == ["watched"]


async def test_temporary_slot_disappears_with_the_worker(pg_dsn):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, "pgoutput", temporary=True, slot="tmp_slot")
    async with running(w):
        assert slot_state(pg_dsn, "tmp_slot") is not None
        sql(pg_dsn, "INSERT INTO t VALUES (1)")
        await sink.wait_for(lambda: sink.ids("t") == [1])
    assert slot_state(pg_dsn, "tmp_slot") is None


async def test_stop_during_backoff_returns_promptly(pg_dsn):
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    sink = CollectingSink(fail=lambda txn: True)  # downstream is down for good
    w = _worker(pg_dsn, sink, "pgoutput", max_backoff=30)
    async with running(w):
        sql(pg_dsn, "INSERT INTO t VALUES (1)")
        await eventually(lambda: sink.failures >= 4, what="failures")
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(w.stop(), 5)
        assert asyncio.get_running_loop().time() - t0 < 1.5
    assert sink.txns == [] and slot_state(pg_dsn, w.slot)[0] < current_lsn(pg_dsn)


async def test_pgoutput_v2_streams_a_large_transaction_in_progress(pg_dsn):
    """Protocol 2 with a tiny logical_decoding_work_mem: the server streams the open transaction in
    chunks; the worker still delivers it once, whole, at its commit, and an aborted one not at all."""
    db = pg_dsn.rsplit("/", 1)[1]
    sql(pg_dsn, f'ALTER DATABASE "{db}" SET logical_decoding_work_mem = \'64kB\'',
        "CREATE TABLE big (id int PRIMARY KEY, pad text)")
    sink = CollectingSink()
    w = _worker(pg_dsn, sink, "pgoutput", protocol_version=2)
    async with running(w):
        sql(pg_dsn, "BEGIN", "INSERT INTO big SELECT g, repeat('y', 100) FROM generate_series(5001, 7000) g",
            "ROLLBACK")
        sql(pg_dsn, "INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 3000) g")
        sql(pg_dsn, "INSERT INTO big VALUES (3001, 'after')")
        await sink.wait_for(lambda: 3001 in sink.ids("big"))

        def streamed() -> bool:  # it really was streamed in progress
            with psycopg.connect(pg_dsn) as conn:
                row = conn.execute("SELECT stream_txns FROM pg_stat_replication_slots"
                                   " WHERE slot_name = %s", (w.slot,)).fetchone()
            return row is not None and row[0] >= 1
        await eventually(streamed, what="stream_txns >= 1")
    assert sink.ids("big") == list(range(1, 3002))
    assert [len([e for e in t.events if type(e).__name__ == "ChangeEvent"]) for t in sink.txns] == [3000, 1]


async def test_garbage_collector_is_on_whenever_other_code_runs(pg_dsn):
    # the worker defers the cyclic GC while it decodes a read batch: it must be back on in
    # deliver (the sink's code), in other tasks, after a sink failure, and when the worker stops
    import gc

    sql(pg_dsn, "CREATE TABLE orders (id int PRIMARY KEY)")
    seen: list[bool] = []
    others: list[bool] = []

    class Sink(CollectingSink):
        async def deliver(self, txn) -> None:
            seen.append(gc.isenabled())
            if len(seen) == 2:
                raise RuntimeError("downstream unavailable (test)")  # redelivered after a reconnect
            await super().deliver(txn)

    async def watch() -> None:
        while True:
            others.append(gc.isenabled())
            await asyncio.sleep(0)

    sink = Sink()
    watcher = asyncio.create_task(watch())
    w = _worker(pg_dsn, sink, "pgoutput")
    async with running(w):
        sql(pg_dsn, *[f"INSERT INTO orders SELECT g FROM generate_series({i * 500 + 1}, {i * 500 + 500}) g"
                      for i in range(4)])
        await sink.wait_for(lambda: len(sink.events) >= 2000)
    watcher.cancel()
    assert sink.ids("orders") == list(range(1, 2001))
    assert len(seen) == 5 and all(seen) and others and all(others) and gc.isenabled()
