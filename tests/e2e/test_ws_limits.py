"""Limits on the WebSocket, each hit exactly at its threshold."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.appkeys import CHANNELS, NODE
from gateway.channels import RateLimit
from tests.e2e.conftest import join, next_frame, request


async def test_the_101st_connection_on_a_free_plan_is_refused(gateway_server, http, make_key):
    key = await make_key(plan="free")
    url = gateway_server.ws_url + "?apiKey=" + key
    conns = await asyncio.gather(*(http.ws_connect(url) for _ in range(100)))
    # all 100 are really usable
    pongs = await asyncio.gather(*(request(ws, {"type": "ping"}) for ws in conns))
    assert all(p["type"] == "pong" for p in pongs)

    extra = await http.ws_connect(url)
    err = await next_frame(extra)
    assert err["type"] == "error" and err["error"]["code"] == "connection_limit_exceeded"
    msg = await extra.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4029 and msg.extra == "connection_limit_exceeded"

    # closing one frees its slot
    await conns[0].close()
    for _ in range(50):
        again = await http.ws_connect(url)
        reply = await request(again, {"type": "ping"})
        if reply["type"] == "pong":
            break
        await asyncio.sleep(0.05)
    assert reply["type"] == "pong"
    await asyncio.gather(*(ws.close() for ws in conns[1:]))


async def test_channel_max_connections(gateway_server, ws_connect, make_key):
    await gateway_server.app[CHANNELS].create("vip", max_connections=2)
    key = await make_key()
    a, b, c = await ws_connect(key), await ws_connect(key), await ws_connect(key)
    await join(a, "vip")
    await join(b, "vip")
    err = await request(c, {"type": "join", "channel": "vip"})
    assert err["type"] == "error" and err["error"]["code"] == "connection_limit_exceeded"
    # still usable, and a member leaving makes room
    await request(a, {"type": "leave", "channel": "vip"})
    await join(c, "vip")


async def test_the_message_over_the_rate_limit_is_refused_not_delivered_not_stored(gateway_server, ws_connect,
                                                                                   make_key):
    await gateway_server.app[CHANNELS].create("limited", rate_limit=RateLimit(messages=3, window_seconds=60))
    key = await make_key()
    pub, sub = await ws_connect(key), await ws_connect(key)
    await join(sub, "limited")
    for i in range(3):
        assert (await request(pub, {"type": "publish", "channel": "limited", "event": "e", "payload": i}))["type"] == "ack"
    err = await request(pub, {"type": "publish", "channel": "limited", "event": "e", "payload": 3})
    assert err["type"] == "error" and err["error"]["code"] == "rate_limit_exceeded"
    assert 0 < err["error"]["retryAfter"] <= 60
    # the connection stays usable, and the refused message went nowhere
    assert (await request(pub, {"type": "ping"}))["type"] == "pong"
    assert [(await next_frame(sub))["payload"] for _ in range(3)] == [0, 1, 2]
    page = await gateway_server.app[NODE].history("limited", limit=10)
    assert [m.payload for m in page.messages] == [0, 1, 2]
    # other channels are not limited by it
    other = await request(pub, {"type": "publish", "channel": "unlimited", "event": "e", "payload": 9})
    assert other["type"] == "ack"


async def test_a_message_the_store_failed_is_not_counted_against_the_rate_limit(gateway_server, ws_connect,
                                                                               make_key):
    import psycopg

    await gateway_server.app[CHANNELS].create("one-per-minute", rate_limit=RateLimit(messages=1, window_seconds=60))
    async with await psycopg.AsyncConnection.connect(gateway_server.dsn, autocommit=True) as conn:
        await conn.execute("ALTER TABLE nuvem_realtime.history ADD CONSTRAINT no_bad CHECK (event <> 'bad')")
    ws = await ws_connect(await make_key())
    err = await request(ws, {"type": "publish", "channel": "one-per-minute", "event": "bad", "payload": 1})
    assert err["type"] == "error" and err["error"]["code"] == "unavailable"
    ok = await request(ws, {"type": "publish", "channel": "one-per-minute", "event": "good", "payload": 2})
    assert ok["type"] == "ack" and ok["offset"] == 1
    over = await request(ws, {"type": "publish", "channel": "one-per-minute", "event": "good", "payload": 3})
    assert over["error"]["code"] == "rate_limit_exceeded"
