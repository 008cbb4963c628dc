"""``PresenceStore`` in process memory, with the same TTL expiry as a shared store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


class MemoryPresence:
    def __init__(self, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        # channel -> conn_key -> (user, expires_at); dicts keep insertion (track) order
        self._entries: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}

    async def track(self, channel: str, conn_key: str, user: dict[str, Any]) -> bool:
        entries = self._entries.setdefault(channel, {})
        self._expire(channel)
        is_new = conn_key not in entries
        entries[conn_key] = (user, self._clock() + self._ttl)
        return is_new

    async def untrack(self, channel: str, conn_key: str) -> dict[str, Any] | None:
        self._expire(channel)
        entries = self._entries.get(channel)
        if not entries or conn_key not in entries:
            return None
        user, _ = entries.pop(conn_key)
        if not entries:
            del self._entries[channel]
        return user

    async def list(self, channel: str) -> list[dict[str, Any]]:
        self._expire(channel)
        return [user for user, _ in self._entries.get(channel, {}).values()]

    async def count(self, channel: str) -> int:
        self._expire(channel)
        return len(self._entries.get(channel, {}))

    async def refresh(self, entries: Iterable[tuple[str, str]]) -> None:
        now = self._clock()
        expires = now + self._ttl
        for channel, conn_key in entries:
            held = self._entries.get(channel, {}).get(conn_key)
            if held is not None and held[1] > now:  # an expired entry stays expired
                self._entries[channel][conn_key] = (held[0], expires)

    def _expire(self, channel: str) -> None:
        entries = self._entries.get(channel)
        if not entries:
            return
        now = self._clock()
        for key in [k for k, (_, exp) in entries.items() if exp <= now]:
            del entries[key]
        if not entries:
            del self._entries[channel]
