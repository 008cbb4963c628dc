"""HistoryPostgres on the throwaway Postgres: offsets, durability before ack, paging, retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from gateway.history import Publication, Retention
from gateway.history_postgres import HistoryPostgres
from gateway.migrate import migrate

KEEP_ALL = Retention()


@pytest.fixture
async def pool(pg_dsn):
    await migrate(pg_dsn)
    async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=4, kwargs={"autocommit": True}) as p:
        yield p


@pytest.fixture
async def make_history(pool):
    made = []

    async def make(on_durable=None, **kwargs):
        seen: list[Publication] = []

        async def record(pub):
            seen.append(pub)

        h = HistoryPostgres(pool, on_durable=on_durable or record, **kwargs)
        h.seen = seen
        await h.start()
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


async def test_offsets_are_consecutive_per_channel_even_under_concurrency(make_history):
    h = await make_history()
    pubs = await asyncio.gather(*(h.append("a" if i % 2 else "b", "e", {"i": i}, publisher=None, retention=KEEP_ALL)
                                  for i in range(200)))
    for ch in ("a", "b"):
        assert sorted(p.offset for p in pubs if p.channel == ch) == list(range(1, 101))
    # on_durable saw them in offset order per channel
    for ch in ("a", "b"):
        assert [p.offset for p in h.seen if p.channel == ch] == list(range(1, 101))


async def test_two_nodes_never_hand_out_the_same_offset(make_history):
    h1, h2 = await make_history(), await make_history()
    pubs = await asyncio.gather(*(h.append("shared", "e", i, publisher=None, retention=KEEP_ALL)
                                  for i in range(50) for h in (h1, h2)))
    assert sorted(p.offset for p in pubs) == list(range(1, 101))


async def test_an_acked_message_is_committed_and_on_durable_ran_first(make_history, pg_dsn):
    order = []

    async def on_durable(pub):
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:   # another session sees it
            cur = await conn.execute("SELECT payload FROM nuvem_realtime.history WHERE channel = %s"
                                     " AND msg_offset = %s", (pub.channel, pub.offset))
            order.append(("durable", (await cur.fetchone())[0]))

    h = await make_history(on_durable=on_durable)
    pub = await h.append("c", "e", {"k": "v"}, publisher="usr_1", retention=KEEP_ALL)
    order.append(("acked", pub.offset))
    assert order == [("durable", {"k": "v"}), ("acked", 1)]
    assert pub.publisher == "usr_1" and pub.published_at.tzinfo is not None


async def test_paging_since_before_and_last(make_history):
    h = await make_history()
    for i in range(1, 11):
        await h.append("p", "e", i, publisher=None, retention=KEEP_ALL)
    last = await h.read("p", limit=3, retention=KEEP_ALL)
    assert [m.offset for m in last.messages] == [8, 9, 10]
    assert (last.latest_offset, last.earliest_offset, last.next_before) == (10, 1, 8)
    older = await h.read("p", limit=3, before=last.next_before, retention=KEEP_ALL)
    assert [m.offset for m in older.messages] == [5, 6, 7]
    first = await h.read("p", limit=10, before=3, retention=KEEP_ALL)
    assert [m.offset for m in first.messages] == [1, 2] and first.next_before is None
    since = await h.read("p", limit=4, since=5, retention=KEEP_ALL)
    assert [m.offset for m in since.messages] == [6, 7, 8, 9]
    assert [m.payload for m in since.messages] == [6, 7, 8, 9]
    empty = await h.read("never", limit=5, retention=KEEP_ALL)
    assert empty.messages == [] and (empty.latest_offset, empty.earliest_offset) == (0, 1)


async def test_retention_by_count_drops_the_oldest_and_moves_bounds(make_history, pool):
    h = await make_history()
    keep3 = Retention(max_count=3)
    for i in range(1, 8):
        await h.append("r", "e", i, publisher=None, retention=keep3)
    page = await h.read("r", limit=50, retention=keep3)
    assert [m.offset for m in page.messages] == [5, 6, 7]
    assert await h.bounds("r", retention=keep3) == (5, 7)
    async with pool.connection() as conn:            # physically deleted, in the same transaction
        cur = await conn.execute("SELECT count(*) FROM nuvem_realtime.history WHERE channel = 'r'")
        assert (await cur.fetchone())[0] == 3


async def test_a_batch_larger_than_the_count_limit_is_trimmed_on_read(make_history):
    h = await make_history()
    keep3 = Retention(max_count=3)
    # one batch of 10 (submitted in one turn): the statement's trim cannot see its own inserts
    stored = [h.submit("big", "e", i, publisher=None, retention=keep3) for i in range(10)]
    assert [p.offset for p in await asyncio.gather(*stored)] == list(range(1, 11))
    page = await h.read("big", limit=50, retention=keep3)
    assert [m.offset for m in page.messages] == [8, 9, 10]
    assert [m.offset for m in (await h.read("big", since=0, retention=keep3)).messages] == [8, 9, 10]
    assert await h.bounds("big", retention=keep3) == (8, 10)


async def test_retention_by_age_hides_old_messages_at_once_and_the_sweeper_deletes_them(make_history, pool):
    h = await make_history(sweep_interval=0.1)
    rule = Retention(max_age_seconds=60)
    for i in range(1, 4):
        await h.append("aged", "e", i, publisher=None, retention=rule)
    async with pool.connection() as conn:            # age the first two
        await conn.execute("UPDATE nuvem_realtime.history SET published_at = published_at - %s"
                           " WHERE channel = 'aged' AND msg_offset <= 2", (timedelta(hours=1),))
    page = await h.read("aged", limit=50, retention=rule)
    assert [m.offset for m in page.messages] == [3] and page.earliest_offset == 3
    assert await h.bounds("aged", retention=rule) == (3, 3)
    for _ in range(50):
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM nuvem_realtime.history WHERE channel = 'aged'")
            if (await cur.fetchone())[0] == 1:
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the sweeper did not delete the aged rows")


async def test_a_database_failure_fails_the_append_and_stores_nothing(make_history, pool):
    h = await make_history()
    async with pool.connection() as conn:
        await conn.execute("ALTER TABLE nuvem_realtime.history ADD CONSTRAINT no_bad CHECK (event <> 'bad')")
    from gateway.errors import NuvemError
    with pytest.raises(NuvemError) as e:
        await h.append("f", "bad", 1, publisher=None, retention=KEEP_ALL)
    assert e.value.code == "unavailable"
    ok = await h.append("f", "good", 2, publisher=None, retention=KEEP_ALL)
    assert ok.offset == 1                            # the failed message took no offset
    assert [p.event for p in h.seen] == ["good"]


async def test_close_flushes_what_was_accepted(make_history):
    h = await make_history()
    pending = [asyncio.create_task(h.append("z", "e", i, publisher=None, retention=KEEP_ALL)) for i in range(20)]
    await asyncio.sleep(0)
    await h.close()
    assert sorted(p.offset for p in await asyncio.gather(*pending)) == list(range(1, 21))
