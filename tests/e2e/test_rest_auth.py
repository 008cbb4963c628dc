"""Who may call what: no key, bad keys, revoked keys, publishable keys, user tokens, channel patterns."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from gateway.appkeys import DB
from gateway.keys import KeyStore, issue_user_token, key_id_for, signing_secret_for
from tests.e2e.conftest import join, next_frame, request

CHANNELS = "/v1/realtime/channels"
ADMIN_CALLS = [
    ("GET", CHANNELS, None),
    ("POST", CHANNELS, {"name": "x"}),
    ("GET", f"{CHANNELS}/x", None),
    ("PATCH", f"{CHANNELS}/x", {"maxConnections": 1}),
    ("DELETE", f"{CHANNELS}/x", None),
    ("POST", f"{CHANNELS}/chat:x/publish", {"event": "e"}),
    ("GET", f"{CHANNELS}/chat:x/history", None),
]


async def _call(http, server, method, path, body=None, *, auth: str | None = None, headers=None):
    h = dict(headers or {})
    if auth is not None:
        h["Authorization"] = f"Bearer {auth}"
    async with http.request(method, server.url + path, json=body, headers=h) as r:
        return r.status, await r.json(), r.headers


@pytest.mark.parametrize("method, path, body", ADMIN_CALLS)
async def test_no_key_is_401_on_every_endpoint(gateway_server, http, method, path, body):
    status, resp, headers = await _call(http, gateway_server, method, path, body)
    assert status == 401 and resp["error"]["code"] == "unauthorized" and "no API key" in resp["error"]["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method, path, body", ADMIN_CALLS)
async def test_publishable_key_and_user_token_are_403_on_every_endpoint(gateway_server, http, make_key,
                                                                       method, path, body):
    pub = await make_key(publishable=True)
    secret = await make_key()
    token = issue_user_token(secret, user_id="usr_1", channels=None, expires_in=60)
    for credential, words in ((pub, "publishable key"), (token, "user token")):
        status, resp, _ = await _call(http, gateway_server, method, path, body, auth=credential)
        assert status == 403, resp
        assert resp["error"]["code"] == "forbidden" and words in resp["error"]["message"]
    status, _, _ = await _call(http, gateway_server, "GET", CHANNELS, auth=secret)
    assert status == 200


async def test_unknown_malformed_and_revoked_keys_are_401(gateway_server, http, make_key):
    for credential, words in (("nv_live_" + "x" * 32, "unknown API key"), ("hello", "malformed credential")):
        status, resp, _ = await _call(http, gateway_server, "GET", CHANNELS, auth=credential)
        assert status == 401 and words in resp["error"]["message"]
    status, resp, _ = await _call(http, gateway_server, "GET", CHANNELS, headers={"Authorization": "Basic abc"})
    assert status == 401 and "malformed" in resp["error"]["message"]
    key = await make_key()
    assert (await _call(http, gateway_server, "GET", CHANNELS, auth=key))[0] == 200
    await KeyStore(gateway_server.app[DB]).revoke(key_id_for(key))
    await asyncio.sleep(1.1)  # the Authenticator's cache time
    status, resp, _ = await _call(http, gateway_server, "GET", CHANNELS, auth=key)
    assert status == 401 and "revoked" in resp["error"]["message"]


async def test_rest_refuses_a_key_in_the_url(gateway_server, http, make_key):
    key = await make_key()
    for params, headers in (({"apiKey": key}, {}), ({"apiKey": key}, {"Authorization": f"Bearer {key}"}),
                            ({"token": "a.b.c"}, {})):
        async with http.get(gateway_server.url + CHANNELS, params=params, headers=headers) as r:
            body = await r.json()
            assert r.status == 401 and body["error"]["code"] == "unauthorized"
            assert "Authorization: Bearer" in body["error"]["message"] and "URL" in body["error"]["message"]
    async with http.get(gateway_server.url + CHANNELS, headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200


async def test_secret_key_limited_to_patterns_only_sees_and_touches_those(gateway_server, http, make_key):
    admin = await make_key()
    chat_only = await make_key(channels=["chat:*"])
    await _call(http, gateway_server, "POST", f"{CHANNELS}/orders:x/publish", {"event": "e"}, auth=admin)
    await _call(http, gateway_server, "POST", f"{CHANNELS}/chat:x/publish", {"event": "e"}, auth=admin)
    _, orders, _ = await _call(http, gateway_server, "POST", CHANNELS, {"name": "orders:created"}, auth=admin)
    await _call(http, gateway_server, "POST", CHANNELS, {"name": "chat:created"}, auth=admin)
    for method, path, body in [("POST", f"{CHANNELS}/orders:x/publish", {"event": "e"}),
                               ("GET", f"{CHANNELS}/orders:x/history", None),
                               ("POST", CHANNELS, {"name": "orders:y"}),
                               ("GET", f"{CHANNELS}/orders:created", None),
                               ("GET", f"{CHANNELS}/{orders['id']}", None),
                               ("PATCH", f"{CHANNELS}/{orders['id']}", {"maxConnections": 1}),
                               ("DELETE", f"{CHANNELS}/orders:created", None)]:
        status, resp, _ = await _call(http, gateway_server, method, path, body, auth=chat_only)
        assert status == 403 and "orders:" in resp["error"]["message"], (method, path, resp)
    status, resp, _ = await _call(http, gateway_server, "POST", f"{CHANNELS}/chat:x/publish", {"event": "e"},
                                  auth=chat_only)
    assert status == 200
    status, listed, _ = await _call(http, gateway_server, "GET", CHANNELS, auth=chat_only)
    assert status == 200 and [c["name"] for c in listed["channels"]] == ["chat:created"]
    _, still, _ = await _call(http, gateway_server, "GET", f"{CHANNELS}/{orders['id']}", auth=admin)
    assert still["maxConnections"] is None  # the refused PATCH changed nothing


async def test_expired_user_token_refused_on_the_websocket(ws_connect, make_key):
    key = await make_key()
    expired = jwt.encode({"sub": "usr_1", "exp": int(time.time()) - 10}, signing_secret_for(key),
                         algorithm="HS256", headers={"kid": key_id_for(key)})
    ws = await ws_connect(None, token=expired)
    frame = await next_frame(ws)
    assert frame["type"] == "error" and frame["error"]["code"] == "unauthorized"
    assert "expired" in frame["error"]["message"]
    msg = await ws.receive(timeout=5)
    assert ws.closed or msg.type.name in ("CLOSE", "CLOSED")


async def test_user_token_for_chat_refused_on_orders(ws_connect, make_key):
    key = await make_key()
    token = issue_user_token(key, user_id="usr_abc", channels=["chat:*"], expires_in=60)
    ws = await ws_connect(None, token=token)
    await join(ws, "chat:sala-principal")
    refused = await request(ws, {"type": "join", "channel": "orders:x"})
    assert refused["type"] == "error" and refused["error"]["code"] == "forbidden"
    ack = await request(ws, {"type": "publish", "channel": "chat:sala-principal", "event": "message",
                             "payload": {"text": "Hola a todos!"}})
    assert ack["type"] == "ack"  # the connection stays usable
    await ws.close()


async def test_publishable_key_joins_and_publishes_on_its_patterns_only(ws_connect, make_key):
    pub = await make_key(publishable=True, channels=["chat:*"])
    ws = await ws_connect(pub)
    await join(ws, "chat:a")
    refused = await request(ws, {"type": "publish", "channel": "orders:x", "event": "e", "payload": 1})
    assert refused["type"] == "error" and refused["error"]["code"] == "forbidden"
    await ws.close()


async def test_openapi_document_is_public(gateway_server, http):
    async with http.get(gateway_server.url + "/v1/openapi.json") as r:
        assert r.status == 200 and (await r.json())["openapi"].startswith("3.")
