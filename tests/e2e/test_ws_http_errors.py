"""HTTP errors raised by aiohttp itself (unknown path, wrong method) come back in our JSON shape."""

from __future__ import annotations


async def test_unknown_path_is_json_not_found(gateway_server, http):
    async with http.get(f"{gateway_server.url}/v1/nope") as resp:
        assert resp.status == 404 and resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"]["code"] == "not_found" and "/v1/nope" in body["error"]["message"], body


async def test_wrong_method_is_json_405_naming_the_allowed_methods(gateway_server, http):
    async with http.delete(f"{gateway_server.url}/healthz") as resp:
        assert resp.status == 405 and resp.content_type == "application/json"
        assert "GET" in resp.headers["Allow"]
        body = await resp.json()
    assert body["error"]["code"] == "invalid_request", body
    assert "DELETE" in body["error"]["message"] and "GET" in body["error"]["message"], body
    assert "GET" in body["error"]["allowed"]
    # a WebSocket URL fetched with POST
    async with http.post(gateway_server.ws_url.replace("ws://", "http://")) as resp:
        assert resp.status == 405 and (await resp.json())["error"]["code"] == "invalid_request"
