"""The Broker contract (gateway/broker.py), run against every implementation.

A later backend (Redis) adds itself to ``BACKENDS`` as a factory of connected brokers."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.broker_memory import MemoryBroker, MemoryBus
from gateway.history import Publication


def _memory_factory():
    bus = MemoryBus()
    return lambda: MemoryBroker(bus)


BACKENDS = {"memory": _memory_factory}


class Recorder:
    def __init__(self) -> None:
        self.pubs: list[Publication] = []
        self.presence: list[tuple[str, str, dict]] = []

    def on_publication(self, pub: Publication) -> None:
        self.pubs.append(pub)

    def on_presence(self, channel: str, event: str, user: dict) -> None:
        self.presence.append((channel, event, user))


def _pub(channel: str, offset: int) -> Publication:
    return Publication(channel, offset, "e", {"n": offset}, datetime.now(timezone.utc))


@pytest.fixture(params=list(BACKENDS))
async def nodes(request):
    make = BACKENDS[request.param]()
    started = []

    async def node():
        broker, handler = make(), Recorder()
        await broker.start(handler)
        started.append(broker)
        return broker, handler

    yield node
    for b in started:
        await b.close()


async def _settle(handlers, expected: int) -> None:
    """Wait until every handler got ``expected`` publications (asynchronous backends)."""
    for _ in range(200):
        if all(len(h.pubs) >= expected for h in handlers):
            return
        await asyncio.sleep(0.01)


async def test_every_subscribed_node_gets_each_publication_once_in_order(nodes):
    (a, ha), (b, hb), (c, hc) = await nodes(), await nodes(), await nodes()
    await a.subscribe("room")
    await b.subscribe("room")
    await b.subscribe("room")                        # idempotent: still once
    for off in range(1, 51):
        await c.publish(_pub("room", off))          # c publishes without subscribing
    await _settle([ha, hb], 50)
    for h in (ha, hb):
        assert [p.offset for p in h.pubs] == list(range(1, 51))
    assert hc.pubs == []


async def test_channels_are_independent_and_unsubscribe_stops_delivery(nodes):
    (a, ha), (b, _) = await nodes(), await nodes()
    await a.subscribe("x")
    await b.publish(_pub("y", 1))
    await b.publish(_pub("x", 1))
    await _settle([ha], 1)
    assert [(p.channel, p.offset) for p in ha.pubs] == [("x", 1)]
    await a.unsubscribe("x")
    await a.unsubscribe("x")                         # idempotent
    await b.publish(_pub("x", 2))
    await asyncio.sleep(0.05)
    assert [p.offset for p in ha.pubs] == [1]


async def test_presence_diffs_reach_subscribed_nodes(nodes):
    (a, ha), (b, hb) = await nodes(), await nodes()
    await a.subscribe("room")
    await b.publish_presence("room", "join", {"userId": "u1"})
    await b.publish_presence("other", "join", {"userId": "u2"})
    for _ in range(100):
        if ha.presence:
            break
        await asyncio.sleep(0.01)
    assert ha.presence == [("room", "join", {"userId": "u1"})]
    assert hb.presence == []


async def test_payload_round_trips_unchanged(nodes):
    (a, ha), (b, _) = await nodes(), await nodes()
    await a.subscribe("c")
    pub = Publication("c", 1, "ev", {"nested": [1, "two", None, {"x": 1.5}]}, datetime.now(timezone.utc), "usr_1")
    await b.publish(pub)
    await _settle([ha], 1)
    assert ha.pubs == [pub]
