"""Plan and channel limits: the interface, and the pure window and quota arithmetic behind it.

Pure module: no asyncio, psycopg, aiohttp or redis. ``limits_memory.MemoryLimits`` is the
single-node implementation; a Redis one (several nodes) implements the same ``Limits`` protocol.

What is limited (errors from gateway.errors, all HTTP 429):
- simultaneous connections per key owner: the plan's ``max_connections``
  -> ``connection_limit_exceeded`` (details: limit, plan);
- simultaneous members of one channel: the channel's ``maxConnections``
  -> ``connection_limit_exceeded`` (details: limit, channel);
- messages in any window of W seconds on a channel: the channel's ``rateLimit``
  -> ``rate_limit_exceeded`` (details: retryAfter seconds, limit, windowSeconds);
- messages per UTC calendar month per key owner: the plan's ``messages_per_month``
  -> ``message_quota_exceeded`` (details: limit, plan, resetsAt).
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from gateway.errors import NuvemError

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.channels import RateLimit


class Lease:
    """A held slot (a connection, a channel membership). ``release()`` frees it; idempotent."""

    __slots__ = ("_on_release",)

    def __init__(self, on_release: Callable[[], Awaitable[None] | None] | None = None) -> None:
        self._on_release = on_release

    async def release(self) -> None:
        callback, self._on_release = self._on_release, None
        if callback is not None:
            result = callback()
            if inspect.isawaitable(result):
                await result

    @property
    def released(self) -> bool:
        return self._on_release is None


class Limits(Protocol):
    """Counters behind the plan and channel limits; one instance per gateway process.

    Every method is safe to call concurrently. Implementations shared by several nodes (Redis)
    count across all of them; the memory one counts within its process only (but persists the
    monthly message counts in Postgres, so quotas survive restarts).
    """

    async def acquire_connection(self, principal: "Principal") -> Lease:
        """Hold one of the owner's simultaneous connections, or raise connection_limit_exceeded."""
        ...

    async def acquire_channel_member(self, channel: str, max_connections: int | None) -> Lease:
        """Hold one membership of ``channel`` (None = no cap), or raise connection_limit_exceeded."""
        ...

    async def admit_message(self, principal: "Principal | None", channel: str,
                            rate_limit: "RateLimit | None") -> None:
        """Admit one message or raise rate_limit_exceeded / message_quota_exceeded.

        The message counts (in the window and in the monthly quota) only when admitted.
        ``principal=None`` is a trusted internal publisher: the rate limit applies, no quota.
        """
        ...

    async def refund_message(self, principal: "Principal | None", channel: str) -> None:
        """Undo one ``admit_message`` whose message was then not accepted (e.g. storing it failed),
        so that it counts neither in the channel's window nor in the monthly quota."""
        ...


class SlidingLog:
    """At most ``limit`` events in ANY window of ``window_seconds``: a log of admitted times.

    An event at time t is admitted when fewer than ``limit`` admitted events lie in
    (t - window, t]. When refused, ``retry_after`` is the time until the oldest of them leaves
    the window. Times come from the caller (a monotonic clock), so tests inject them.
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def retry_after(self, now: float, limit: int, window_seconds: float) -> float:
        """0.0 if an event may be admitted now, else the seconds to wait. Does not record."""
        times = self._times
        while times and times[0] <= now - window_seconds:
            times.popleft()
        if len(times) < limit:
            return 0.0
        # the (len - limit + 1) oldest must leave; after a lowered limit that is not just one
        return max(0.0, times[len(times) - limit] + window_seconds - now)

    def record(self, now: float) -> None:
        self._times.append(now)

    def forget_latest(self) -> None:
        """Drop the latest recorded event (a refund); nothing if the log is empty."""
        if self._times:
            self._times.pop()

    def __len__(self) -> int:
        return len(self._times)


def check_rate(log: SlidingLog, now: float, rate_limit: "RateLimit", channel: str) -> None:
    """Raise rate_limit_exceeded (with retryAfter) if ``log`` is full at ``now``. Does not record."""
    wait = log.retry_after(now, rate_limit.messages, rate_limit.window_seconds)
    if wait > 0:
        wait = math.ceil(wait * 1000) / 1000  # whole milliseconds, never less than the real wait
        raise NuvemError("rate_limit_exceeded",
                         f"channel {channel!r} allows {rate_limit.messages} messages in any"
                         f" {rate_limit.window_seconds:g} s window; retry in {wait:.3f} s",
                         retryAfter=wait, limit=rate_limit.messages,
                         windowSeconds=rate_limit.window_seconds, channel=channel)


def month_start(now: datetime) -> date:
    """The first day of ``now``'s UTC month: the key of the monthly message counter."""
    return date(now.year, now.month, 1)


def next_month_start(month: date) -> date:
    return date(month.year + 1, 1, 1) if month.month == 12 else date(month.year, month.month + 1, 1)


def check_quota(used: int, principal: "Principal", month: date) -> None:
    """Raise message_quota_exceeded if ``used`` messages already reach the plan's monthly quota."""
    quota = principal.plan.messages_per_month
    if quota is not None and used >= quota:
        raise NuvemError("message_quota_exceeded",
                         f"the {principal.plan.name} plan's {quota:,} messages this month are used up;"
                         " upgrade the plan or wait for the next month",
                         limit=quota, plan=principal.plan.name, resetsAt=next_month_start(month).isoformat())


def connection_limit_error(limit: int, *, plan: str | None = None, channel: str | None = None) -> NuvemError:
    if channel is not None:
        return NuvemError("connection_limit_exceeded",
                          f"channel {channel!r} already has its maximum of {limit} connections",
                          limit=limit, channel=channel)
    return NuvemError("connection_limit_exceeded",
                      f"the {plan} plan allows {limit:,} simultaneous connections and all are in use;"
                      " upgrade the plan", limit=limit, plan=plan)
