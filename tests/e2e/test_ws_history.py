"""Resume with ``since`` (no gap, no duplicate), the last N, and history_gap after retention."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import join, next_frame, request


async def _publish(ws, channel: str, n: int) -> list[int]:
    offsets = []
    for i in range(n):
        reply = await request(ws, {"type": "publish", "channel": channel, "event": "tick", "payload": {"i": i}})
        assert reply["type"] == "ack", reply
        offsets.append(reply["offset"])
    return offsets


async def test_resume_with_since_across_a_reconnect_has_no_gap_and_no_duplicate(ws_connect, make_key):
    key = await make_key()
    publisher, reader = await ws_connect(key), await ws_connect(key)
    await join(reader, "feed")
    await _publish(publisher, "feed", 3)
    seen = [(await next_frame(reader))["offset"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await reader.close()

    await _publish(publisher, "feed", 3)             # 4..6 while the reader is away

    async def keep_publishing() -> None:             # 7..36 race with the rejoin's replay
        for i in range(30):
            await publisher.send_json({"type": "publish", "channel": "feed", "event": "tick", "payload": {"i": i}})
            await asyncio.sleep(0.001)

    reader = await ws_connect(key)
    racing = asyncio.create_task(keep_publishing())
    ack = await join(reader, "feed", since=seen[-1])
    assert ack["offset"] >= 6
    await racing
    got = []
    while len(got) < 33:
        frame = await next_frame(reader)
        assert frame["type"] == "message", frame
        got.append(frame["offset"])
    assert got == list(range(4, 37))


async def test_join_with_last_n_replays_the_newest_messages_then_live(ws_connect, make_key):
    key = await make_key()
    publisher, reader = await ws_connect(key), await ws_connect(key)
    await _publish(publisher, "news", 5)
    await join(reader, "news", last=2)
    assert [(await next_frame(reader))["offset"] for _ in range(2)] == [4, 5]
    await _publish(publisher, "news", 1)
    live = await next_frame(reader)
    assert live["offset"] == 6 and live["payload"] == {"i": 0}


async def test_since_older_than_retention_is_a_history_gap_with_the_offset_to_resume_from(
        start_gateway, http, make_key):
    server = await start_gateway(history_max_count=3)
    key = await make_key()
    ws = await http.ws_connect(server.ws_url, params={"apiKey": key})
    await _publish(ws, "short", 6)                   # retention keeps 4, 5, 6
    err = await request(ws, {"type": "join", "channel": "short", "since": 1})
    assert err["type"] == "error"
    assert err["error"]["code"] == "history_gap"
    assert err["error"]["resumeFrom"] == 3 and err["error"]["earliestOffset"] == 4
    assert "since=3" in err["error"]["message"]

    await join(ws, "short", since=err["error"]["resumeFrom"])
    assert [(await next_frame(ws))["offset"] for _ in range(3)] == [4, 5, 6]


async def test_since_at_the_latest_offset_replays_nothing(ws_connect, make_key):
    key = await make_key()
    ws, publisher = await ws_connect(key), await ws_connect(key)
    await _publish(publisher, "quiet", 2)
    await join(ws, "quiet", since=2)
    await _publish(publisher, "quiet", 1)
    # the first thing after the join is the new live message, not a replay
    assert (await next_frame(ws))["offset"] == 3


async def test_a_long_replay_to_a_client_that_reads_is_paced_not_a_slow_consumer(start_gateway, http, make_key):
    server = await start_gateway(send_queue_max_messages=20, send_queue_max_bytes=1 << 20)
    key = await make_key()
    publisher = await http.ws_connect(server.ws_url, params={"apiKey": key})
    blob = "x" * 30000
    for i in range(400):   # ~12 MB of history: far more than the socket buffers plus a 20-write queue
        await publisher.send_json({"type": "publish", "ref": i, "channel": "backlog", "event": "e",
                                   "payload": {"i": i, "blob": blob}})
    for _ in range(400):
        assert (await next_frame(publisher))["type"] == "ack"
    reader = await http.ws_connect(server.ws_url, params={"apiKey": key})
    await join(reader, "backlog", since=0)
    got = [(await next_frame(reader))["payload"]["i"] for _ in range(400)]
    assert got == list(range(400))
    assert (await request(reader, {"type": "ping"}))["type"] == "pong"   # still connected


async def test_since_past_the_latest_offset_is_refused_not_a_silent_drop(ws_connect, make_key):
    key = await make_key()
    publisher, reader = await ws_connect(key), await ws_connect(key)
    await _publish(publisher, "ahead", 2)
    err = await request(reader, {"type": "join", "channel": "ahead", "since": 50})
    assert err["type"] == "error" and err["error"]["code"] == "invalid_request", err
    assert err["error"]["field"] == "since" and err["error"]["latestOffset"] == 2, err
    await join(reader, "ahead", since=2)             # not joined by the refusal: joining works
    await _publish(publisher, "ahead", 1)
    assert (await next_frame(reader))["offset"] == 3
