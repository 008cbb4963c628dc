"""Fixtures for end-to-end tests: a real gateway on a real port over a fresh Postgres database.

- ``gateway_server``: a running server with the default config (``.url``, ``.ws_url``, ``.app``,
  ``.dsn``, ``.config``, ``await .stop()``).
- ``start_gateway(app_kwargs=None, **config_overrides)``: start another server on the same database
  (e.g. a small send queue; ``app_kwargs`` go to create_app, e.g. a shared ``bus``).
- ``make_key(plan="free", publishable=False, channels=None, test_mode=False)``: an async function
  returning a new plaintext API key, created with KeyStore on the first server's database.
- ``ws_connect(key, **query)``: an async function opening a WebSocket to the first server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.appkeys import DB
from gateway.config import Config
from gateway.keys import KeyStore


@dataclasses.dataclass
class RunningGateway:
    app: web.Application
    runner: web.AppRunner
    config: Config
    dsn: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime/ws"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def start_gateway(pg_dsn: str) -> AsyncIterator[Any]:
    started: list[RunningGateway] = []

    async def start(*, app_kwargs: dict[str, Any] | None = None, **overrides: Any) -> RunningGateway:
        config = Config(database_url=pg_dsn, port=1, **overrides)
        app = create_app(config, **(app_kwargs or {}))
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        gw = RunningGateway(app, runner, config, pg_dsn, port)
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        await gw.stop()


@pytest.fixture
async def gateway_server(start_gateway: Any) -> RunningGateway:
    return await start_gateway()


@pytest.fixture
async def make_key(gateway_server: RunningGateway) -> Any:
    store = KeyStore(gateway_server.app[DB])

    async def make(plan: str = "free", publishable: bool = False, channels: list[str] | None = None,
                   test_mode: bool = False) -> str:
        key, _record = await store.create(plan=plan, publishable=publishable, channels=channels,
                                          test_mode=test_mode)
        return key

    return make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # limit=0: WebSockets hold their connection, and tests open more than the default 100
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def ws_connect(gateway_server: RunningGateway, http: aiohttp.ClientSession) -> Any:
    async def connect(key: str | None, *, url: str | None = None, **query: str) -> aiohttp.ClientWebSocketResponse:
        params = dict(query)
        if key is not None:
            params["apiKey"] = key
        return await http.ws_connect(url or gateway_server.ws_url, params=params, autoping=True)

    return connect


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    """The next server frame as a dict; fails the test on close or timeout."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type!r} {msg.data!r} {msg.extra!r}"
    return msg.json()


async def request(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], timeout: float = 5.0,
                  others: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Send ``frame`` with a fresh ref and return the ack/error/pong with that ref; frames that
    arrive in between are appended to ``others`` (dropped if it is None)."""
    request.counter += 1  # type: ignore[attr-defined]
    ref = request.counter  # type: ignore[attr-defined]
    await ws.send_json({**frame, "ref": ref})
    skipped = others if others is not None else []
    while True:
        f = await next_frame(ws, timeout)
        if f.get("ref") == ref and f["type"] in ("ack", "error", "pong"):
            return f
        skipped.append(f)


request.counter = 0  # type: ignore[attr-defined]


async def join(ws: aiohttp.ClientWebSocketResponse, channel: str, **options: Any) -> dict[str, Any]:
    """Join and return the ack; asserts the presence_state that follows it."""
    ack = await request(ws, {"type": "join", "channel": channel, **options})
    assert ack["type"] == "ack", ack
    state = await next_frame(ws)
    assert state["type"] == "presence_state" and state["channel"] == channel, state
    return ack
