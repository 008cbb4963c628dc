"""This node's channels -> local subscriptions, and each connection's bounded send queue.

A broadcast is encoded once (``protocol.ws_text_frame``) and the same bytes are written to every
subscriber's ``Outbox`` (frames of one event-loop turn are coalesced into one write). Writing never waits: an ``Outbox`` writes straight to the socket while
the socket keeps up, queues (bounded) while it does not, and calls ``on_overflow`` (the
connection then closes with ``slow_consumer``) when the queue is full. A slow client therefore
never delays delivery to the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class Outbox:
    """One connection's send queue of complete WebSocket frames (never blocks the caller).

    ``high_water``: bytes the transport may buffer before we hold frames back in our queue;
    ``max_messages``/``max_bytes``: the queue's bounds; past them ``on_overflow`` is called once
    and everything queued is dropped."""

    _POLL = 0.005   # how often a backlogged outbox checks whether the socket drained

    def __init__(self, transport: Transport, *, on_overflow: Callable[[], None], max_messages: int = 1000,
                 max_bytes: int = 4 << 20, high_water: int = 256 << 10) -> None:
        self._transport = transport
        self._write = transport.write                  # bound once: send() is the hottest path
        self._buffered = transport.get_write_buffer_size
        self._is_closing = transport.is_closing
        self._on_overflow = on_overflow
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._high_water = high_water
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self.closed = False

    def send(self, frame: bytes) -> None:
        if not self._backlog and not self.closed and not self._is_closing() \
                and (self._buffered() + len(frame) <= self._high_water or not self._buffered()):
            self._write(frame)
            return
        if self.closed:
            return
        if self._is_closing():   # the peer went away: the connection's cleanup follows
            self.close()
            return
        self._backlog.append(frame)
        self._backlog_bytes += len(frame)
        if len(self._backlog) > self._max_messages or self._backlog_bytes > self._max_bytes:
            self.overflow()
        elif self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    @property
    def queued(self) -> int:
        return len(self._backlog)

    def overflow(self) -> None:
        """Give up on this connection as a slow consumer: drop what is queued, call on_overflow once."""
        if not self.closed:
            self.close()
            self._on_overflow()

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing waits in our queue (what the socket buffers is fine), for paced
        bulk sends such as a replay. False if the outbox closed or, after ``timeout`` s without
        draining, it was given up on as a slow consumer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._backlog and not self.closed:
            if loop.time() >= deadline:
                self.overflow()
                break
            await asyncio.sleep(self._POLL)
        return not self.closed

    def close(self) -> None:
        """Stop sending and drop what is queued."""
        self.closed = True
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()
        self._flusher = None

    async def _flush(self) -> None:
        t = self._transport
        try:
            while self._backlog and not self.closed:
                if t.is_closing():
                    self.close()
                    return
                while self._backlog and (t.get_write_buffer_size() + len(self._backlog[0]) <= self._high_water
                                         or not t.get_write_buffer_size()):
                    frame = self._backlog.popleft()
                    self._backlog_bytes -= len(frame)
                    t.write(frame)
                if self._backlog:
                    await asyncio.sleep(self._POLL)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None


class Subscription:
    """One connection's membership of one channel on this node.

    While ``buffer`` is a list (a join replaying history), broadcasts are held there as
    (offset or None, frame) instead of being sent, so the join can dedupe at the seam.
    ``replayed_through``: after a replay, the last offset it sent; a live message with an offset
    up to it (committed before the replay read it, but broadcast after) is dropped, not sent twice."""

    __slots__ = ("channel", "outbox", "conn_key", "buffer", "lease", "tracked", "replayed_through")

    def __init__(self, channel: str, outbox: Outbox, conn_key: str) -> None:
        self.channel = channel
        self.outbox = outbox
        self.conn_key = conn_key
        self.buffer: list[tuple[int | None, bytes]] | None = None
        self.lease: Any = None
        self.tracked = False
        self.replayed_through = 0


class Hub:
    """Broadcasts are coalesced per event-loop turn: every frame a channel gets in one turn (a
    history batch commits several messages at once) is joined into one buffer and written to each
    subscriber with ONE write, in order. Fewer syscalls per message for us and for the clients."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[int, Subscription]] = {}
        self._pending: dict[str, list[tuple[int | None, bytes]]] = {}
        self._flush_scheduled = False

    def add(self, sub: Subscription) -> bool:
        """Add; True if it is the channel's first subscription on this node."""
        subs = self._channels.setdefault(sub.channel, {})
        subs[id(sub)] = sub
        return len(subs) == 1

    def remove(self, sub: Subscription) -> bool:
        """Remove; True if the channel has no subscription left on this node."""
        subs = self._channels.get(sub.channel)
        if subs is None or subs.pop(id(sub), None) is None:
            return False
        if not subs:
            del self._channels[sub.channel]
            return True
        return False

    def broadcast(self, channel: str, frame: bytes, offset: int | None = None) -> None:
        """Queue ``frame`` for every subscription of ``channel``; written at the end of this turn."""
        if channel not in self._channels:
            return
        pending = self._pending.get(channel)
        if pending is None:
            self._pending[channel] = [(offset, frame)]
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        else:
            pending.append((offset, frame))

    def flush(self) -> None:
        """Write what is queued now (before a direct reply, so replies never overtake broadcasts)."""
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for channel, items in pending.items():
            subs = self._channels.get(channel)
            if not subs:
                continue
            chunks = [items[0][1]] if len(items) == 1 else coalesce(items)
            for sub in subs.values():   # sends never block nor change subscriptions synchronously
                if sub.buffer is not None:
                    sub.buffer.extend(items)
                    if len(sub.buffer) > MAX_HELD:   # the join's replay cannot keep up with the channel
                        sub.outbox.overflow()
                elif sub.replayed_through:
                    _send_after_replay(sub, items)
                else:
                    for data in chunks:
                        sub.outbox.send(data)

    def count(self, channel: str) -> int:
        return len(self._channels.get(channel, ()))

    def channels(self) -> dict[str, int]:
        return {name: len(subs) for name, subs in self._channels.items()}


_CHUNK = 64 << 10
MAX_HELD = 10_000   # live messages held for one joining subscription while its replay is sent


def _send_after_replay(sub: Subscription, items: list[tuple[int | None, bytes]]) -> None:
    """Send what the replay did not; offsets arrive in order, so the first newer one ends the check."""
    fresh = [(o, f) for o, f in items if o is None or o > sub.replayed_through]
    if any(o is not None for o, _ in fresh):
        sub.replayed_through = 0
    for data in coalesce(fresh) if fresh else ():
        sub.outbox.send(data)


def coalesce(items: list[tuple[int | None, bytes]]) -> list[bytes]:
    """Join consecutive frames into writes of at most 64 KiB (a bigger frame is a write alone),
    so one write never bypasses a send queue's bounds by much."""
    chunks: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for _, frame in items:
        if group and size + len(frame) > _CHUNK:
            chunks.append(b"".join(group))
            group, size = [], 0
        group.append(frame)
        size += len(frame)
    if group:
        chunks.append(b"".join(group))
    return chunks
