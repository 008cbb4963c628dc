"""Bad input gets a clear error frame naming the problem; the connection stays usable."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.conftest import join, next_frame, request


async def _still_usable(ws) -> None:
    assert (await request(ws, {"type": "ping"}))["type"] == "pong"


@pytest.mark.parametrize("raw, expected", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    ('{"channel": "x"}', 'missing field "type"'),
    ('{"type": "subscribe", "channel": "x", "ref": 7}', "unknown frame type 'subscribe'"),
    ('{"type": "join", "channel": "x", "since": "yesterday", "ref": 8}', "since"),
    ('{"type": "join", "ref": 9}', "channel"),
    ('{"type": "publish", "channel": "x", "event": 5, "payload": {}}', "event"),
])
async def test_malformed_frames_get_an_error_naming_the_problem(ws_connect, make_key, raw, expected):
    ws = await ws_connect(await make_key())
    await ws.send_str(raw)
    err = await next_frame(ws)
    assert err["type"] == "error" and err["error"]["code"] == "invalid_request"
    assert expected in err["error"]["message"], err
    if '"ref": ' in raw:
        assert err["ref"] == int(raw.split('"ref": ')[1].rstrip("}"))
    await _still_usable(ws)


async def test_binary_frame_is_refused(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    await ws.send_bytes(b'{"type": "ping"}')
    err = await next_frame(ws)
    assert err["error"]["code"] == "invalid_request" and "binary" in err["error"]["message"]
    await _still_usable(ws)


async def test_bad_channel_names_are_refused_with_the_grammar(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    for name in ("", "has space", "x" * 201, "emoji-\u2603"):
        err = await request(ws, {"type": "join", "channel": name})
        assert err["error"]["code"] == "invalid_request" and "channel name" in err["error"]["message"], err
        err = await request(ws, {"type": "publish", "channel": name, "event": "e", "payload": 1})
        assert err["error"]["code"] == "invalid_request", err
    await join(ws, "fine:name-1.2@x")


async def test_oversize_frame_is_an_error_and_a_huge_one_closes(start_gateway, http, make_key):
    server = await start_gateway(max_frame_bytes=4096, hard_frame_bytes=65536)
    ws = await http.ws_connect(server.ws_url, params={"apiKey": await make_key()})
    big = '{"type": "publish", "channel": "x", "event": "e", "payload": "' + "a" * 5000 + '"}'
    await ws.send_str(big)
    err = await next_frame(ws)
    assert err["error"]["code"] == "payload_too_large" and err["error"]["limit"] == 4096
    assert "4096" in err["error"]["message"]
    await _still_usable(ws)
    # not stored: the channel is still empty
    reply = await request(ws, {"type": "publish", "channel": "x", "event": "e", "payload": "small"})
    assert reply["offset"] == 1

    await ws.send_str("a" * 70000)
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_wrong_types_in_user_and_event_length(ws_connect, make_key):
    ws = await ws_connect(await make_key())
    err = await request(ws, {"type": "publish", "channel": "x", "event": "", "payload": 1})
    assert err["error"]["code"] == "invalid_request" and err["error"]["field"] == "event"
    err = await request(ws, {"type": "join", "channel": "x", "since": 1, "last": 2})
    assert err["error"]["code"] == "invalid_request" and "either since or last" in err["error"]["message"]
    err = await request(ws, {"type": "join", "channel": "x", "since": -1})
    assert err["error"]["field"] == "since"
    await _still_usable(ws)
