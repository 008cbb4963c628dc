"""Broker: fan-out of channel publications and presence diffs to every node (the interface).

Each node registers one ``BrokerHandler`` (the node itself) and subscribes to the channels it
has local subscribers for. Contract of every implementation (broker_memory.py now, Redis later):

- ``publish(pub)`` delivers ``pub`` to the handler of every node subscribed to ``pub.channel``
  when it is called, ONCE per node (no duplicates, no loss while the node stays subscribed).
- Per channel, each node receives the publications of ONE publishing node in the order that
  node called ``publish`` (history calls it in offset order, see history.py). Publications of
  different nodes may interleave in any order: offsets are gapless per channel, and the
  receiving node restores offset order itself (``Node``'s sequencer, which also fills a hole
  from history if a message never arrives, e.g. its publisher died after the commit).
- ``publish_presence`` delivers a presence diff the same way (ordered with the channel's
  publications as they were published).
- Handler methods are plain (non-async) calls and must not block: the node only writes
  prepared frames to send queues there.
- Nothing here assumes a single process: a node only knows channels through this interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.history import Publication


class BrokerHandler(Protocol):
    def on_publication(self, pub: Publication) -> None:
        """A publication for a channel this node is subscribed to."""

    def on_presence(self, channel: str, event: str, user: dict[str, Any]) -> None:
        """A presence diff: ``event`` is "join" or "leave", ``user`` the tracked user object."""


class Broker(Protocol):
    async def start(self, handler: BrokerHandler) -> None:
        """Register this node's handler and connect."""

    async def close(self) -> None:
        """Stop delivering to this node."""

    async def subscribe(self, channel: str) -> None:
        """Deliver ``channel``'s publications to this node from now on (idempotent)."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel`` to this node (idempotent)."""

    async def publish(self, pub: Publication) -> None:
        """Deliver to every subscribed node; see the module contract."""

    async def publish_presence(self, channel: str, event: str, user: dict[str, Any]) -> None:
        """Deliver a presence diff to every subscribed node."""
