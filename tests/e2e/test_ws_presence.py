"""Presence across two clients: track, sync on join, join/leave diffs, getPresence, untrack."""

from __future__ import annotations

from tests.e2e.conftest import next_frame, request

PEDRO = {"userId": "usr_abc", "username": "pedro", "status": "online"}
ANA = {"userId": "usr_def", "username": "ana", "status": "away"}


async def _join(ws, channel):
    ack = await request(ws, {"type": "join", "channel": channel})
    assert ack["type"] == "ack"
    state = await next_frame(ws)
    assert state["type"] == "presence_state"
    return state["presence"]


async def test_presence_join_sync_and_leave_across_two_clients(ws_connect, make_key):
    key = await make_key()
    a, b = await ws_connect(key), await ws_connect(key)
    assert await _join(a, "chat:lobby") == []
    await _join(b, "chat:lobby")

    others: list[dict] = []
    assert (await request(a, {"type": "track", "channel": "chat:lobby", "user": PEDRO}, others=others))["type"] == "ack"
    assert others == [{"type": "presence_diff", "channel": "chat:lobby", "event": "join", "user": PEDRO}]
    assert await next_frame(b) == {"type": "presence_diff", "channel": "chat:lobby", "event": "join", "user": PEDRO}

    # a third client gets the full list on join, and getPresence agrees
    c = await ws_connect(key)
    assert await _join(c, "chat:lobby") == [PEDRO]
    await request(b, {"type": "track", "channel": "chat:lobby", "user": ANA})
    assert (await next_frame(c))["user"] == ANA
    reply = await request(c, {"type": "presence", "channel": "chat:lobby"})
    assert reply["type"] == "ack" and reply["presence"] == [PEDRO, ANA]

    # a disconnect is a leave carrying the tracked user object
    await a.close()
    assert await next_frame(c) == {"type": "presence_diff", "channel": "chat:lobby", "event": "leave", "user": PEDRO}
    # an explicit untrack too
    await request(b, {"type": "untrack", "channel": "chat:lobby"})
    assert await next_frame(c) == {"type": "presence_diff", "channel": "chat:lobby", "event": "leave", "user": ANA}
    assert (await request(c, {"type": "presence", "channel": "chat:lobby"}))["presence"] == []


async def test_track_needs_a_joined_channel_and_a_user_object(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    err = await request(ws, {"type": "track", "channel": "chat:x", "user": PEDRO})
    assert err["error"]["code"] == "invalid_request" and "join" in err["error"]["message"]
    await _join(ws, "chat:x")
    err = await request(ws, {"type": "track", "channel": "chat:x", "user": "pedro"})
    assert err["error"]["code"] == "invalid_request" and "user" in err["error"]["message"]


async def _pedro_tracked_and_watched(ws_connect, make_key, channel):
    """Two clients joined to ``channel``: ``a`` tracks PEDRO, ``b`` has seen the join diff."""
    key = await make_key()
    a, b = await ws_connect(key), await ws_connect(key)
    await _join(a, channel)
    await _join(b, channel)
    await request(a, {"type": "track", "channel": channel, "user": PEDRO})
    assert await next_frame(b) == {"type": "presence_diff", "channel": channel, "event": "join", "user": PEDRO}
    return a, b


async def test_leave_untracks(ws_connect, make_key):
    a, b = await _pedro_tracked_and_watched(ws_connect, make_key, "room")
    await request(a, {"type": "leave", "channel": "room"})
    assert await next_frame(b) == {"type": "presence_diff", "channel": "room", "event": "leave", "user": PEDRO}


async def test_a_connection_reset_without_a_close_frame_is_a_leave(ws_connect, make_key):
    import socket
    import struct

    a, b = await _pedro_tracked_and_watched(ws_connect, make_key, "chat:reset")
    # drop a's TCP connection with a reset: no WebSocket close frame, no FIN
    transport = a._response.connection.transport
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    assert await next_frame(b) == {"type": "presence_diff", "channel": "chat:reset", "event": "leave", "user": PEDRO}
    assert (await request(b, {"type": "presence", "channel": "chat:reset"}))["presence"] == []
