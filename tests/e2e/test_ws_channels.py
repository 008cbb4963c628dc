"""Channels over the WebSocket: join, publish, receive, leave, ping, authorization."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.e2e.conftest import join, next_frame, request


async def test_publish_reaches_every_subscriber_once_with_offsets(ws_connect, make_key):
    key = await make_key()
    alice, bob = await ws_connect(key), await ws_connect(key)
    ack = await join(alice, "chat:sala-principal")
    assert ack["channel"] == "chat:sala-principal" and ack["offset"] == 0
    await join(bob, "chat:sala-principal")

    for i in (1, 2):
        others: list[dict] = []
        reply = await request(alice, {"type": "publish", "channel": "chat:sala-principal", "event": "message",
                                      "payload": {"text": "Hola a todos!", "n": i}}, others=others)
        assert reply == {"type": "ack", "ref": reply["ref"], "channel": "chat:sala-principal", "offset": i}
        # the publisher is subscribed too: it gets its own message before the ack
        assert [f["offset"] for f in others] == [i]
    for i in (1, 2):
        msg = await next_frame(bob)
        assert msg["type"] == "message" and msg["channel"] == "chat:sala-principal"
        assert msg["offset"] == i and msg["event"] == "message"
        assert msg["payload"] == {"text": "Hola a todos!", "n": i}
        assert msg["publishedAt"].endswith("Z") or "+00:00" in msg["publishedAt"]


async def test_leave_stops_delivery_and_one_connection_holds_many_channels(ws_connect, make_key):
    key = await make_key()
    ws, pub = await ws_connect(key), await ws_connect(key)
    await join(ws, "a")
    await join(ws, "b")
    await request(pub, {"type": "publish", "channel": "a", "event": "e", "payload": 1})
    await request(pub, {"type": "publish", "channel": "b", "event": "e", "payload": 2})
    got = [(await next_frame(ws))["channel"] for _ in range(2)]
    assert got == ["a", "b"]

    assert (await request(ws, {"type": "leave", "channel": "a"}))["type"] == "ack"
    await request(pub, {"type": "publish", "channel": "a", "event": "e", "payload": 3})
    await request(pub, {"type": "publish", "channel": "b", "event": "e", "payload": 4})
    msg = await next_frame(ws)
    assert (msg["channel"], msg["payload"]) == ("b", 4)   # nothing from "a" came first

    err = await request(ws, {"type": "leave", "channel": "a"})
    assert err["type"] == "error" and err["error"]["code"] == "invalid_request"
    assert "not joined" in err["error"]["message"]


async def test_ping_gets_pong(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    await ws.send_json({"type": "ping", "ref": "hb-1"})
    assert await next_frame(ws) == {"type": "pong", "ref": "hb-1"}


async def test_no_key_is_closed_unauthorized(ws_connect):
    ws = await ws_connect(None)
    err = await next_frame(ws)
    assert err["type"] == "error" and err["error"]["code"] == "unauthorized"
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001 and msg.extra == "unauthorized"


async def test_bearer_header_is_accepted(gateway_server, http, make_key):
    key = await make_key()
    ws = await http.ws_connect(gateway_server.ws_url, headers={"Authorization": f"Bearer {key}"})
    assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_channel_outside_the_keys_patterns_is_forbidden_and_connection_stays(ws_connect, make_key):
    ws = await ws_connect(await make_key(publishable=True, channels=["chat:*"]))
    for frame in ({"type": "join", "channel": "orders:live"},
                  {"type": "publish", "channel": "orders:live", "event": "e", "payload": {}}):
        err = await request(ws, frame)
        assert err["type"] == "error" and err["error"]["code"] == "forbidden", err
        # the message says what the key allows (principal.require_access)
        assert err["error"]["channel"] == "orders:live" and "chat:*" in err["error"]["message"], err
        assert "publishable key" in err["error"]["message"], err
    await join(ws, "chat:room")
    reply = await request(ws, {"type": "publish", "channel": "chat:room", "event": "e", "payload": {}})
    assert reply["type"] == "ack" and reply["offset"] == 1


async def test_join_twice_is_an_error(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    await join(ws, "x")
    err = await request(ws, {"type": "join", "channel": "x"})
    assert err["error"]["code"] == "invalid_request" and "already joined" in err["error"]["message"]


async def test_server_shutdown_closes_sockets_with_reconnect_code(start_gateway, http, make_key):
    other = await start_gateway()
    key = await make_key()
    ws = await http.ws_connect(other.ws_url, params={"apiKey": key})
    await join(ws, "x")
    stopping = asyncio.create_task(other.stop())
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4100 and msg.extra == "server_shutdown"
    await stopping
