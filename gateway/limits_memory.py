"""Single-node ``Limits``: counters in this process, monthly message counts persisted in Postgres.

Connections, channel memberships and rate-limit windows live in memory (one process = one
node). Monthly message counts are read from ``nuvem_realtime.usage_monthly`` the first time an
owner publishes in a month, then counted in memory and written back in batches (every
``flush_interval`` seconds, and on ``close()``), so the quota is exact at the threshold within
this node. With several nodes each adds its own increments and re-reads the total on every
flush, so they can overshoot by what they admit between two flushes; the Redis backend counts
in one place (INCR) to be exact across nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import structlog

from gateway.limits import (Lease, SlidingLog, check_quota, check_rate, connection_limit_error,
                            month_start)

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.channels import RateLimit

_log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Usage:
    stored: int        # total in Postgres at the last read or flush
    pending: int = 0   # admitted here since, not yet written
    flushing: int = 0  # being written by the flush in flight (not yet in ``stored``)

    @property
    def used(self) -> int:
        return self.stored + self.flushing + self.pending


class MemoryLimits:
    """Implements ``gateway.limits.Limits`` for one process.

    ``pool``: psycopg_pool.AsyncConnectionPool for the usage table (None: counts only in memory).
    ``clock``: monotonic seconds for rate windows; ``now``: UTC datetime for the month.
    """

    def __init__(self, pool: Any | None = None, *, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), flush_interval: float = 1.0) -> None:
        self._pool = pool
        self._clock = clock
        self._now = now
        self._flush_interval = flush_interval
        self._connections: dict[str, int] = {}
        self._members: dict[str, int] = {}
        self._windows: dict[str, SlidingLog] = {}
        self._usage: dict[tuple[str, date], _Usage] = {}
        self._loading: dict[tuple[str, date], asyncio.Future[_Usage]] = {}
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    # connections ---------------------------------------------------------------------------
    async def acquire_connection(self, principal: "Principal") -> Lease:
        owner, limit = principal.owner_id, principal.plan.max_connections
        if self._connections.get(owner, 0) >= limit:
            raise connection_limit_error(limit, plan=principal.plan.name)
        self._connections[owner] = self._connections.get(owner, 0) + 1
        return Lease(lambda: _decrement(self._connections, owner))

    async def acquire_channel_member(self, channel: str, max_connections: int | None) -> Lease:
        if max_connections is not None and self._members.get(channel, 0) >= max_connections:
            raise connection_limit_error(max_connections, channel=channel)
        self._members[channel] = self._members.get(channel, 0) + 1
        return Lease(lambda: _decrement(self._members, channel))

    def connections(self, owner_id: str) -> int:
        return self._connections.get(owner_id, 0)

    def channel_members(self, channel: str) -> int:
        return self._members.get(channel, 0)

    # messages ------------------------------------------------------------------------------
    async def admit_message(self, principal: "Principal | None", channel: str,
                            rate_limit: "RateLimit | None") -> None:
        month = month_start(self._now())
        usage = await self._usage_for(principal.owner_id, month) if principal is not None else None
        # from here on no await: the checks and the counting happen atomically
        now = self._clock()
        log = None
        if rate_limit is not None:
            log = self._windows.get(channel)
            if log is None:
                log = self._windows[channel] = SlidingLog()
            check_rate(log, now, rate_limit, channel)
        if usage is not None:
            check_quota(usage.used, principal, month)  # type: ignore[arg-type]
            usage.pending += 1
            self._schedule_flush()
        if log is not None:
            log.record(now)

    async def refund_message(self, principal: "Principal | None", channel: str) -> None:
        log = self._windows.get(channel)
        if log is not None:
            log.forget_latest()
        if principal is not None:
            usage = self._usage.get((principal.owner_id, month_start(self._now())))
            if usage is not None:
                usage.pending -= 1  # may go below 0 once flushed: the next flush subtracts it
                self._schedule_flush()

    async def usage(self, owner_id: str) -> int:
        """Messages counted for ``owner_id`` this month (stored plus not yet flushed)."""
        return (await self._usage_for(owner_id, month_start(self._now()))).used

    async def _usage_for(self, owner: str, month: date) -> _Usage:
        key = (owner, month)
        usage = self._usage.get(key)
        if usage is not None:
            return usage
        loading = self._loading.get(key)
        if loading is None:  # one read per owner and month, however many publish at once
            loading = self._loading[key] = asyncio.get_running_loop().create_future()
            try:
                stored = await self._read_usage(owner, month)
            except BaseException as e:
                del self._loading[key]
                loading.set_exception(e)
                loading.exception()  # retrieved: waiters get it, no "never retrieved" warning
                raise
            usage = self._usage[key] = _Usage(stored)
            del self._loading[key]
            loading.set_result(usage)
            return usage
        return await asyncio.shield(loading)

    async def _read_usage(self, owner: str, month: date) -> int:
        if self._pool is None:
            return 0
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT messages FROM nuvem_realtime.usage_monthly WHERE owner_id = %s AND month = %s",
                (owner, month))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # persistence ---------------------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if self._pool is not None and (self._flush_task is None or self._flush_task.done()):
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_interval)
        try:
            await self.flush()
        except Exception as e:  # kept pending; the next flush retries
            _log.warning("usage_flush_failed", error=repr(e))
            self._schedule_flush()

    async def flush(self) -> None:
        """Write pending message counts to Postgres and re-read the totals (other nodes' too)."""
        if self._pool is None:
            return
        async with self._flush_lock:
            current = month_start(self._now())
            batch = [(key, u, u.pending) for key, u in self._usage.items() if u.pending]
            for _key, u, n in batch:  # still counted by admit_message while the write is in flight
                u.pending -= n
                u.flushing = n
            totals: list[int] = []
            try:  # one transaction: all of the batch is written, or none of it
                async with self._pool.connection() as conn, conn.transaction():
                    for (owner, month), _u, n in batch:
                        cur = await conn.execute(
                            "INSERT INTO nuvem_realtime.usage_monthly AS u (owner_id, month, messages)"
                            " VALUES (%s, %s, %s) ON CONFLICT (owner_id, month) DO UPDATE"
                            " SET messages = u.messages + EXCLUDED.messages, updated_at = now()"
                            " RETURNING messages", (owner, month, n))
                        totals.append(int((await cur.fetchone())[0]))
            except BaseException:
                for _key, u, n in batch:
                    u.flushing = 0
                    u.pending += n
                raise
            for (_key, u, _n), total in zip(batch, totals):
                u.stored, u.flushing = total, 0
            for key in [k for k, u in self._usage.items() if k[1] != current and not u.pending]:
                del self._usage[key]

    async def close(self) -> None:
        """Stop the background flush and write what is pending."""
        task, self._flush_task = self._flush_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.flush()


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
