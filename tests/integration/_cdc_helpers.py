"""Shared helpers of the CDC streaming tests: a collecting sink and slot inspection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import psycopg

from cdc.worker import ReplicationWorker


class CollectingSink:
    """Keeps every delivered transaction; ``fail`` (txn -> bool) makes ``deliver`` raise."""

    def __init__(self, fail: Callable[[object], bool] | None = None) -> None:
        self.txns: list = []
        self.failures = 0
        self.fail = fail
        self._changed = asyncio.Condition()

    async def deliver(self, txn) -> None:
        if self.fail is not None and self.fail(txn):
            self.failures += 1
            raise RuntimeError("downstream unavailable (test)")
        self.txns.append(txn)
        async with self._changed:
            self._changed.notify_all()

    @property
    def events(self) -> list:
        return [e for t in self.txns for e in t.events if type(e).__name__ == "ChangeEvent"]

    def ids(self, table: str) -> list[int]:
        return [(e.record or e.old_record)["id"] for e in self.events if e.table == table and e.type != "TRUNCATE"]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)


@contextlib.asynccontextmanager
async def running(worker: ReplicationWorker, timeout: float = 15.0) -> AsyncIterator[asyncio.Task]:
    """Run the worker in a task until it streams; stop it (cleanly) afterwards."""
    task = asyncio.create_task(worker.run())
    started = asyncio.create_task(worker.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()  # raises the worker's error
        raise AssertionError("worker returned before streaming")
    if not done:
        task.cancel()
        raise AssertionError("worker did not start streaming in time")
    try:
        yield task
    finally:
        if not task.done():
            await asyncio.wait_for(worker.stop(), 10)
        if task.done() and not task.cancelled():
            task.result()


def sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def slot_state(dsn: str, slot: str) -> tuple[int, bool] | None:
    """(confirmed_flush_lsn as int, active) of a slot, or None when it does not exist (yet: a slot
    being created shows with a NULL confirmed_flush_lsn until it reaches its consistent point)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT confirmed_flush_lsn - '0/0'::pg_lsn, active FROM pg_replication_slots"
                           " WHERE slot_name = %s", (slot,)).fetchone()
    return None if row is None or row[0] is None else (int(row[0]), row[1])


def current_lsn(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


async def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Wait for a condition on server state (test-side polling, not the worker's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
