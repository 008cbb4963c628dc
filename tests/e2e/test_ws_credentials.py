"""An open WebSocket is closed once its key is revoked or its user token expires, with the
unauthorized close code and a reason that says why."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from gateway.appkeys import DB
from gateway.keys import KeyStore, issue_user_token
from tests.e2e.conftest import join, next_frame, request


async def _closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> tuple[dict, aiohttp.WSMessage]:
    """The error frame, then the close that follows it."""
    err = await next_frame(ws, timeout)
    close = await ws.receive(timeout=5)
    assert close.type == aiohttp.WSMsgType.CLOSE, close
    return err, close


async def test_a_revoked_key_is_closed_on_the_next_ping(gateway_server, ws_connect):
    store = KeyStore(gateway_server.app[DB])
    key, record = await store.create(plan="free")
    ws = await ws_connect(key)
    await join(ws, "room")
    await store.revoke(record.key_id)
    deadline = time.monotonic() + 5
    while True:   # the authenticator may serve the key from its 1 s cache for a moment
        await ws.send_json({"type": "ping", "ref": "hb"})
        reply = await next_frame(ws)
        if reply["type"] != "pong":
            break
        assert time.monotonic() < deadline, "still open 5 s after the key was revoked"
        await asyncio.sleep(0.2)
    assert reply["type"] == "error" and reply["error"]["code"] == "unauthorized", reply
    assert "revoked" in reply["error"]["message"]
    close = await ws.receive(timeout=5)
    assert close.type == aiohttp.WSMsgType.CLOSE and close.data == 4001, close
    assert close.extra.startswith("unauthorized: ") and "revoked" in close.extra, close.extra


async def test_an_expired_user_token_is_closed_without_any_client_frame(start_gateway, make_key, http):
    gw = await start_gateway(auth_check_interval=30.0)   # the expiry timer, not the periodic check, fires
    secret = await make_key()
    token = issue_user_token(secret, user_id="u1", channels=["chat:*"], expires_in=2)
    ws = await http.ws_connect(gw.ws_url, params={"token": token})
    await join(ws, "chat:a")
    started = time.monotonic()
    err, close = await _closed_with(ws, timeout=6)
    assert err["type"] == "error" and err["error"]["code"] == "unauthorized" and "expired" in err["error"]["message"]
    assert close.data == 4001 and "expired" in close.extra, close.extra
    assert time.monotonic() - started < 4


async def test_a_revoked_key_is_closed_by_the_periodic_check_while_idle(start_gateway, http):
    gw = await start_gateway(auth_check_interval=0.3)
    store = KeyStore(gw.app[DB])
    key, record = await store.create(plan="free")
    ws = await http.ws_connect(gw.ws_url, params={"apiKey": key})
    await join(ws, "room")
    await store.revoke(record.key_id)
    err, close = await _closed_with(ws, timeout=4)
    assert err["error"]["code"] == "unauthorized" and close.data == 4001 and "revoked" in close.extra


async def test_a_failing_credential_check_keeps_the_connection_and_checks_again(start_gateway, http):
    import psycopg

    gw = await start_gateway(auth_check_interval=0.2)
    store = KeyStore(gw.app[DB])
    key, record = await store.create(plan="free")
    ws = await http.ws_connect(gw.ws_url, params={"apiKey": key})
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        await conn.execute("ALTER TABLE nuvem_realtime.api_keys RENAME TO api_keys_away")   # lookups fail
        await asyncio.sleep(1.5)                     # past the key cache: several failed checks
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"   # not the client's fault: still open
        await conn.execute("ALTER TABLE nuvem_realtime.api_keys_away RENAME TO api_keys")
    await store.revoke(record.key_id)                # and the checks still run afterwards
    err, close = await _closed_with(ws, timeout=4)
    assert err["error"]["code"] == "unauthorized" and close.data == 4001


async def test_a_user_token_connects_within_its_channels_publishes_as_its_user_and_an_expired_one_is_refused(
        gateway_server, http, make_key):
    secret = await make_key()
    token = issue_user_token(secret, user_id="usr_abc", channels=["chat:*"], expires_in=60)
    user = await http.ws_connect(gateway_server.ws_url, params={"token": token})
    await join(user, "chat:room")
    assert (await request(user, {"type": "join", "channel": "orders:1"}))["error"]["code"] == "forbidden"
    before_ack: list[dict] = []   # a publisher joined to the channel gets its message before the ack
    ack = await request(user, {"type": "publish", "channel": "chat:room", "event": "message",
                               "payload": {"text": "hola"}}, others=before_ack)
    assert ack["type"] == "ack" and len(before_ack) == 1, (ack, before_ack)
    msg = before_ack[0]
    assert msg["type"] == "message" and msg["publisher"] == "usr_abc", msg   # who sent it, from the token

    expired = issue_user_token(secret, user_id="usr_abc", channels=["chat:*"], expires_in=1)
    await asyncio.sleep(1.1)
    ws = await http.ws_connect(gateway_server.ws_url, params={"token": expired})
    err, close = await _closed_with(ws, timeout=5)
    assert err["error"]["code"] == "unauthorized" and "expired" in err["error"]["message"]
    assert close.data == 4001
