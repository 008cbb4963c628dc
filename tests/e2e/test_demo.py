"""`nuvem-realtime demo`: the change stream reaches stdout and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

from cdc.local_postgres import free_port


async def test_demo_streams_table_changes_to_stdout_and_websocket(pg_dsn):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--database-url", pg_dsn, "--port", str(port),
        "--seconds", "30", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        key = None
        async with asyncio.timeout(30):
            while key is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "demo exited before printing its key"
                if line.startswith("# demo key"):
                    key = line.rsplit(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"ws://127.0.0.1:{port}/v1/realtime/ws?apiKey={key}") as ws:
                await ws.send_json({"type": "join", "ref": 1, "channel": "db:public.demo_orders"})
                received = []
                async with asyncio.timeout(20):
                    while not any(m.get("type") == "message" and m["event"] == "INSERT" for m in received):
                        received.append(json.loads((await ws.receive()).data))
        insert = next(m for m in received if m.get("type") == "message" and m["event"] == "INSERT")
        record = insert["payload"]["record"]
        assert record["status"] == "pending" and record["customer"].startswith("customer-")
        assert insert["payload"]["table"] == "demo_orders"
        changes = []
        async with asyncio.timeout(10):
            while not changes:
                line = await proc.stdout.readline()
                if line.startswith(b"{"):
                    ev = json.loads(line)
                    if ev.get("kind") == "change":
                        changes.append(ev)
        assert changes[0]["table"] == "demo_orders" and changes[0]["type"] in {"INSERT", "UPDATE", "DELETE"}
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
    assert proc.returncode == 0
