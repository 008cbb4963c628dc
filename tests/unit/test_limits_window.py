"""The pure limit arithmetic (sliding log, quota, months) and MemoryLimits with injected clocks."""

from __future__ import annotations

import ast
import pathlib
from datetime import UTC, date, datetime

import pytest

from gateway.auth import Principal
from gateway.channels import RateLimit
from gateway.errors import NuvemError
from gateway.limits import SlidingLog, check_quota, month_start, next_month_start
from gateway.limits_memory import MemoryLimits
from gateway.plans import PLANS


def _principal(plan: str = "free", owner: str = "own_1") -> Principal:
    return Principal("key_1", owner, PLANS[plan], "secret", ("*",))


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_limits_module_is_pure():
    tree = ast.parse(pathlib.Path("gateway/limits.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"asyncio", "psycopg", "aiohttp", "redis", "psycopg_pool"}


def test_sliding_log_admits_n_then_refuses_until_oldest_leaves():
    log = SlidingLog()
    for t in (0.0, 1.0, 2.0):
        assert log.retry_after(t, 3, 10.0) == 0.0
        log.record(t)
    assert log.retry_after(5.0, 3, 10.0) == pytest.approx(5.0)      # oldest (t=0) leaves at t=10
    assert log.retry_after(9.999, 3, 10.0) == pytest.approx(0.001)
    assert log.retry_after(10.0, 3, 10.0) == 0.0                     # (0, 10] holds t=1 and t=2 only


def test_sliding_log_is_any_window_not_fixed_buckets():
    # a fixed 10 s bucket would allow 3 at t=9.x and 3 more at t=10.x; any window forbids it
    log = SlidingLog()
    for t in (9.0, 9.5, 9.9):
        log.record(t)
    assert log.retry_after(10.1, 3, 10.0) == pytest.approx(8.9)
    assert log.retry_after(19.0, 3, 10.0) == 0.0


def test_sliding_log_after_a_lowered_limit_waits_for_enough_to_leave():
    log = SlidingLog()
    for t in (0.0, 1.0, 2.0, 3.0):
        log.record(t)
    # limit lowered from 4 to 2: t=0, 1 and 2 must all leave before a new one fits
    assert log.retry_after(4.0, 2, 10.0) == pytest.approx(8.0)


def test_quota_refuses_exactly_at_the_plan_number():
    p = _principal("free")
    check_quota(499_999, p, date(2026, 12, 1))
    with pytest.raises(NuvemError) as e:
        check_quota(500_000, p, date(2026, 12, 1))
    assert e.value.code == "message_quota_exceeded"
    assert e.value.details == {"limit": 500_000, "plan": "free", "resetsAt": "2027-01-01"}
    check_quota(10**12, _principal("scale"), date(2026, 12, 1))  # unlimited


def test_months():
    assert month_start(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert next_month_start(date(2026, 12, 1)) == date(2027, 1, 1)
    assert next_month_start(date(2026, 2, 1)) == date(2026, 3, 1)


async def test_rate_limit_nplus1_refused_with_retry_after_and_not_counted():
    clock = FakeClock(100.0)
    limits = MemoryLimits(None, clock=clock)
    rate = RateLimit(messages=3, window_seconds=60)
    p = _principal()
    for i in range(3):
        clock.t = 100.0 + i
        await limits.admit_message(p, "chat:a", rate)
    clock.t = 110.0
    with pytest.raises(NuvemError) as e:
        await limits.admit_message(p, "chat:a", rate)
    assert e.value.code == "rate_limit_exceeded"
    assert e.value.details["retryAfter"] == pytest.approx(50.0)  # t=100 leaves the window at 160
    assert await limits.usage("own_1") == 3                      # the refused one is not counted
    await limits.admit_message(p, "chat:b", rate)                 # per channel
    clock.t = 160.0
    await limits.admit_message(p, "chat:a", rate)
    assert await limits.usage("own_1") == 5


async def test_quota_counted_per_owner_and_month():
    wall = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    limits = MemoryLimits(None, now=lambda: wall)
    small = Principal("key_1", "own_x", PLANS["free"].__class__("tiny", 10, 2), "secret", ("*",))
    other_key_same_owner = Principal("key_2", "own_x", small.plan, "publishable", ("*",))
    await limits.admit_message(small, "c", None)
    await limits.admit_message(other_key_same_owner, "c", None)
    with pytest.raises(NuvemError) as e:
        await limits.admit_message(small, "c", None)
    assert e.value.code == "message_quota_exceeded"
    await limits.admit_message(None, "c", None)  # trusted internal publisher: no quota
    wall = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    await limits.admit_message(small, "c", None)  # a new month


async def test_connection_limit_per_owner_is_exact_and_leases_free_slots():
    limits = MemoryLimits(None)
    p = _principal("free")
    leases = [await limits.acquire_connection(p) for _ in range(100)]
    with pytest.raises(NuvemError) as e:
        await limits.acquire_connection(p)
    assert e.value.code == "connection_limit_exceeded" and e.value.details["limit"] == 100
    await limits.acquire_connection(_principal("free", owner="someone_else"))
    await leases[0].release()
    await leases[0].release()  # idempotent: frees one slot, not two
    await limits.acquire_connection(p)
    with pytest.raises(NuvemError):
        await limits.acquire_connection(p)


async def test_channel_member_cap():
    limits = MemoryLimits(None)
    a = await limits.acquire_channel_member("room", 2)
    await limits.acquire_channel_member("room", 2)
    with pytest.raises(NuvemError) as e:
        await limits.acquire_channel_member("room", 2)
    assert e.value.code == "connection_limit_exceeded" and e.value.details["channel"] == "room"
    await limits.acquire_channel_member("room", None)  # no cap still counts
    assert limits.channel_members("room") == 3
    await a.release()
    assert limits.channel_members("room") == 2


def test_retry_after_is_never_rounded_below_the_real_wait():
    from gateway.limits import check_rate
    log = SlidingLog()
    log.record(0.0)
    with pytest.raises(NuvemError) as e:
        check_rate(log, 9.9996, RateLimit(1, 10.0), "c")   # 0.4 ms left
    retry = e.value.details["retryAfter"]
    assert retry >= 0.0004 and retry == 0.001
    assert log.retry_after(9.9996 + retry, 1, 10.0) == 0.0  # waiting retryAfter is enough


async def test_a_refunded_message_counts_neither_in_the_window_nor_the_quota():
    clock = FakeClock(100.0)
    limits = MemoryLimits(None, clock=clock)
    rate = RateLimit(messages=2, window_seconds=60)
    p = _principal()
    await limits.admit_message(p, "chat:a", rate)
    await limits.admit_message(p, "chat:a", rate)
    await limits.refund_message(p, "chat:a")       # e.g. storing the second one failed
    assert await limits.usage("own_1") == 1
    await limits.admit_message(p, "chat:a", rate)   # its slot in the window is free again
    with pytest.raises(NuvemError):
        await limits.admit_message(p, "chat:a", rate)
    await limits.refund_message(None, "chat:b")     # nothing admitted there: a no-op
    assert await limits.usage("own_1") == 2
