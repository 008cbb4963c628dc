"""``History`` on Postgres: offsets and messages written in batches off the hot path.

How a publish becomes durable (the ack rule): ``append`` queues the message and waits. One
writer task takes everything queued, and in ONE statement (so one transaction and one round
trip) bumps each channel's offset counter (``channel_offsets``, row-locked, so several nodes
never hand out the same offset), inserts the rows and applies count retention. Only after the commit does it call
``on_durable`` for each message in offset order and wake the callers. So an acked message is
committed, and subscribers only ever see committed messages.

Batching is natural: while one batch commits, new messages queue for the next (at most
``batch_max`` per transaction, after an optional ``flush_interval`` to gather more).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import structlog

from gateway.errors import NuvemError
from gateway.history import HistoryPage, OnDurable, Publication, Retention

_log = structlog.get_logger("gateway.history")
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

# One statement (one round trip, its own transaction in autocommit): bump each channel's counter
# (row-locked in channel order, so nodes never deadlock nor share an offset), number the rows in
# submission order, insert them, trim by count. A data-modifying CTE cannot see rows inserted by
# its own statement, so a batch larger than a channel's max_count leaves a few extra rows until
# the next batch; reads never return them (they filter by the same rule).
_WRITE_BATCH = """
WITH input AS (
    SELECT * FROM unnest(%(channels)s::text[], %(events)s::text[], %(payloads)s::jsonb[], %(publishers)s::text[])
        WITH ORDINALITY AS t(channel, event, payload, publisher, ord)
), counts AS (
    SELECT channel, count(*) AS n FROM input GROUP BY channel
), bumped AS (
    INSERT INTO nuvem_realtime.channel_offsets AS o (channel, latest)
    SELECT channel, n FROM counts ORDER BY channel
    ON CONFLICT (channel) DO UPDATE SET latest = o.latest + excluded.latest
    RETURNING channel, latest
), numbered AS (
    SELECT i.ord, i.channel, i.event, i.payload, i.publisher,
           b.latest - c.n + row_number() OVER (PARTITION BY i.channel ORDER BY i.ord) AS msg_offset
    FROM input i JOIN bumped b USING (channel) JOIN counts c USING (channel)
), inserted AS (
    INSERT INTO nuvem_realtime.history (channel, msg_offset, event, payload, publisher, published_at)
    SELECT channel, msg_offset, event, payload, publisher, %(now)s FROM numbered
), trimmed AS (
    DELETE FROM nuvem_realtime.history h
    USING bumped b, unnest(%(trim_channels)s::text[], %(trim_counts)s::bigint[]) AS r(channel, max_count)
    WHERE r.channel = b.channel AND h.channel = b.channel AND h.msg_offset <= b.latest - r.max_count
)
SELECT msg_offset FROM numbered ORDER BY ord
"""
_TRIM_AGE = "DELETE FROM nuvem_realtime.history WHERE channel = %s AND published_at < %s"
_COLUMNS = "msg_offset, event, payload::text, publisher, published_at"


class _Pending:
    __slots__ = ("channel", "event", "payload_json", "payload", "publisher", "retention", "future")

    def __init__(self, channel: str, event: str, payload: Any, publisher: str | None,
                 retention: Retention, future: asyncio.Future[Publication]) -> None:
        self.channel = channel
        self.event = event
        self.payload = payload
        self.payload_json = _enc.encode(payload).decode()
        self.publisher = publisher
        self.retention = retention
        self.future = future


class HistoryPostgres:
    def __init__(self, pool: Any, *, on_durable: OnDurable, batch_max: int = 500,
                 flush_interval: float = 0.0, sweep_interval: float = 10.0) -> None:
        self._pool = pool
        self._on_durable = on_durable
        self._batch_max = batch_max
        self._flush_interval = flush_interval
        self._sweep_interval = sweep_interval
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._age_rules: dict[str, float] = {}   # channel -> max age seen, for the sweeper

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_loop(), name="history-writer"),
                       asyncio.create_task(self._sweep_loop(), name="history-sweeper")]

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        for t in self._tasks[1:]:
            t.cancel()
        # the writer drains the queue before it returns
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def append(self, channel: str, event: str, payload: Any, *, publisher: str | None,
                     retention: Retention) -> Publication:
        return await self.submit(channel, event, payload, publisher=publisher, retention=retention)

    def submit(self, channel: str, event: str, payload: Any, *, publisher: str | None,
               retention: Retention) -> asyncio.Future[Publication]:
        fut: asyncio.Future[Publication] = asyncio.get_running_loop().create_future()
        if self._closing:
            fut.set_exception(NuvemError("unavailable", "the server is shutting down; message not stored",
                                         hint="reconnect and publish again"))
            return fut
        self._queue.append(_Pending(channel, event, payload, publisher, retention, fut))
        self._wakeup.set()
        return fut

    # ------------------------------------------------------------ writer

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._flush_interval and len(self._queue) < self._batch_max and not self._closing:
                await asyncio.sleep(self._flush_interval)
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max:]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        now = datetime.now(timezone.utc)
        rules: dict[str, Retention] = {}
        for p in batch:
            rules[p.channel] = p.retention   # the latest rule of each channel wins
        trim = [(c, r.max_count) for c, r in rules.items() if r.max_count is not None]
        for c, r in rules.items():
            if r.max_age_seconds is not None:
                self._age_rules[c] = r.max_age_seconds
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_WRITE_BATCH, {
                    "channels": [p.channel for p in batch], "events": [p.event for p in batch],
                    "payloads": [p.payload_json for p in batch], "publishers": [p.publisher for p in batch],
                    "now": now, "trim_channels": [c for c, _ in trim], "trim_counts": [n for _, n in trim]})
                offsets = [row[0] for row in await cur.fetchall()]
            if len(offsets) != len(batch):
                raise RuntimeError(f"history write returned {len(offsets)} offsets for {len(batch)} messages")
            pubs = [Publication(p.channel, off, p.event, p.payload, now, p.publisher)
                    for p, off in zip(batch, offsets)]
        except Exception as e:  # the database failed: nothing in this batch was stored
            _log.error("history batch failed", error=repr(e), messages=len(batch))
            err = NuvemError("unavailable", "the message store is unavailable; message not stored",
                             hint="retry with backoff")
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        for pub in pubs:
            try:
                await self._on_durable(pub)
            except Exception as e:  # stored but not fanned out live: resume with `since` recovers it
                _log.error("fan-out failed", channel=pub.channel, offset=pub.offset, error=repr(e))
        for p, pub in zip(batch, pubs):
            if not p.future.done():
                p.future.set_result(pub)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                async with self._pool.connection() as conn:
                    for channel, age in list(self._age_rules.items()):
                        cutoff = datetime.now(timezone.utc) - timedelta(seconds=age)
                        await conn.execute(_TRIM_AGE, (channel, cutoff))
            except Exception as e:
                _log.warning("history sweep failed", error=repr(e))

    # ------------------------------------------------------------ reads

    async def _floor(self, conn: Any, channel: str, retention: Retention) -> tuple[int, int, datetime | None]:
        """(latest offset, highest offset dropped by count, oldest timestamp kept by age)."""
        cur = await conn.execute(
            "SELECT latest FROM nuvem_realtime.channel_offsets WHERE channel = %s", (channel,))
        row = await cur.fetchone()
        latest = row[0] if row else 0
        floor = max(0, latest - retention.max_count) if retention.max_count is not None else 0
        cutoff = (datetime.now(timezone.utc) - timedelta(seconds=retention.max_age_seconds)
                  if retention.max_age_seconds is not None else None)
        return latest, floor, cutoff

    async def _earliest(self, conn: Any, channel: str, latest: int, floor: int, cutoff: datetime | None) -> int:
        cur = await conn.execute(
            "SELECT min(msg_offset) FROM nuvem_realtime.history WHERE channel = %s AND msg_offset > %s"
            " AND (%s::timestamptz IS NULL OR published_at >= %s)", (channel, floor, cutoff, cutoff))
        row = await cur.fetchone()
        return row[0] if row and row[0] is not None else latest + 1

    async def bounds(self, channel: str, *, retention: Retention) -> tuple[int, int]:
        async with self._pool.connection() as conn:
            latest, floor, cutoff = await self._floor(conn, channel, retention)
            return await self._earliest(conn, channel, latest, floor, cutoff), latest

    async def read(self, channel: str, *, limit: int = 50, before: int | None = None,
                   since: int | None = None, retention: Retention) -> HistoryPage:
        async with self._pool.connection() as conn:
            latest, floor, cutoff = await self._floor(conn, channel, retention)
            where = ("channel = %s AND msg_offset > %s AND (%s::timestamptz IS NULL OR published_at >= %s)")
            args: list[Any] = [channel, floor, cutoff, cutoff]
            if since is not None:
                where += " AND msg_offset > %s"
                args.append(since)
                order = "ASC"
            else:
                if before is not None:
                    where += " AND msg_offset < %s"
                    args.append(before)
                order = "DESC"
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM nuvem_realtime.history WHERE {where}"
                f" ORDER BY msg_offset {order} LIMIT %s", (*args, limit))
            rows = await cur.fetchall()
            if order == "DESC":
                rows.reverse()
            earliest = await self._earliest(conn, channel, latest, floor, cutoff)
        messages = [Publication(channel, off, event, _dec.decode(payload) if payload is not None else None,
                                at, publisher) for off, event, payload, publisher, at in rows]
        next_before = messages[0].offset if messages and messages[0].offset > earliest else None
        return HistoryPage(channel=channel, messages=messages, next_before=next_before,
                           latest_offset=latest, earliest_offset=earliest)
