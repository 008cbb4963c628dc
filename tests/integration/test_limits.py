"""MemoryLimits' monthly message counts persisted in Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import psycopg
import pytest

from gateway.auth import Principal
from gateway.errors import NuvemError
from gateway.limits_memory import MemoryLimits
from gateway.plans import PLANS
from tests.integration.test_keys import pool  # noqa: F401  (fixture)

DEC = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _free(owner: str = "own_1") -> Principal:
    return Principal("key_1", owner, PLANS["free"], "secret", ("*",))


async def _stored(dsn: str, owner: str, month: date = date(2026, 12, 1)) -> int | None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (await conn.execute("SELECT messages FROM nuvem_realtime.usage_monthly"
                                        " WHERE owner_id = %s AND month = %s", (owner, month))).fetchone()
    return row[0] if row else None


async def test_counts_are_written_in_batches_and_survive_a_restart(pool, pg_dsn):  # noqa: F811
    limits = MemoryLimits(pool, now=lambda: DEC, flush_interval=0.05)
    for _ in range(7):
        await limits.admit_message(_free(), "chat:a", None)
    await asyncio.sleep(0.3)
    assert await _stored(pg_dsn, "own_1") == 7          # flushed in the background
    await limits.admit_message(_free(), "chat:a", None)
    await limits.close()
    assert await _stored(pg_dsn, "own_1") == 8          # close() writes what is pending
    again = MemoryLimits(pool, now=lambda: DEC)
    assert await again.usage("own_1") == 8               # a new process starts from the stored count
    await again.close()


async def test_free_quota_refuses_exactly_the_500001st_message(pool, pg_dsn):  # noqa: F811
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO nuvem_realtime.usage_monthly (owner_id, month, messages)"
                           " VALUES ('own_1', '2026-12-01', 499998)")
    limits = MemoryLimits(pool, now=lambda: DEC)
    # concurrent first publishes share one read of the stored count
    await asyncio.gather(*(limits.admit_message(_free(), "c", None) for _ in range(2)))
    with pytest.raises(NuvemError) as e:
        await limits.admit_message(_free(), "c", None)
    assert e.value.code == "message_quota_exceeded" and e.value.details["limit"] == 500_000
    await limits.close()
    assert await _stored(pg_dsn, "own_1") == 500_000     # the refused message is not counted
    scale = Principal("key_2", "own_1", PLANS["scale"], "secret", ("*",))
    await MemoryLimits(pool, now=lambda: DEC).admit_message(scale, "c", None)  # unlimited


async def test_flush_adds_to_what_other_nodes_wrote(pool, pg_dsn):  # noqa: F811
    a = MemoryLimits(pool, now=lambda: DEC)
    b = MemoryLimits(pool, now=lambda: DEC)
    await a.admit_message(_free(), "c", None)
    await b.admit_message(_free(), "c", None)
    await b.admit_message(_free(), "c", None)
    await a.flush()
    await b.flush()
    assert await _stored(pg_dsn, "own_1") == 3
    await a.flush()
    assert await b.usage("own_1") == 3                  # b re-read the total on its flush


async def test_month_rollover_starts_a_new_counter(pool, pg_dsn):  # noqa: F811
    now = DEC
    limits = MemoryLimits(pool, now=lambda: now)
    await limits.admit_message(_free(), "c", None)
    now = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    await limits.admit_message(_free(), "c", None)
    await limits.close()
    assert await _stored(pg_dsn, "own_1") == 1
    assert await _stored(pg_dsn, "own_1", date(2027, 1, 1)) == 1


async def test_messages_admitted_while_a_flush_is_in_flight_still_count_against_the_quota(pool, pg_dsn):  # noqa: F811
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO nuvem_realtime.usage_monthly (owner_id, month, messages)"
                           " VALUES ('own_1', '2026-12-01', 499998)")
    limits = MemoryLimits(pool, now=lambda: DEC, flush_interval=3600)
    await limits.admit_message(_free(), "c", None)                 # the 499,999th
    flushing = asyncio.ensure_future(limits.flush())
    await asyncio.sleep(0)                                        # the flush is now writing that one
    assert not flushing.done()
    await limits.admit_message(_free(), "c", None)                 # the 500,000th
    with pytest.raises(NuvemError) as e:                          # the 500,001st, during the same flush
        await limits.admit_message(_free(), "c", None)
    assert e.value.code == "message_quota_exceeded"
    await flushing
    assert await limits.usage("own_1") == 500_000
    await limits.close()
    assert await _stored(pg_dsn, "own_1") == 500_000


async def test_a_refund_after_a_flush_is_subtracted_by_the_next_flush(pool, pg_dsn):  # noqa: F811
    limits = MemoryLimits(pool, now=lambda: DEC, flush_interval=3600)
    for _ in range(3):
        await limits.admit_message(_free(), "c", None)
    await limits.flush()
    assert await _stored(pg_dsn, "own_1") == 3
    await limits.refund_message(_free(), "c")
    assert await limits.usage("own_1") == 2
    await limits.close()
    assert await _stored(pg_dsn, "own_1") == 2
