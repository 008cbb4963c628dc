"""Slow consumers, heartbeats: a connection that cannot keep up or goes silent is closed with a reason."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from tests.e2e.conftest import join, next_frame, request


async def test_a_slow_client_is_disconnected_and_never_slows_the_others(start_gateway, http, make_key):
    server = await start_gateway(send_queue_max_messages=20, send_queue_max_bytes=1 << 20)
    key = await make_key()
    url = server.ws_url + "?apiKey=" + key
    # the slow client never reads: aiohttp stops reading the socket once its small buffer is full,
    # and a small receive buffer keeps the kernel from absorbing megabytes on its behalf
    def small_buffer_socket(addr_info):  # type: ignore[no-untyped-def]
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        return sock

    slow_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_buffer_socket))
    slow = await slow_session.ws_connect(url, max_msg_size=0, autoping=False)
    fast, publisher = await http.ws_connect(url), await http.ws_connect(url)
    await join(slow, "firehose")
    await join(fast, "firehose")

    blob = "x" * 16384
    count = 500                                      # ~8 MB: more than socket buffers can hide
    received = []
    for group in range(0, count, 10):                # a fast reader keeps up with a paced publisher
        for i in range(group, group + 10):
            await publisher.send_json({"type": "publish", "channel": "firehose", "event": "e",
                                       "payload": {"i": i, "blob": blob}})
        while len(received) < group + 10:
            frame = await next_frame(fast, timeout=20)
            received.append(frame["payload"]["i"])
    assert received == list(range(count))           # the fast client got everything, in order

    # the slow client, once it reads, finds some messages and then the close with the reason
    kinds = []
    while True:
        msg = await slow.receive(timeout=20)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        kinds.append(msg.json()["type"])
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 4102 and msg.extra == "slow_consumer"
    assert 0 < len([k for k in kinds if k == "message"]) < count, len(kinds)
    await slow_session.close()


async def test_a_silent_client_is_closed_after_the_heartbeat_timeout(start_gateway, http, make_key):
    server = await start_gateway(heartbeat_timeout=0.6, heartbeat_interval=0.2)
    key = await make_key()
    chatty = await http.ws_connect(server.ws_url, params={"apiKey": key})
    silent = await http.ws_connect(server.ws_url, params={"apiKey": key})
    for _ in range(6):                               # 1.2 s of pings keeps a connection open
        assert (await request(chatty, {"type": "ping"}))["type"] == "pong"
        await asyncio.sleep(0.2)
    err = await next_frame(silent, timeout=5)
    assert err["type"] == "error" and "ping" in err["error"]["message"]
    msg = await silent.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4101 and msg.extra == "heartbeat_timeout"
    assert (await request(chatty, {"type": "ping"}))["type"] == "pong"
