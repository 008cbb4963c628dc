"""Every REST channel endpoint over real HTTP against a running gateway."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from tests.e2e.conftest import join, next_frame

CHANNELS = "/v1/realtime/channels"


@pytest.fixture
async def api(gateway_server, http, make_key):
    key = await make_key()

    async def call(method: str, path: str, *, json=None, data=None, params=None, key_: str | None = key):
        headers = {"Authorization": f"Bearer {key_}"} if key_ else {}
        async with http.request(method, gateway_server.url + path, json=json, data=data, params=params,
                                headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body, r.headers

    call.key = key
    return call


async def test_create_channel_returns_it_with_its_id(api):
    status, body, _ = await api("POST", CHANNELS, json={
        "name": "notifications:usuarios", "maxConnections": 1000, "rateLimit": {"messages": 100, "windowSeconds": 60}})
    assert status == 201, body
    assert body["id"].startswith("ch_") and body["name"] == "notifications:usuarios"
    assert body["maxConnections"] == 1000 and body["rateLimit"] == {"messages": 100, "windowSeconds": 60}
    assert body["implicit"] is False and body["connections"] == 0 and body["createdAt"]
    status, again, _ = await api("POST", CHANNELS, json={"name": "notifications:usuarios"})
    assert status == 409 and again["error"]["code"] == "conflict"


@pytest.mark.parametrize("body, field, words", [
    ({"name": "a", "maxConnection": 5}, "maxConnection", "unknown field"),
    ({"name": "a", "maxConnections": "5"}, "maxConnections", "Expected `int | null`, got `str`"),
    ({"name": "a", "maxConnections": 0}, "maxConnections", ">= 1"),
    ({"name": "a", "maxConnections": 2**31}, "maxConnections", "<= 2147483647"),
    ({"name": "a", "historyMaxCount": 10**12}, "historyMaxCount", "<= 2147483647"),
    ({"name": "a", "rateLimit": {"messages": 2**40, "windowSeconds": 1}}, "rateLimit.messages", "<= 2147483647"),
    ({"name": "a", "rateLimit": {"messages": 10}}, "rateLimit.windowSeconds", "missing required field"),
    ({"name": "a", "rateLimit": {"messages": 10, "windowSeconds": 0}}, "rateLimit.windowSeconds", "> 0"),
    ({"maxConnections": 5}, "name", "missing required field"),
    ({"name": "chat room"}, "name", "matching regex"),
    ([1, 2], None, "Expected `object`, got `array`"),
])
async def test_bad_create_bodies_are_400_naming_the_field(api, body, field, words):
    status, resp, _ = await api("POST", CHANNELS, json=body)
    assert status == 400, resp
    assert resp["error"]["code"] == "invalid_request" and words in resp["error"]["message"]
    assert resp["error"].get("field") == field
    _, listed, _ = await api("GET", CHANNELS)
    assert listed["channels"] == []  # nothing half-created


async def test_non_json_and_empty_bodies_are_400(api):
    for data in (b"{not json", b""):
        status, resp, _ = await api("POST", CHANNELS, data=data)
        assert status == 400 and resp["error"]["code"] == "invalid_request"
        assert "JSON" in resp["error"]["message"]


async def test_list_merges_created_and_active_channels_with_counts(api, ws_connect):
    await api("POST", CHANNELS, json={"name": "orders:live", "maxConnections": 10})
    a, b = await ws_connect(api.key), await ws_connect(api.key)
    await join(a, "chat:sala-principal")
    await join(b, "chat:sala-principal")
    await join(b, "orders:live")
    await b.send_json({"type": "track", "channel": "chat:sala-principal", "user": {"userId": "usr_abc"}, "ref": 1})
    while (await next_frame(b)).get("type") != "ack":
        pass
    status, body, _ = await api("GET", CHANNELS)
    assert status == 200
    by_name = {c["name"]: c for c in body["channels"]}
    assert set(by_name) == {"chat:sala-principal", "orders:live"}
    chat, orders = by_name["chat:sala-principal"], by_name["orders:live"]
    assert chat["implicit"] is True and chat["id"] is None and chat["connections"] == 2 and chat["presence"] == 1
    assert orders["implicit"] is False and orders["connections"] == 1 and orders["maxConnections"] == 10
    await a.close()
    await b.close()


async def test_get_by_id_by_encoded_name_and_implicit_with_activity(api):
    _, created, _ = await api("POST", CHANNELS, json={"name": "notifications:usuarios@x.y"})
    for ref in (created["id"], quote("notifications:usuarios@x.y", safe="")):
        status, body, _ = await api("GET", f"{CHANNELS}/{ref}")
        assert status == 200 and body["id"] == created["id"], (ref, body)
    status, body, _ = await api("GET", f"{CHANNELS}/never:used")
    assert status == 404 and body["error"]["code"] == "channel_not_found" and "never:used" in body["error"]["message"]
    status, body, _ = await api("GET", f"{CHANNELS}/{quote('bad name', safe='')}")
    assert status == 404 and body["error"]["code"] == "channel_not_found"
    await api("POST", f"{CHANNELS}/used:once/publish", json={"event": "e", "payload": 1})
    status, body, _ = await api("GET", f"{CHANNELS}/used:once")
    assert status == 200 and body["implicit"] is True and body["name"] == "used:once"


async def test_patch_changes_only_what_is_sent_and_null_clears(api):
    _, created, _ = await api("POST", CHANNELS, json={
        "name": "c1", "maxConnections": 5, "rateLimit": {"messages": 1, "windowSeconds": 1}})
    status, body, _ = await api("PATCH", f"{CHANNELS}/c1", json={"rateLimit": None, "historyMaxCount": 7})
    assert status == 200, body
    assert body["rateLimit"] is None and body["maxConnections"] == 5 and body["historyMaxCount"] == 7
    _, fetched, _ = await api("GET", f"{CHANNELS}/{created['id']}")
    assert fetched == body
    status, body, _ = await api("PATCH", f"{CHANNELS}/c1", json={"name": "c2"})
    assert status == 400 and body["error"]["field"] == "name"
    status, body, _ = await api("PATCH", f"{CHANNELS}/nope", json={"maxConnections": 1})
    assert status == 404 and body["error"]["code"] == "channel_not_found"


async def test_delete_then_404(api):
    _, created, _ = await api("POST", CHANNELS, json={"name": "tmp"})
    status, body, _ = await api("DELETE", f"{CHANNELS}/{created['id']}")
    assert status == 204
    status, body, _ = await api("DELETE", f"{CHANNELS}/{created['id']}")
    assert status == 404 and body["error"]["code"] == "channel_not_found"
    status, body, _ = await api("DELETE", f"{CHANNELS}/tmp")
    assert status == 404
    # the old id names no channel any more: not an implicit channel called "ch_..."
    for method, path, json in (("POST", f"{CHANNELS}/{created['id']}/publish", {"event": "e"}),
                               ("GET", f"{CHANNELS}/{created['id']}/history", None),
                               ("GET", f"{CHANNELS}/{created['id']}", None)):
        status, body, _ = await api(method, path, json=json)
        assert status == 404 and body["error"]["code"] == "channel_not_found", (path, body)
        assert created["id"] in body["error"]["message"]
    status, _, _ = await api("POST", CHANNELS, json={"name": "tmp"})
    assert status == 201  # the name is free again


async def test_names_shaped_like_channel_ids_are_reserved(api):
    status, body, _ = await api("POST", CHANNELS, json={"name": "ch_0123456789abcdef"})
    assert status == 400 and body["error"]["field"] == "name" and "reserved" in body["error"]["message"], body
    status, body, _ = await api("POST", CHANNELS, json={"name": "ch_general"})
    assert status == 201, body  # only the exact id shape is reserved


async def test_rest_publish_reaches_websocket_subscribers_and_history(api, ws_connect):
    ws = await ws_connect(api.key)
    await join(ws, "orders:live")
    offsets = []
    for i in range(3):
        status, body, _ = await api("POST", f"{CHANNELS}/orders:live/publish",
                                    json={"event": "new_order", "payload": {"orderId": f"rec_{i}"}})
        assert status == 200, body
        assert body["channel"] == "orders:live" and body["event"] == "new_order" and body["publishedAt"]
        offsets.append(body["offset"])
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    got = [await next_frame(ws) for _ in range(3)]
    assert [(f["type"], f["offset"], f["payload"]["orderId"]) for f in got] == [
        ("message", o, f"rec_{i}") for i, o in enumerate(offsets)]
    status, page, _ = await api("GET", f"{CHANNELS}/orders:live/history", params={"limit": "50"})
    assert status == 200
    assert [(m["offset"], m["event"], m["payload"]) for m in page["messages"]] == [
        (o, "new_order", {"orderId": f"rec_{i}"}) for i, o in enumerate(offsets)]
    assert page["latestOffset"] == offsets[-1]
    await ws.close()


async def test_publish_by_channel_id_and_bad_bodies(api):
    _, created, _ = await api("POST", CHANNELS, json={"name": "by:id"})
    status, body, _ = await api("POST", f"{CHANNELS}/{created['id']}/publish", json={"event": "e"})
    assert status == 200 and body["channel"] == "by:id" and body["offset"] == 1
    for bad, field in [({"payload": 1}, "event"), ({"event": 5}, "event"), ({"event": "e", "extra": 1}, "extra"),
                       ({"event": ""}, "event")]:
        status, resp, _ = await api("POST", f"{CHANNELS}/by:id/publish", json=bad)
        assert status == 400 and resp["error"]["field"] == field, resp
    status, resp, _ = await api("POST", f"{CHANNELS}/{quote('no spaces', safe='')}/publish", json={"event": "e"})
    assert status == 400 and "invalid channel name" in resp["error"]["message"]
    _, page, _ = await api("GET", f"{CHANNELS}/by:id/history")
    assert [m["offset"] for m in page["messages"]] == [1]  # the bad ones were not stored


async def test_history_paging_with_before_and_since(api):
    for i in range(7):
        await api("POST", f"{CHANNELS}/paged/publish", json={"event": "n", "payload": i})
    status, newest, _ = await api("GET", f"{CHANNELS}/paged/history", params={"limit": "3"})
    assert status == 200
    assert [m["payload"] for m in newest["messages"]] == [4, 5, 6] and newest["nextBefore"] == 5
    _, older, _ = await api("GET", f"{CHANNELS}/paged/history", params={"limit": "3", "before": "5"})
    assert [m["payload"] for m in older["messages"]] == [1, 2, 3]
    _, oldest, _ = await api("GET", f"{CHANNELS}/paged/history", params={"limit": "3", "before": "2"})
    assert [m["payload"] for m in oldest["messages"]] == [0] and oldest["nextBefore"] is None
    _, since, _ = await api("GET", f"{CHANNELS}/paged/history", params={"since": "5"})
    assert [m["offset"] for m in since["messages"]] == [6, 7]
    _, empty, _ = await api("GET", f"{CHANNELS}/never:published/history")
    assert empty["messages"] == [] and empty["latestOffset"] == 0


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"before": "-1"}, "before"), ({"since": "x"}, "since"), ({"sinse": "1"}, "sinse"),
    ({"since": str(2**63)}, "since"), ([("limit", "5"), ("limit", "7")], "limit"),
    ({"before": "3", "since": "1"}, "before"),
])
async def test_bad_history_queries_are_400_naming_the_parameter(api, params, field):
    status, body, _ = await api("GET", f"{CHANNELS}/paged/history", params=params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request" and body["error"]["field"] == field


async def test_concurrent_rest_publishes_get_distinct_offsets(api):
    results = await asyncio.gather(*(api("POST", f"{CHANNELS}/busy/publish", json={"event": "e", "payload": i})
                                     for i in range(20)))
    assert all(status == 200 for status, _, _ in results)
    assert sorted(body["offset"] for _, body, _ in results) == list(range(1, 21))


async def test_body_over_the_size_limit_is_413_and_not_published(api):
    status, body, _ = await api("POST", f"{CHANNELS}/big/publish",
                                json={"event": "e", "payload": "x" * (1024 * 1024 + 10)})
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    _, page, _ = await api("GET", f"{CHANNELS}/big/history")
    assert page["messages"] == []
