"""Each limit hit exactly at its threshold, over real HTTP and WebSockets; rejected messages leave no trace."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg

from gateway.appkeys import DB, LIMITS
from gateway.keys import KeyStore, key_id_for
from gateway.limits import month_start
from tests.e2e.conftest import join, next_frame, request

CHANNELS = "/v1/realtime/channels"


async def _post(http, server, key, path, body):
    async with http.post(server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), r.headers


async def _history(http, server, key, channel):
    async with http.get(f"{server.url}{CHANNELS}/{channel}/history", params={"limit": "1000"},
                        headers={"Authorization": f"Bearer {key}"}) as r:
        return [m["payload"] for m in (await r.json())["messages"]]


async def test_rate_limit_refuses_the_nplus1th_message_with_retry_after(gateway_server, http, make_key, ws_connect):
    key = await make_key()
    await _post(http, gateway_server, key, CHANNELS,
                {"name": "notifications:usuarios", "rateLimit": {"messages": 3, "windowSeconds": 60}})
    sub = await ws_connect(key)
    await join(sub, "notifications:usuarios")
    for i in range(3):
        status, body, _ = await _post(http, gateway_server, key, f"{CHANNELS}/notifications:usuarios/publish",
                                      {"event": "n", "payload": i})
        assert status == 200, body
    status, body, headers = await _post(http, gateway_server, key, f"{CHANNELS}/notifications:usuarios/publish",
                                        {"event": "n", "payload": "rejected"})
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded", body
    assert 55 < body["error"]["retryAfter"] <= 60 and headers["Retry-After"] == "60"
    # the WebSocket path shares the channel's window
    ws = await ws_connect(key)
    refused = await request(ws, {"type": "publish", "channel": "notifications:usuarios", "event": "n",
                                 "payload": "rejected too"})
    assert refused["type"] == "error" and refused["error"]["code"] == "rate_limit_exceeded"
    assert refused["error"]["retryAfter"] > 55
    # neither delivered, nor stored, nor counted
    assert [(await next_frame(sub))["payload"] for _ in range(3)] == [0, 1, 2]
    try:
        extra = await next_frame(sub, timeout=0.5)
    except asyncio.TimeoutError:
        extra = None
    assert extra is None
    assert await _history(http, gateway_server, key, "notifications:usuarios") == [0, 1, 2]
    assert await gateway_server.app[LIMITS].usage(key_id_for(key)) == 3
    # other channels are not limited by it
    assert (await _post(http, gateway_server, key, f"{CHANNELS}/other/publish", {"event": "n"}))[0] == 200
    await sub.close()
    await ws.close()


async def test_free_plan_quota_refuses_the_500001st_message_of_the_month(gateway_server, http, make_key):
    key = await make_key(plan="free")
    owner = key_id_for(key)
    async with await psycopg.AsyncConnection.connect(gateway_server.dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO nuvem_realtime.usage_monthly (owner_id, month, messages) VALUES (%s, %s, %s)",
                           (owner, month_start(datetime.now(UTC)), 499_999))
    status, body, _ = await _post(http, gateway_server, key, f"{CHANNELS}/q/publish", {"event": "e", "payload": "last"})
    assert status == 200, body
    status, body, _ = await _post(http, gateway_server, key, f"{CHANNELS}/q/publish", {"event": "e", "payload": "over"})
    assert status == 429 and body["error"]["code"] == "message_quota_exceeded"
    assert body["error"]["limit"] == 500_000 and body["error"]["plan"] == "free"
    assert await _history(http, gateway_server, key, "q") == ["last"]
    await gateway_server.app[LIMITS].flush()
    async with await psycopg.AsyncConnection.connect(gateway_server.dsn) as conn:
        row = await (await conn.execute("SELECT messages FROM nuvem_realtime.usage_monthly WHERE owner_id = %s",
                                        (owner,))).fetchone()
    assert row[0] == 500_000
    # another key of the same owner shares the quota; a scale key of another owner does not
    store = KeyStore(gateway_server.app[DB])
    same_owner, _ = await store.create(owner_id=owner)
    status, body, _ = await _post(http, gateway_server, same_owner, f"{CHANNELS}/q/publish", {"event": "e"})
    assert status == 429 and body["error"]["code"] == "message_quota_exceeded"
    scale = await make_key(plan="scale")
    assert (await _post(http, gateway_server, scale, f"{CHANNELS}/q/publish", {"event": "e"}))[0] == 200


async def test_the_101st_connection_on_the_free_plan_is_refused(gateway_server, make_key, ws_connect):
    key = await make_key(plan="free")
    conns = await asyncio.gather(*(ws_connect(key) for _ in range(100)))
    # a pong proves the server accepted that connection (it authenticates after the upgrade)
    pongs = await asyncio.gather(*(request(c, {"type": "ping"}) for c in conns))
    assert [p["type"] for p in pongs] == ["pong"] * 100
    refused = await ws_connect(key)
    frame = await next_frame(refused)
    assert frame["type"] == "error" and frame["error"]["code"] == "connection_limit_exceeded"
    assert frame["error"]["limit"] == 100
    await refused.receive(timeout=5)
    assert refused.closed and refused.close_code is not None
    other_owner = await ws_connect(await make_key(plan="free"))
    assert (await request(other_owner, {"type": "ping"}))["type"] == "pong"
    await conns[0].close()
    for _ in range(50):  # the server frees the slot when it sees the close
        if gateway_server.app[LIMITS].connections(key_id_for(key)) < 100:
            break
        await asyncio.sleep(0.02)
    again = await ws_connect(key)
    assert (await request(again, {"type": "ping"}))["type"] == "pong"
    await asyncio.gather(*(c.close() for c in [*conns[1:], again, other_owner]))


async def test_channel_max_connections_refuses_the_next_join(gateway_server, http, make_key, ws_connect):
    key = await make_key()
    await _post(http, gateway_server, key, CHANNELS, {"name": "room", "maxConnections": 2})
    a, b, c = [await ws_connect(key) for _ in range(3)]
    await join(a, "room")
    await join(b, "room")
    refused = await request(c, {"type": "join", "channel": "room"})
    assert refused["type"] == "error" and refused["error"]["code"] == "connection_limit_exceeded"
    assert refused["error"]["limit"] == 2
    assert (await request(a, {"type": "leave", "channel": "room"}))["type"] == "ack"
    await join(c, "room")
    for ws in (a, b, c):
        await ws.close()


async def test_concurrent_publishes_at_the_rate_threshold_admit_exactly_n(gateway_server, http, make_key):
    key = await make_key()
    await _post(http, gateway_server, key, CHANNELS, {"name": "burst", "rateLimit": {"messages": 5, "windowSeconds": 60}})
    results = await asyncio.gather(*(_post(http, gateway_server, key, f"{CHANNELS}/burst/publish",
                                           {"event": "e", "payload": i}) for i in range(20)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 5 + [429] * 15
    admitted = sorted(body["offset"] for status, body, _ in results if status == 200)
    assert admitted == [1, 2, 3, 4, 5]
    assert len(await _history(http, gateway_server, key, "burst")) == 5
    assert await gateway_server.app[LIMITS].usage(key_id_for(key)) == 5


async def test_concurrent_publishes_at_the_quota_threshold_admit_exactly_what_is_left(gateway_server, http, make_key):
    key = await make_key(plan="free")
    async with await psycopg.AsyncConnection.connect(gateway_server.dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO nuvem_realtime.usage_monthly (owner_id, month, messages) VALUES (%s, %s, %s)",
                           (key_id_for(key), month_start(datetime.now(UTC)), 499_990))
    results = await asyncio.gather(*(_post(http, gateway_server, key, f"{CHANNELS}/quota:{i % 3}/publish",
                                           {"event": "e", "payload": i}) for i in range(25)))
    codes = sorted(body.get("error", {}).get("code", "ok") for _, body, _ in results)
    assert codes == ["message_quota_exceeded"] * 15 + ["ok"] * 10
    stored = [p for c in range(3) for p in await _history(http, gateway_server, key, f"quota:{c}")]
    assert len(stored) == 10
    assert await gateway_server.app[LIMITS].usage(key_id_for(key)) == 500_000


async def test_a_burst_of_connections_at_the_plan_threshold_admits_exactly_100(gateway_server, make_key, ws_connect):
    key = await make_key(plan="free")
    conns = await asyncio.gather(*(ws_connect(key) for _ in range(104)))

    async def outcome(ws) -> str:
        try:
            await ws.send_json({"type": "ping", "ref": "p"})
        except ConnectionError:
            pass  # already closed by the server: its error frame is still buffered
        return (await next_frame(ws))["type"]

    outcomes = await asyncio.gather(*(outcome(c) for c in conns))
    assert sorted(outcomes) == ["error"] * 4 + ["pong"] * 100
    assert gateway_server.app[LIMITS].connections(key_id_for(key)) == 100
    await asyncio.gather(*(c.close() for c in conns))
