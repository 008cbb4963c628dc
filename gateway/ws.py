"""The ``/v1/realtime/ws`` handler: aiohttp IO around ``protocol`` (frames) and ``Node`` (engine).

One task per connection reads frames in order; everything the server sends goes through the
connection's ``Outbox`` (bounded, never blocking), so replies stay ordered with broadcasts.
Setup failures (no key, connection limit) send an error frame and close with the close code
of ``protocol.CLOSE_CODES``; request errors send an error frame and keep the connection open.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import weakref
from collections import deque
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from gateway import protocol
from gateway.appkeys import AUTH, CHANNELS, CONFIG, LIMITS, NODE
from gateway.auth import Principal, credential_from_request
from gateway.channels import validate_channel_name
from gateway.config import Config
from gateway.errors import NuvemError
from gateway.hub import Outbox, Subscription
from gateway.node import Node

_log = structlog.get_logger("gateway.ws")
_conn_ids = itertools.count(1)
_MAX_INFLIGHT_PUBLISHES = 1000   # per connection; beyond it, reading waits for acks (backpressure)

# every open WebSocket of the app, closed with server_shutdown in on_shutdown
CONNECTIONS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("ws_connections", weakref.WeakSet)


def add_routes(app: web.Application) -> None:
    app[CONNECTIONS] = weakref.WeakSet()
    app.router.add_get("/v1/realtime/ws", websocket_handler)
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    code = protocol.close_code("server_shutdown")
    await asyncio.gather(*(ws.close(code=code.code, message=code.reason.encode())
                           for ws in list(app[CONNECTIONS])), return_exceptions=True)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    config: Config = request.app[CONFIG]
    # frames over hard_frame_bytes: aiohttp itself closes with 1009 (MESSAGE_TOO_BIG)
    ws = web.WebSocketResponse(max_msg_size=config.hard_frame_bytes, compress=False, autoping=True,
                               timeout=3.0)   # how long a close waits for the client's close frame
    await ws.prepare(request)
    session = _Session(request, ws, config)
    request.app[CONNECTIONS].add(ws)
    try:
        await session.run()
    finally:
        request.app[CONNECTIONS].discard(ws)
        await session.cleanup()
    return ws


class _Session:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, config: Config) -> None:
        self.request = request
        self.ws = ws
        self.config = config
        self.node: Node = request.app[NODE]
        self.conn_key = f"{self.node.node_id}:{next(_conn_ids)}"
        transport = request.transport
        assert transport is not None
        self.outbox = Outbox(transport, on_overflow=self._on_slow, max_messages=config.send_queue_max_messages,
                             max_bytes=config.send_queue_max_bytes)
        self.principal: Principal | None = None
        self.lease: Any = None
        self.subs: dict[str, Subscription] = {}
        self._closing: asyncio.Task[Any] | None = None
        self._inflight: deque[tuple[protocol.Ref, asyncio.Future[Any]]] = deque()
        self._inflight_ready = asyncio.Event()      # something to ack
        self._inflight_drained = asyncio.Event()    # room for more publishes
        self._acker: asyncio.Task[None] | None = None
        self._auth_checker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            self.principal = await self.request.app[AUTH].authenticate(credential_from_request(self.request))
            self.lease = await self.request.app[LIMITS].acquire_connection(self.principal)
        except NuvemError as e:
            self._send(protocol.error_frame(e.code, e.message, **e.details))
            reason = e.code if e.code in protocol.CLOSE_CODES else "internal_error"
            await self._close(reason)
            return
        self._auth_checker = asyncio.get_running_loop().create_task(self._check_credential_periodically())
        timeout = self.config.heartbeat_timeout
        while not self.ws.closed and self._closing is None:
            try:
                msg = await self.ws.receive(timeout=timeout)
            except asyncio.TimeoutError:
                self._send(protocol.error_frame(
                    "invalid_request", f"no frame received for {timeout:g} s; send a ping at least every "
                    f"{self.config.heartbeat_interval:g} s", reason="heartbeat_timeout"))
                await self._close("heartbeat_timeout")
                return
            if self._closing is not None:   # closing (slow consumer, credential revoked): read no more
                return
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self._send(protocol.error_frame(
                    "invalid_request", "binary frames are not supported; send JSON text frames"))
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return

    async def cleanup(self) -> None:
        if self._auth_checker is not None:
            self._auth_checker.cancel()
            await asyncio.gather(self._auth_checker, return_exceptions=True)
        if self._acker is not None:   # messages in flight are still stored; only their acks are moot
            self._acker.cancel()
            await asyncio.gather(self._acker, return_exceptions=True)
        self.outbox.close()
        for sub in list(self.subs.values()):
            try:
                await self.node.unsubscribe(sub)
            except Exception as e:
                _log.warning("cleanup failed", channel=sub.channel, error=repr(e))
        self.subs.clear()
        if self.lease is not None:
            await self.lease.release()
            self.lease = None
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    async def _ack_publishes(self) -> None:
        """Ack (or refuse) this connection's publishes in the order they were sent."""
        while True:
            if not self._inflight:
                self._inflight_ready.clear()
                await self._inflight_ready.wait()
                continue
            ref, stored = self._inflight[0]
            try:
                pub = await asyncio.shield(stored)
            except NuvemError as e:
                self._send(protocol.error_frame(e.code, e.message, ref=ref, **e.details))
            except Exception as e:
                _log.error("publish failed", conn=self.conn_key, error=repr(e))
                self._send(protocol.error_frame("internal_error", f"unexpected server error: {type(e).__name__}",
                                                ref=ref))
            else:
                self._send(protocol.Ack(ref=ref, channel=pub.channel, offset=pub.offset))
            self._inflight.popleft()
            if len(self._inflight) < _MAX_INFLIGHT_PUBLISHES:
                self._inflight_drained.set()
                self._inflight_drained.clear()

    async def _check_credential_periodically(self) -> None:
        """Close the connection soon after its key is revoked or its user token expires."""
        assert self.principal is not None
        interval = self.config.auth_check_interval
        while self._closing is None:
            delay = interval
            if self.principal.expires_at is not None:   # wake up right when the token expires
                delay = min(delay, max(0.0, self.principal.expires_at - time.time()) + 0.01)
            await asyncio.sleep(delay)
            await self._still_authorized()

    async def _still_authorized(self) -> bool:
        """Revalidate the credential; if it no longer holds, send an error, close with
        ``unauthorized`` (the close reason says why) and return False."""
        assert self.principal is not None
        try:
            await self.request.app[AUTH].revalidate(self.principal)
        except NuvemError as e:
            if e.code != "unauthorized":   # e.g. the database is down: keep serving, check again later
                _log.warning("credential check failed", conn=self.conn_key, error=e.message)
                return True
            if self._closing is None:
                _log.info("closing: credential no longer valid", conn=self.conn_key, why=e.message)
                self._send(protocol.error_frame(e.code, e.message, **e.details))
                self._closing = asyncio.get_running_loop().create_task(self._close("unauthorized", e.message))
            return False
        except Exception as e:   # a bug or a backend failure must not end the periodic checks
            _log.warning("credential check failed", conn=self.conn_key, error=repr(e))
            return True
        return True

    def _on_slow(self) -> None:
        # called from a broadcast: must not block, so the close runs in its own task
        if self._closing is None:
            _log.info("closing slow consumer", conn=self.conn_key)
            self._closing = asyncio.get_running_loop().create_task(self._close("slow_consumer"))

    async def _close(self, reason: str, why: str | None = None) -> None:
        """Close with ``reason``'s close code; the close reason is the reason name, then ": why"
        if given (cut to the 123 bytes a close frame allows)."""
        code = protocol.close_code(reason)
        text = code.reason if why is None else f"{code.reason}: {why}"
        await self.ws.close(code=code.code, message=text.encode()[:123].decode(errors="ignore").encode())

    def _send(self, frame: protocol.ServerFrame) -> None:
        self.node.hub.flush()   # broadcasts queued this turn (e.g. our own message) go first
        self.outbox.send(protocol.ws_text_frame(protocol.encode(frame)))

    # ------------------------------------------------------------ frames

    async def _on_text(self, data: str) -> None:
        if len(data) > self.config.max_frame_bytes:   # characters <= bytes: a cheap first check
            size = len(data.encode())
            if size > self.config.max_frame_bytes:
                self._send(protocol.error_frame(
                    "payload_too_large", f"frame of {size} bytes is over the limit of "
                    f"{self.config.max_frame_bytes} bytes", limit=self.config.max_frame_bytes))
                return
        try:
            frame = protocol.decode_client_frame(data)
        except protocol.ProtocolError as e:
            self._send(protocol.error_frame(e.code, e.message, ref=e.ref, **e.details()))
            return
        ref = frame.ref
        try:
            await self._dispatch(frame)
        except NuvemError as e:
            self._send(protocol.error_frame(e.code, e.message, ref=ref, **e.details))
        except Exception as e:   # a bug or a backend failure: say so, keep the connection
            _log.exception("frame failed", conn=self.conn_key, type=type(frame).__name__)
            self._send(protocol.error_frame("internal_error", f"unexpected server error: {type(e).__name__}",
                                            ref=ref))

    async def _dispatch(self, frame: protocol.ClientFrame) -> None:
        if isinstance(frame, protocol.Ping):
            if await self._still_authorized():   # heartbeats also re-check the key or token
                self._send(protocol.Pong(ref=frame.ref))
        elif isinstance(frame, protocol.Publish):
            self._allowed(frame.channel)
            # pipelined: admitted and queued now, acked in order by _ack_publishes once durable
            if len(self._inflight) >= _MAX_INFLIGHT_PUBLISHES:
                await self._inflight_drained.wait()
            stored = await self.node.submit(frame.channel, frame.event, frame.payload, principal=self.principal,
                                            publisher=self.principal.user_id if self.principal else None)
            self._inflight.append((frame.ref, stored))
            self._inflight_ready.set()
            if self._acker is None:
                self._acker = asyncio.get_running_loop().create_task(self._ack_publishes())
        elif isinstance(frame, protocol.Join):
            await self._join(frame)
        elif isinstance(frame, protocol.Leave):
            sub = self._joined(frame.channel)
            del self.subs[frame.channel]
            await self.node.unsubscribe(sub)
            self._send(protocol.Ack(ref=frame.ref, channel=frame.channel))
        elif isinstance(frame, protocol.Track):
            await self.node.track(self._joined(frame.channel), frame.user)
            self._send(protocol.Ack(ref=frame.ref, channel=frame.channel))
        elif isinstance(frame, protocol.Untrack):
            await self.node.untrack(self._joined(frame.channel))
            self._send(protocol.Ack(ref=frame.ref, channel=frame.channel))
        elif isinstance(frame, protocol.GetPresence):
            self._allowed(frame.channel)
            users = await self.node.presence(frame.channel)
            self._send(protocol.Ack(ref=frame.ref, channel=frame.channel, presence=users))

    async def _join(self, frame: protocol.Join) -> None:
        channel = frame.channel
        self._allowed(channel)
        if channel in self.subs:
            raise NuvemError("invalid_request", f"already joined {channel!r}; leave it first to join again",
                             field="channel")
        if frame.since is not None and frame.since < 0:
            raise NuvemError("invalid_request", "since must be an offset >= 0", field="since")
        if frame.last is not None and not 0 <= frame.last <= 1000:
            raise NuvemError("invalid_request", "last must be between 0 and 1000", field="last")
        if frame.since is not None and frame.last is not None:
            raise NuvemError("invalid_request", "give either since or last, not both", field="last")
        config = await self.request.app[CHANNELS].get(channel)
        lease = await self.request.app[LIMITS].acquire_channel_member(
            channel, config.max_connections if config else None)
        sub = Subscription(channel, self.outbox, self.conn_key)
        sub.lease = lease
        self.subs[channel] = sub
        try:
            await self.node.subscribe(sub, ref=frame.ref, since=frame.since, last=frame.last)
        except BaseException:
            self.subs.pop(channel, None)
            await lease.release()   # idempotent if the node already released it
            raise

    def _allowed(self, channel: str) -> None:
        validate_channel_name(channel)
        assert self.principal is not None
        self.principal.require_access(channel)

    def _joined(self, channel: str) -> Subscription:
        validate_channel_name(channel)
        sub = self.subs.get(channel)
        if sub is None:
            raise NuvemError("invalid_request", f"not joined to {channel!r}; send join first", field="channel")
        return sub

