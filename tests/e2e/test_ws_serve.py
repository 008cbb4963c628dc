"""``nuvem-realtime serve`` as a real process: HTTP and WebSocket on one port, embedded Postgres."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest
from psycopg_pool import AsyncConnectionPool

from cdc.local_postgres import free_port
from gateway.keys import KeyStore
from gateway.migrate import migrate
from tests.e2e.conftest import request

ROOT = Path(__file__).resolve().parents[2]


def _serve(*args: str, cwd: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", *args], cwd=cwd or str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def _wait_healthy(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[str], timeout: float) -> dict:
    for _ in range(int(timeout * 10)):
        assert proc.poll() is None, f"serve exited early:\n{proc.stdout.read() if proc.stdout else ''}"
        try:
            async with http.get(url + "/healthz") as r:
                if r.status == 200:
                    return await r.json()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"serve did not become healthy within {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


async def test_serve_with_a_database_url(pg_dsn):
    await migrate(pg_dsn)
    async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        key, _ = await KeyStore(pool).create()
    port = free_port()
    proc = _serve("--database-url", pg_dsn, "--port", str(port))
    try:
        async with aiohttp.ClientSession() as http:
            health = await _wait_healthy(http, f"http://127.0.0.1:{port}", proc, 30)
            assert health["status"] == "ok"
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/v1/realtime/ws", params={"apiKey": key})
            assert (await request(ws, {"type": "ping"}))["type"] == "pong"
            reply = await request(ws, {"type": "publish", "channel": "c", "event": "e", "payload": 1})
            assert reply["offset"] == 1
            stop = asyncio.get_running_loop().run_in_executor(None, _stop, proc)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4100
            await stop
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_the_access_log_redacts_credentials_in_urls(pg_dsn, tmp_path):
    await migrate(pg_dsn)
    async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        key, _ = await KeyStore(pool).create()
    settings = tmp_path / "nuvem.toml"
    settings.write_text("access_log = true\n")
    port = free_port()
    proc = _serve("--database-url", pg_dsn, "--port", str(port), "--config", str(settings))
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_healthy(http, f"http://127.0.0.1:{port}", proc, 30)
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/v1/realtime/ws", params={"apiKey": key, "x": "1"})
            assert (await request(ws, {"type": "ping"}))["type"] == "pong"
            await ws.close()
            async with http.get(f"http://127.0.0.1:{port}/healthz", params={"token": "eyJ.secret.sig"},
                                headers={"Referer": f"https://app.example/?apiKey={key}"}):
                pass
        out = await asyncio.get_running_loop().run_in_executor(None, _stop, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "GET /v1/realtime/ws?apiKey=REDACTED&x=1" in out, out   # the connect was logged...
    assert "/healthz?token=REDACTED" in out, out
    assert key not in out and "eyJ.secret.sig" not in out, out   # ...without the credentials


async def test_serve_without_a_database_starts_the_embedded_postgres_and_stops_it():
    workdir = tempfile.mkdtemp(prefix="nuvem-serve-")
    os.chmod(workdir, 0o755)   # the embedded Postgres may run as an unprivileged user
    port = free_port()
    proc = _serve("--port", str(port), cwd=workdir)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _wait_healthy(http, f"http://127.0.0.1:{port}", proc, 90))["status"] == "ok"
        out = await asyncio.get_running_loop().run_in_executor(None, _stop, proc)
        assert "embedded Postgres" in out
        data = Path(workdir) / ".nuvem" / "pgdata"
        assert (data / "PG_VERSION").exists()          # kept for the next start
        assert not (data / "postmaster.pid").exists()  # and the server was stopped
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
