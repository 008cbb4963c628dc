"""Two nodes on one database sharing a broker bus and a presence store: nothing assumes one process."""

from __future__ import annotations

import asyncio

from gateway.broker_memory import MemoryBus
from gateway.presence_memory import MemoryPresence
from tests.e2e.conftest import join, next_frame, request


async def test_messages_presence_and_offsets_cross_nodes(start_gateway, http, make_key):
    shared = {"bus": MemoryBus(), "presence": MemoryPresence()}
    node_a = await start_gateway(app_kwargs=shared)
    node_b = await start_gateway(app_kwargs=shared)
    key = await make_key()
    a = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    b = await http.ws_connect(node_b.ws_url, params={"apiKey": key})
    await join(a, "room")
    await join(b, "room")

    # publishes on both nodes at once: one offset sequence, every subscriber sees all, in order
    pa = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    pb = await http.ws_connect(node_b.ws_url, params={"apiKey": key})
    for i in range(10):
        for p in (pa, pb):
            await p.send_json({"type": "publish", "ref": i, "channel": "room", "event": "e", "payload": i})

    async def acks(p):
        return [(await next_frame(p))["offset"] for _ in range(10)]

    offsets = [o for got in await asyncio.gather(acks(pa), acks(pb)) for o in got]
    assert sorted(offsets) == list(range(1, 21))
    for ws in (a, b):
        assert [(await next_frame(ws))["offset"] for _ in range(20)] == list(range(1, 21))

    await request(a, {"type": "track", "channel": "room", "user": {"userId": "u1"}})
    assert await next_frame(b) == {"type": "presence_diff", "channel": "room", "event": "join", "user": {"userId": "u1"}}
    assert (await request(b, {"type": "presence", "channel": "room"}))["presence"] == [{"userId": "u1"}]


async def _two_nodes_and_a_cut_off_one(start_gateway, http, make_key):
    """Nodes A and B share a bus; a third commits to the same history but its broker reaches no
    one. Returns node A, node B, a key, a client joined to "room" on A, a client on the cut-off node."""
    bus = MemoryBus()
    node_a = await start_gateway(app_kwargs={"bus": bus})
    node_b = await start_gateway(app_kwargs={"bus": bus})
    cut_off = await start_gateway()
    key = await make_key()
    on_a = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    await join(on_a, "room")
    return node_a, node_b, key, on_a, await http.ws_connect(cut_off.ws_url, params={"apiKey": key})


async def test_a_message_that_never_reaches_a_node_is_filled_in_from_history(start_gateway, http, make_key):
    node_a, node_b, key, sub, lost = await _two_nodes_and_a_cut_off_one(start_gateway, http, make_key)
    assert (await request(lost, {"type": "publish", "channel": "room", "event": "e", "payload": "lost"}))["offset"] == 1
    pb = await http.ws_connect(node_b.ws_url, params={"apiKey": key})
    assert (await request(pb, {"type": "publish", "channel": "room", "event": "e", "payload": "late"}))["offset"] == 2
    first, second = await next_frame(sub), await next_frame(sub)
    assert (first["offset"], first["payload"]) == (1, "lost")
    assert (second["offset"], second["payload"]) == (2, "late")


async def test_a_message_replayed_to_a_joiner_is_not_sent_again_when_it_arrives_live(start_gateway, http, make_key):
    """The since seam: offset 1 is committed (so the join's replay reads it) but reaches this
    node's subscribers only later (filled from history): the joiner gets it once."""
    node_a, node_b, key, watcher, lost = await _two_nodes_and_a_cut_off_one(start_gateway, http, make_key)
    assert (await request(lost, {"type": "publish", "channel": "room", "event": "e", "payload": 1}))["offset"] == 1
    joiner = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    await join(joiner, "room", since=0)              # replays offset 1 from history
    pb = await http.ws_connect(node_b.ws_url, params={"apiKey": key})
    for i in (2, 3):                                 # 2 makes node A fill 1 from history, live
        assert (await request(pb, {"type": "publish", "channel": "room", "event": "e", "payload": i}))["offset"] == i
    assert [(await next_frame(watcher))["offset"] for _ in range(3)] == [1, 2, 3]
    assert [(await next_frame(joiner))["offset"] for _ in range(3)] == [1, 2, 3]


async def test_a_hole_is_not_skipped_when_reading_history_fails_for_a_moment(start_gateway, http, make_key):
    import psycopg

    node_a, node_b, key, sub, lost = await _two_nodes_and_a_cut_off_one(start_gateway, http, make_key)
    pb = await http.ws_connect(node_b.ws_url, params={"apiKey": key})
    assert (await request(lost, {"type": "publish", "channel": "room", "event": "e", "payload": 1}))["offset"] == 1
    async with await psycopg.AsyncConnection.connect(node_a.dsn, autocommit=True) as conn:
        assert (await request(pb, {"type": "publish", "channel": "room", "event": "e", "payload": 2}))["offset"] == 2
        # node A holds 2 and will read 1 from history after ~0.5 s: make that read fail
        await conn.execute("ALTER TABLE nuvem_realtime.history RENAME TO history_away")
        await asyncio.sleep(0.9)
        await conn.execute("ALTER TABLE nuvem_realtime.history_away RENAME TO history")
    got = [await next_frame(sub) for _ in range(2)]
    assert [(f["offset"], f["payload"]) for f in got] == [(1, 1), (2, 2)]


async def test_the_presence_of_a_dead_node_expires_with_a_leave(start_gateway, http, make_key):
    presence = MemoryPresence(ttl=0.6)
    node_a = await start_gateway(presence_ttl=0.6, app_kwargs={"bus": MemoryBus(), "presence": presence})
    key = await make_key()
    watcher = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    alive = await http.ws_connect(node_a.ws_url, params={"apiKey": key})
    await join(watcher, "room")
    await join(alive, "room")
    await request(alive, {"type": "track", "channel": "room", "user": {"userId": "alive"}})
    assert (await next_frame(watcher))["user"] == {"userId": "alive"}
    # tracked by a node that then died: nobody refreshes its entry
    await presence.track("room", "dead-node:1", {"userId": "ghost"})
    diff = await next_frame(watcher, timeout=3)
    assert diff == {"type": "presence_diff", "channel": "room", "event": "leave", "user": {"userId": "ghost"}}
    await asyncio.sleep(1.0)                         # the live node's entry is refreshed, not expired
    others: list[dict] = []
    reply = await request(watcher, {"type": "presence", "channel": "room"}, others=others)
    assert reply["presence"] == [{"userId": "alive"}] and others == []   # and no leave for it
