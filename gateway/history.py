"""Channel history: offsets, durable storage and resume queries (the interface).

Contract of every ``History`` implementation (history_postgres.py now):

- ``append`` assigns the channel's next offset (1, 2, 3, ... per channel, strictly increasing,
  never reused, shared by every node) and returns only once the publication is durable.
- Once durable, and before ``append`` returns, each publication is handed to the ``on_durable``
  callback given at construction, in offset order per channel. The node uses it to fan out,
  so a subscriber never sees a message that history does not have.
- ``read`` pages through what retention kept: ``since`` (offsets > since, oldest first),
  ``before`` (offsets < before, newest page, returned oldest first), neither = the last ``limit``.
- Retention per channel by count (keep the newest N) and age (drop older than S seconds). A read
  never returns a message retention dropped, even if the physical delete has not run yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec


class Publication(msgspec.Struct, frozen=True):
    """One message on a channel, as stored in history and fanned out to subscribers."""
    channel: str
    offset: int
    event: str
    payload: Any
    published_at: datetime
    publisher: str | None = None


class HistoryPage(msgspec.Struct):
    """Messages oldest first. ``next_before``: pass as ``before`` for the previous (older) page,
    None when there is none. ``earliest_offset``: oldest retained offset (latest + 1 if none)."""
    channel: str
    messages: list[Publication]
    next_before: int | None
    latest_offset: int
    earliest_offset: int


@dataclass(frozen=True, slots=True)
class Retention:
    max_count: int | None = None          # keep at most the newest N (None: unlimited)
    max_age_seconds: float | None = None  # drop messages older than this (None: forever)


OnDurable = Callable[[Publication], Awaitable[None]]


class History(Protocol):
    async def start(self) -> None:
        """Start background work (batch writer, retention sweeper)."""

    async def close(self) -> None:
        """Flush what was accepted, then stop background work."""

    async def append(self, channel: str, event: str, payload: Any, *, publisher: str | None,
                     retention: Retention) -> Publication:
        """Assign the next offset, store durably, call on_durable; see the module contract.
        Raises NuvemError("unavailable") if the store failed (the message was not stored)."""

    def submit(self, channel: str, event: str, payload: Any, *, publisher: str | None,
               retention: Retention) -> "asyncio.Future[Publication]":
        """``append`` without waiting: queued now (so submissions keep their call order), the
        future resolves as ``append`` would return or raise."""

    async def read(self, channel: str, *, limit: int = 50, before: int | None = None,
                   since: int | None = None, retention: Retention) -> HistoryPage:
        """A page of retained messages; see the module contract."""

    async def bounds(self, channel: str, *, retention: Retention) -> tuple[int, int]:
        """(earliest retained offset, latest offset); earliest = latest + 1 when none retained."""
