"""``Broker`` for one process: several nodes may share one ``MemoryBus`` (as in tests)."""

from __future__ import annotations

from typing import Any

from gateway.broker import BrokerHandler
from gateway.history import Publication


class MemoryBus:
    """The shared medium: channel -> handlers of the nodes subscribed to it."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[BrokerHandler]] = {}


class MemoryBroker:
    """Delivers synchronously inside ``publish``: ordering and once-only delivery follow."""

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus or MemoryBus()
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        for channel in list(self._channels):
            await self.unsubscribe(channel)
        self._handler = None

    async def subscribe(self, channel: str) -> None:
        if self._handler is None:
            raise RuntimeError("MemoryBroker.subscribe before start()")
        if channel not in self._channels:
            self._channels.add(channel)
            self._bus.subscribers.setdefault(channel, []).append(self._handler)

    async def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            handlers = self._bus.subscribers.get(channel, [])
            handlers.remove(self._handler)
            if not handlers:
                self._bus.subscribers.pop(channel, None)

    async def publish(self, pub: Publication) -> None:
        for handler in tuple(self._bus.subscribers.get(pub.channel, ())):
            handler.on_publication(pub)

    async def publish_presence(self, channel: str, event: str, user: dict[str, Any]) -> None:
        for handler in tuple(self._bus.subscribers.get(channel, ())):
            handler.on_presence(channel, event, user)
