"""``PresenceStore`` in process memory, with the same TTL expiry as a shared store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


class MemoryPresence:
    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        # channel -> conn_key -> (user, expires_at); dicts keep insertion (track) order.
        # Expired entries stay until ``expire`` hands them out (for their leave diff).
        self._entries: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}

    async def track(self, channel: str, conn_key: str, user: dict[str, Any]) -> bool:
        entries = self._entries.setdefault(channel, {})
        held = entries.get(conn_key)
        is_new = held is None or held[1] <= self._clock()
        entries[conn_key] = (user, self._clock() + self._ttl)
        return is_new

    async def untrack(self, channel: str, conn_key: str) -> dict[str, Any] | None:
        entries = self._entries.get(channel)
        held = entries.get(conn_key) if entries else None
        if held is None or held[1] <= self._clock():   # absent, or expired: expire() reports it
            return None
        del entries[conn_key]  # type: ignore[union-attr]
        if not entries:
            del self._entries[channel]
        return held[0]

    async def list(self, channel: str) -> list[dict[str, Any]]:
        now = self._clock()
        return [user for user, exp in self._entries.get(channel, {}).values() if exp > now]

    async def count(self, channel: str) -> int:
        now = self._clock()
        return sum(1 for _, exp in self._entries.get(channel, {}).values() if exp > now)

    async def refresh(self, entries: Iterable[tuple[str, str]]) -> None:
        now = self._clock()
        expires = now + self._ttl
        for channel, conn_key in entries:
            held = self._entries.get(channel, {}).get(conn_key)
            if held is not None and held[1] > now:  # an expired entry stays expired
                self._entries[channel][conn_key] = (held[0], expires)

    async def expire(self, channel: str) -> list[dict[str, Any]]:
        entries = self._entries.get(channel)
        if not entries:
            return []
        now = self._clock()
        gone = [k for k, (_, exp) in entries.items() if exp <= now]
        users = [entries.pop(k)[0] for k in gone]
        if not entries:
            del self._entries[channel]
        return users
