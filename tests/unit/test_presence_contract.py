"""The PresenceStore contract (gateway/presence.py), run against every implementation.

A later backend (Redis) adds itself to ``BACKENDS``: a factory taking (ttl, clock)."""

from __future__ import annotations

import pytest

from gateway.presence_memory import MemoryPresence

BACKENDS = {"memory": lambda ttl, clock: MemoryPresence(ttl=ttl, clock=clock)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=list(BACKENDS))
def store_and_clock(request):
    clock = Clock()
    return BACKENDS[request.param](10.0, clock), clock


async def test_track_list_untrack(store_and_clock):
    store, _ = store_and_clock
    assert await store.track("room", "n1:1", {"userId": "a"}) is True
    assert await store.track("room", "n1:2", {"userId": "b"}) is True
    assert await store.track("room", "n1:1", {"userId": "a", "status": "away"}) is False   # replace
    assert await store.list("room") == [{"userId": "a", "status": "away"}, {"userId": "b"}]
    assert await store.count("room") == 2
    assert await store.untrack("room", "n1:2") == {"userId": "b"}
    assert await store.untrack("room", "n1:2") is None
    assert await store.list("room") == [{"userId": "a", "status": "away"}]
    assert await store.list("elsewhere") == [] and await store.count("elsewhere") == 0


async def test_entries_expire_unless_refreshed_by_their_node(store_and_clock):
    store, clock = store_and_clock
    await store.track("room", "alive:1", {"userId": "a"})
    await store.track("room", "dead:1", {"userId": "b"})
    for _ in range(3):                               # the live node refreshes every 5 s
        clock.now += 5
        await store.refresh([("room", "alive:1")])
    assert await store.list("room") == [{"userId": "a"}]
    assert await store.count("room") == 1
    assert await store.untrack("room", "dead:1") is None


async def test_an_expired_entry_is_not_resurrected_by_refresh(store_and_clock):
    store, clock = store_and_clock
    await store.track("room", "n:1", {"userId": "a"})
    clock.now += 11
    await store.refresh([("room", "n:1")])
    assert await store.list("room") == []


async def test_expire_hands_out_each_expired_entry_once_for_its_leave(store_and_clock):
    store, clock = store_and_clock
    await store.track("room", "alive:1", {"userId": "a"})
    await store.track("room", "dead:1", {"userId": "b"})
    await store.track("room", "dead:2", {"userId": "c"})
    assert await store.expire("room") == []          # nothing expired yet
    clock.now += 8
    await store.refresh([("room", "alive:1")])
    clock.now += 3
    assert await store.untrack("room", "dead:2") is None   # expired: the reaper reports it, not untrack
    assert sorted(u["userId"] for u in await store.expire("room")) == ["b", "c"]
    assert await store.expire("room") == []          # once only
    assert await store.list("room") == [{"userId": "a"}] and await store.count("room") == 1
    assert await store.expire("nowhere") == []
