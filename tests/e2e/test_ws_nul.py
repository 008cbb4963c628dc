"""Postgres cannot store the NUL character (U+0000): such a publish is refused up front as
invalid_request naming the problem, on WebSocket and REST, is not counted, and does not take
the other messages of its history batch down with it."""

from __future__ import annotations

from gateway.appkeys import CHANNELS, NODE
from gateway.channels import RateLimit
from tests.e2e.conftest import next_frame, request

_NUL_PAYLOADS = [{"text": "a\u0000b"}, {"k\u0000": 1}, ["ok", {"deep": ["x\u0000"]}], "\u0000"]


async def test_a_nul_payload_on_the_websocket_is_invalid_request_and_not_counted(gateway_server, ws_connect,
                                                                                 make_key):
    await gateway_server.app[CHANNELS].create("nul", rate_limit=RateLimit(messages=1, window_seconds=60))
    ws = await ws_connect(await make_key())
    for payload in _NUL_PAYLOADS:
        err = await request(ws, {"type": "publish", "channel": "nul", "event": "e", "payload": payload})
        assert err["type"] == "error" and err["error"]["code"] == "invalid_request", err
        assert err["error"]["field"] == "payload" and "U+0000" in err["error"]["message"], err
    err = await request(ws, {"type": "publish", "channel": "nul", "event": "e\u0000", "payload": 1})
    assert err["error"]["code"] == "invalid_request" and err["error"]["field"] == "event", err
    # an escaped backslash before "u0000" is just text, and storable
    ok = await request(ws, {"type": "publish", "channel": "nul", "event": "e", "payload": "\\u0000"})
    assert ok["type"] == "ack" and ok["offset"] == 1, ok   # the refused ones used no rate-limit slot
    page = await gateway_server.app[NODE].history("nul", limit=10)
    assert [m.payload for m in page.messages] == ["\\u0000"]


async def test_a_nul_payload_on_rest_is_400_naming_the_problem(gateway_server, http, make_key):
    key = await make_key()
    async with http.post(f"{gateway_server.url}/v1/realtime/channels/nul-rest/publish",
                         json={"event": "e", "payload": {"text": "a\u0000b"}},
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        body = await resp.json()
        assert resp.status == 400, body
    assert body["error"]["code"] == "invalid_request" and "U+0000" in body["error"]["message"], body


async def test_a_nul_payload_does_not_fail_the_other_messages_of_its_batch(gateway_server, ws_connect, make_key):
    ws = await ws_connect(await make_key())
    for i in range(10):   # pipelined without waiting: they share history batches
        await ws.send_json({"type": "publish", "ref": f"p{i}", "channel": "mixed", "event": "e",
                            "payload": "bad\u0000" if i == 5 else i})
    replies = {}
    while len(replies) < 10:
        frame = await next_frame(ws)
        replies[frame["ref"]] = frame["type"]
    assert [replies[f"p{i}"] for i in range(10)] == ["ack"] * 5 + ["error"] + ["ack"] * 4, replies
    page = await gateway_server.app[NODE].history("mixed", limit=20)
    assert [m.payload for m in page.messages] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
