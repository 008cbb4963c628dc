"""The realtime engine of one process: publish, subscribe with resume, presence, history.

Backends are injected (broker, presence store, history, limits, channel registry); nothing in
here knows which implementation runs, and the backends call back into the node only through
``BrokerHandler`` (``on_publication``/``on_presence``) and history's ``on_durable``.

Publish path: validate -> limits.admit_message -> history.append (offset, durable batch) ->
on_durable -> broker.publish -> every node's on_publication -> hub (one encode per node).
A message is acked only after that, so an acked message is durable; a message rejected by a
limit is neither stored, delivered nor counted.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from gateway import protocol
from gateway.broker import Broker
from gateway.channels import validate_channel_name
from gateway.errors import NuvemError
from gateway.history import History, HistoryPage, Publication, Retention
from gateway.hub import Hub, Subscription, coalesce
from gateway.presence import PresenceStore

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.channels import ChannelConfig, ChannelRegistry
    from gateway.limits import Limits

__all__ = ["Node", "Publication", "HistoryPage"]

_log = structlog.get_logger("gateway.node")
_REPLAY_PAGE = 500
MAX_EVENT_LENGTH = 200


class Node:
    def __init__(self, *, broker: Broker, presence: PresenceStore, history: History, limits: "Limits",
                 channels: "ChannelRegistry", default_retention: Retention, presence_ttl: float = 30.0,
                 node_id: str | None = None, reorder_timeout: float = 0.5,
                 replay_drain_timeout: float = 30.0) -> None:
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.hub = Hub()
        self._broker = broker
        self._presence = presence
        self._history = history
        self._limits = limits
        self._channels = channels
        self._default_retention = default_retention
        self._presence_ttl = presence_ttl
        self._tracked: set[tuple[str, str]] = set()      # (channel, conn_key) tracked by this node
        self._broker_subscribing: dict[str, asyncio.Future[None]] = {}
        self._sequencers: dict[str, _Sequencer] = {}            # channels this node is subscribed to
        self._hole_checks: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._reorder_timeout = reorder_timeout
        self._replay_drain_timeout = replay_drain_timeout   # a replay waiting this long on a client: slow_consumer
        self._refresher: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._broker.start(self)
        await self._history.start()
        self._refresher = asyncio.create_task(self._refresh_presence(), name="presence-refresh")

    async def close(self) -> None:
        """Store what was accepted (history flushes), then stop background work."""
        await self._history.close()
        for check in self._hole_checks.values():
            check.cancel()
        tasks = [t for t in (self._refresher, *self._background) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._broker.close()

    # ---------------------------------------------------------------- BrokerHandler

    def on_publication(self, pub: Publication) -> None:
        seq = self._sequencers.get(pub.channel)
        if seq is None:
            return   # not (or no longer) subscribed here
        for ready in seq.push(pub):
            self._fan_out(ready)
        if seq.held and pub.channel not in self._hole_checks:
            self._hole_checks[pub.channel] = asyncio.get_running_loop().call_later(
                self._reorder_timeout, self._check_hole, pub.channel)

    def _fan_out(self, pub: Publication) -> None:
        self.hub.broadcast(pub.channel, _message_frame(pub), pub.offset)

    def _check_hole(self, channel: str) -> None:
        self._hole_checks.pop(channel, None)
        seq = self._sequencers.get(channel)
        if seq is not None and seq.missing() is not None:
            task = asyncio.get_running_loop().create_task(self._fill_hole(channel, seq))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _fill_hole(self, channel: str, seq: "_Sequencer") -> None:
        """A message committed by another node did not arrive in time: read it from history."""
        hole = seq.missing()
        if hole is None:
            return
        first, last = hole
        try:
            config = await self._channels.get(channel)
            page = await self._history.read(channel, since=first - 1, limit=min(last - first + 1, 1000),
                                            retention=self._retention(config))
        except Exception as e:   # try again later: skipping now would lose committed messages
            _log.warning("filling a hole from history failed; retrying", channel=channel, error=repr(e))
            if self._sequencers.get(channel) is seq and channel not in self._hole_checks:
                self._hole_checks[channel] = asyncio.get_running_loop().call_later(
                    self._reorder_timeout, self._check_hole, channel)
            return
        if self._sequencers.get(channel) is not seq:
            return
        ready = []
        for pub in page.messages:
            ready += seq.push(pub)
        if seq.missing() == hole:   # history does not have them (retention): move on
            _log.warning("skipping offsets history no longer has", channel=channel, first=first, last=last)
            ready += seq.skip_to(last + 1)
        for pub in ready:
            self._fan_out(pub)
        if seq.held:
            self._check_hole(channel)

    def on_presence(self, channel: str, event: str, user: dict[str, Any]) -> None:
        diff = protocol.PresenceDiff(channel=channel, event=event, user=user)
        self.hub.broadcast(channel, protocol.ws_text_frame(protocol.encode(diff)))

    async def _on_durable(self, pub: Publication) -> None:
        await self._broker.publish(pub)

    # ---------------------------------------------------------------- publish and history

    async def publish(self, channel: str, event: str, payload: Any, *, principal: "Principal | None",
                      publisher: str | None = None) -> Publication:
        return await (await self.submit(channel, event, payload, principal=principal, publisher=publisher))

    async def submit(self, channel: str, event: str, payload: Any, *, principal: "Principal | None",
                     publisher: str | None = None) -> "asyncio.Future[Publication]":
        """``publish`` in two steps, for pipelining: validates and admits (raising at once if
        refused) and queues the message, then returns a future that resolves once it is durable
        and fanned out. Messages submitted one after another get offsets in that order."""
        validate_channel_name(channel)
        if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH:
            raise NuvemError("invalid_request", f"event must be a string of 1-{MAX_EVENT_LENGTH} characters",
                             field="event")
        _check_storable(event, payload, publisher)   # before admission: a refused message is not counted
        config = await self._channels.get(channel)
        await self._limits.admit_message(principal, channel, config.rate_limit if config else None)
        stored = self._history.submit(channel, event, payload, publisher=publisher, retention=self._retention(config))
        task = asyncio.ensure_future(self._refund_if_refused(stored, principal, channel))
        self._background.add(task)   # a strong reference until done, whoever awaits it
        task.add_done_callback(self._background.discard)
        return task

    async def _refund_if_refused(self, stored: "asyncio.Future[Publication]", principal: "Principal | None",
                                 channel: str) -> Publication:
        try:
            return await stored
        except NuvemError:   # the store refused it: not stored, so not counted either
            await self._limits.refund_message(principal, channel)
            raise

    async def history(self, channel: str, *, limit: int = 50, before: int | None = None,
                      since: int | None = None) -> HistoryPage:
        validate_channel_name(channel)
        if not 1 <= limit <= 1000:
            raise NuvemError("invalid_request", "limit must be between 1 and 1000", field="limit")
        config = await self._channels.get(channel)
        return await self._history.read(channel, limit=limit, before=before, since=since,
                                        retention=self._retention(config))

    def _retention(self, config: "ChannelConfig | None") -> Retention:
        d = self._default_retention
        if config is None:
            return d
        return Retention(
            max_count=config.history_max_count if config.history_max_count is not None else d.max_count,
            max_age_seconds=(config.history_max_age_seconds if config.history_max_age_seconds is not None
                             else d.max_age_seconds))

    # ---------------------------------------------------------------- subscriptions

    async def subscribe(self, sub: Subscription, *, ref: protocol.Ref = None, since: int | None = None,
                        last: int | None = None) -> int:
        """Join ``sub`` to its channel and send, in order: the ack (with the latest offset), the
        presence state, the replay (``since``: every message after it; ``last``: the last N),
        then live messages, with no gap and no duplicate at the seam. Returns the latest offset.
        Raises NuvemError("history_gap") (and joins nothing) if retention dropped messages
        after ``since``."""
        channel = sub.channel
        config = await self._channels.get(channel)
        retention = self._retention(config)
        replay = since is not None or bool(last)
        sub.buffer = []   # live messages wait here until the ack, presence state and replay are sent
        if self.hub.add(sub):
            self._broker_subscribing[channel] = asyncio.ensure_future(self._subscribe_channel(channel, retention))
        try:
            subscribing = self._broker_subscribing.get(channel)
            if subscribing is not None:
                await asyncio.shield(subscribing)
            earliest, latest = await self._history.bounds(channel, retention=retention)
            if since is not None and since > latest:   # not an offset of this channel's history
                raise NuvemError(
                    "invalid_request", f"since={since} is past the latest offset {latest} of {channel!r};"
                    " join with an offset you received, or without since", field="since", latestOffset=latest)
            if since is not None and since < earliest - 1 and since < latest:
                raise NuvemError(
                    "history_gap", f"messages {since + 1}-{earliest - 1} of {channel!r} were dropped by "
                    f"retention; join with since={earliest - 1} to resume from the oldest kept",
                    channel=channel, resumeFrom=earliest - 1, earliestOffset=earliest, latestOffset=latest)
            sub.outbox.send(_frame(protocol.Ack(ref=ref, channel=channel, offset=latest)))
            users = await self._presence.list(channel)
            sub.outbox.send(_frame(protocol.PresenceState(channel=channel, presence=users)))
            cursor = await self._replay(sub, since=since, last=last, retention=retention) if replay else 0
            held, sub.buffer = sub.buffer or [], None
            for offset, frame in held:
                if offset is None or offset > cursor:   # skip what the replay already sent
                    sub.outbox.send(frame)
            # a message the replay read may still be on its way to the hub (committed, not yet
            # fanned out: e.g. another node's, or a hole this node fills from history later)
            sub.replayed_through = cursor if replay else 0
        except BaseException:
            await self._remove(sub)
            raise
        return latest

    async def _replay(self, sub: Subscription, *, since: int | None, last: int | None,
                      retention: Retention) -> int:
        """Send the replayed messages, paced by what the client reads (a long replay must not
        overflow the send queue of a client that is reading); return the offset of the last one
        sent (or ``since``)."""
        channel = sub.channel
        cursor = since if since is not None else 0
        if since is not None:
            while True:
                page = await self._history.read(channel, limit=_REPLAY_PAGE, since=cursor, retention=retention)
                if not await self._send_replayed(sub, page.messages):
                    break
                if page.messages:
                    cursor = page.messages[-1].offset
                if len(page.messages) < _REPLAY_PAGE:
                    break
        else:
            page = await self._history.read(channel, limit=min(int(last or 0), 1000), retention=retention)
            await self._send_replayed(sub, page.messages)
            if page.messages:
                cursor = page.messages[-1].offset
        return cursor

    async def _send_replayed(self, sub: Subscription, messages: list[Publication]) -> bool:
        """Write in chunks of at most 64 KiB, each once the previous one left our queue; False
        if the connection was closed meanwhile (or given up on as a slow consumer)."""
        frames = [(pub.offset, _message_frame(pub)) for pub in messages]
        for chunk in coalesce(frames) if frames else ():
            if not await sub.outbox.drained(self._replay_drain_timeout):
                return False
            sub.outbox.send(chunk)
        return not sub.outbox.closed

    async def unsubscribe(self, sub: Subscription) -> None:
        """Leave: untrack presence if tracked, stop delivering, release the channel lease."""
        if sub.tracked:
            await self.untrack(sub)
        await self._remove(sub)

    async def _subscribe_channel(self, channel: str, retention: Retention) -> None:
        """This node's first subscriber on ``channel``: subscribe to the broker, then learn the
        latest offset, so the sequencer releases exactly what is newer, in order."""
        seq = self._sequencers[channel] = _Sequencer()
        await self._broker.subscribe(channel)
        _earliest, latest = await self._history.bounds(channel, retention=retention)
        if self._sequencers.get(channel) is seq:
            for pub in seq.start(latest):
                self._fan_out(pub)

    async def _remove(self, sub: Subscription) -> None:
        sub.buffer = None
        if self.hub.remove(sub):
            self._broker_subscribing.pop(sub.channel, None)
            self._sequencers.pop(sub.channel, None)
            check = self._hole_checks.pop(sub.channel, None)
            if check is not None:
                check.cancel()
            try:
                await self._broker.unsubscribe(sub.channel)
            except Exception as e:
                _log.warning("broker unsubscribe failed", channel=sub.channel, error=repr(e))
        lease, sub.lease = sub.lease, None
        if lease is not None:
            await lease.release()

    # ---------------------------------------------------------------- presence

    async def track(self, sub: Subscription, user: dict[str, Any]) -> None:
        await self._presence.track(sub.channel, sub.conn_key, user)
        sub.tracked = True
        self._tracked.add((sub.channel, sub.conn_key))
        await self._broker.publish_presence(sub.channel, "join", user)

    async def untrack(self, sub: Subscription) -> bool:
        sub.tracked = False
        self._tracked.discard((sub.channel, sub.conn_key))
        user = await self._presence.untrack(sub.channel, sub.conn_key)
        if user is None:
            return False
        await self._broker.publish_presence(sub.channel, "leave", user)
        return True

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        validate_channel_name(channel)
        return await self._presence.list(channel)

    async def channel_stats(self) -> list[dict[str, Any]]:
        """Channels with subscribers on this node: {"name", "connections", "presence"}."""
        out = []
        for name, connections in sorted(self.hub.channels().items()):
            out.append({"name": name, "connections": connections, "presence": await self._presence.count(name)})
        return out

    async def _refresh_presence(self) -> None:
        """Keep this node's presence entries alive; publish the leave of entries that expired
        (their node died) on the channels this node has subscribers on."""
        while True:
            await asyncio.sleep(self._presence_ttl / 3)
            try:
                await self._presence.refresh(list(self._tracked))
                for channel in list(self.hub.channels()):
                    for user in await self._presence.expire(channel):
                        await self._broker.publish_presence(channel, "leave", user)
            except Exception as e:
                _log.warning("presence refresh failed", error=repr(e))


_payload_encoder = msgspec.json.Encoder()
# "\u0000" in encoded JSON is a NUL character unless its backslash is itself escaped ("\\u0000")
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _check_storable(event: str, payload: Any, publisher: str | None) -> None:
    """Raise invalid_request if history (Postgres text/jsonb) cannot store the message: they
    refuse the NUL character (U+0000) anywhere, in the event or in any string or key of the payload.
    (Left to the database, one such message would fail its whole batch with ``unavailable``.)"""
    if "\x00" in event:
        raise NuvemError("invalid_request", "event contains the NUL character (U+0000), which cannot be stored",
                         field="event")
    if publisher is not None and "\x00" in publisher:
        raise NuvemError("invalid_request", "the user token's 'sub' (the publisher) contains the NUL character "
                         "(U+0000), which cannot be stored", field="publisher")
    try:
        encoded = _payload_encoder.encode(payload)
    except (TypeError, msgspec.EncodeError) as e:  # REST and WebSocket decode JSON, so only direct callers
        raise NuvemError("invalid_request", f"payload is not JSON-encodable: {e}", field="payload") from None
    if b"\\u0000" in encoded and _ESCAPED_NUL.search(encoded):
        raise NuvemError("invalid_request", "payload contains the NUL character (U+0000, \"\\u0000\" in JSON) in a "
                         "string or key; Postgres cannot store it: remove it or encode the data (e.g. base64)",
                         field="payload")


def _frame(frame: protocol.ServerFrame) -> bytes:
    return protocol.ws_text_frame(protocol.encode(frame))


def _message_frame(pub: Publication) -> bytes:
    """The complete WebSocket frame of a ``message``, live or replayed."""
    return _frame(protocol.Message(channel=pub.channel, offset=pub.offset, event=pub.event, payload=pub.payload,
                                   published_at=pub.published_at, publisher=pub.publisher))


class _Sequencer:
    """One channel's publications in offset order, each once (pure; no IO).

    Offsets are gapless per channel (assigned in the committing transaction), but two nodes'
    history writers may hand their messages to the broker in either order. ``push`` returns
    what can be delivered now; a later offset waits until the ones before it arrive (or the node
    fills the hole from history, see ``missing``/``skip_to``). Before ``start(latest)`` nothing
    is released; after it, offsets <= latest are old news and dropped."""

    __slots__ = ("next", "held")

    def __init__(self) -> None:
        self.next: int | None = None          # the offset to deliver next; None until started
        self.held: dict[int, Publication] = {}

    def start(self, latest: int) -> list[Publication]:
        self.next = latest + 1
        self.held = {o: p for o, p in self.held.items() if o > latest}
        return self._release()

    def push(self, pub: Publication) -> list[Publication]:
        if self.next is not None and pub.offset == self.next and not self.held:
            self.next += 1                    # the common case: in order
            return [pub]
        if self.next is None or pub.offset >= self.next:
            self.held.setdefault(pub.offset, pub)
            return self._release()
        return []                             # a duplicate or older than our start

    def missing(self) -> tuple[int, int] | None:
        """(first, last) offsets of the hole before the earliest held publication, if any."""
        if self.next is None or not self.held:
            return None
        first_held = min(self.held)
        return (self.next, first_held - 1) if first_held > self.next else None

    def skip_to(self, offset: int) -> list[Publication]:
        """Give up on offsets before ``offset`` (history no longer has them)."""
        if self.next is not None and offset > self.next:
            self.next = offset
        return self._release()

    def _release(self) -> list[Publication]:
        out = []
        if self.next is None:
            return out
        while self.next in self.held:
            out.append(self.held.pop(self.next))
            self.next += 1
        return out
