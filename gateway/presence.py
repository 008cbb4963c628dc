"""Presence store: who is tracked on each channel (the interface).

An entry is (channel, conn_key) -> user object, where ``conn_key`` identifies one connection
on one node ("<node_id>:<conn_id>"). Contract of every implementation (memory now, Redis later):

- ``track`` adds or replaces the entry and returns True if it is new for that connection.
- ``untrack`` removes it and returns the user object it held, or None.
- Entries expire ``ttl`` seconds after they were last tracked or refreshed: the owning node
  calls ``refresh(conn_keys)`` more often than the TTL, so entries of a node that died
  disappear on their own. ``list`` and ``count`` never return expired entries, ``untrack``
  ignores them (returns None) and ``refresh`` does not bring them back.
- ``expire(channel)`` removes the channel's expired entries and returns their user objects;
  each expired entry is returned by exactly ONE call, from any node (atomic), so exactly one
  node publishes its leave. Nodes call it for the channels they have subscribers on.
- Diff events are not the store's job: the node publishes join/leave through the broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class PresenceStore(Protocol):
    async def track(self, channel: str, conn_key: str, user: dict[str, Any]) -> bool:
        """Add or replace; True when the connection was not tracked on the channel before."""

    async def untrack(self, channel: str, conn_key: str) -> dict[str, Any] | None:
        """Remove; the user object removed, or None if there was none."""

    async def list(self, channel: str) -> list[dict[str, Any]]:
        """The live user objects on the channel, oldest track first."""

    async def count(self, channel: str) -> int:
        """How many live entries the channel has."""

    async def refresh(self, entries: Iterable[tuple[str, str]]) -> None:
        """Extend the TTL of these (channel, conn_key) entries."""

    async def expire(self, channel: str) -> list[dict[str, Any]]:
        """Remove the channel's expired entries; their user objects, each to one caller only."""
