"""``nuvem-realtime demo``: the service on the embedded Postgres, with a live change stream.

It starts the gateway (HTTP + WebSocket), creates a demo table ``public.demo_orders``, writes to
it every second, streams its changes through the CDC worker, prints each one as a JSON line and
publishes it on the channel ``db:public.demo_orders`` (event = INSERT/UPDATE/DELETE), so a
WebSocket client joined to that channel sees the same stream. Ctrl-C stops everything.
Until the database subscriptions of the next milestone land, this is the end-to-end preview.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys

import psycopg
from aiohttp import web

from cdc.decoding import event_to_json_dict, render_event_json
from cdc.events import ChangeEvent, Transaction
from cdc.worker import ReplicationWorker
from gateway.app import create_app
from gateway.appkeys import DB, NODE
from gateway.config import Config
from gateway.keys import KeyStore

DEMO_TABLE = "public.demo_orders"
DEMO_CHANNEL = "db:public.demo_orders"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None, help="Postgres URL (default: $NUVEM_DATABASE_URL, "
                        "else the embedded Postgres in ./.nuvem/pgdata)")
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 4000)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: run until Ctrl-C)")


class _PublishingSink:
    """Prints each change and publishes it on the demo channel before the slot is confirmed."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def deliver(self, txn: Transaction) -> None:
        for line in render_event_json(txn):
            sys.stdout.write(line.decode() + "\n")
        sys.stdout.flush()
        for ev in txn.events:
            if isinstance(ev, ChangeEvent) and f"{ev.schema}.{ev.table}" == DEMO_TABLE:
                await self.app[NODE].publish(DEMO_CHANNEL, ev.type, event_to_json_dict(ev), principal=None,
                                             publisher="cdc")


async def _write_orders(dsn: str) -> None:
    statuses = ["pending", "paid", "shipped"]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        n = 0
        while True:
            n += 1
            await conn.execute(f"INSERT INTO {DEMO_TABLE} (customer, amount, status) VALUES (%s, %s, 'pending')",
                               (f"customer-{random.randint(1, 20)}", round(random.uniform(5, 500), 2)))
            if n % 2 == 0:
                await conn.execute(f"UPDATE {DEMO_TABLE} SET status = %s WHERE id = (SELECT min(id) FROM {DEMO_TABLE}"
                                   " WHERE status = 'pending')", (random.choice(statuses[1:]),))
            if n % 5 == 0:
                await conn.execute(f"DELETE FROM {DEMO_TABLE} WHERE id = (SELECT min(id) FROM {DEMO_TABLE})")
            await asyncio.sleep(1.0)


async def _main(config: Config, seconds: float | None) -> None:
    async with await psycopg.AsyncConnection.connect(config.database_url, autocommit=True) as conn:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {DEMO_TABLE} (id bigserial PRIMARY KEY, customer text NOT NULL,"
                           " amount numeric(10,2) NOT NULL, status text NOT NULL, created_at timestamptz DEFAULT now())")
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    key, _ = await KeyStore(app[DB]).create(plan="free", publishable=True, channels=["db:*", "chat:*"])
    print(f"# gateway on http://{config.host}:{config.port}  (WebSocket /v1/realtime/ws)", file=sys.stderr)
    print(f"# demo key (publishable): {key}", file=sys.stderr)
    print(f"# join channel {DEMO_CHANNEL!r} to receive the changes printed below", file=sys.stderr)
    worker = ReplicationWorker(config.database_url, _PublishingSink(app), slot="nuvem_demo",
                               publication="nuvem_demo", tables=[DEMO_TABLE], status_interval=2.0)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(_write_orders(config.database_url))]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        waiters = [asyncio.create_task(stop.wait()), *tasks]
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t in tasks and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        await worker.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    config = Config.load({k: getattr(args, k, None) for k in ("database_url", "host", "port")})
    embedded = None
    if not config.database_url:
        from cdc.local_postgres import LocalPostgres

        embedded = LocalPostgres(data_dir="./.nuvem/pgdata", keep=True).start()
        print(f"# no database URL given: embedded Postgres in {embedded.data_dir} ({embedded.dsn})", file=sys.stderr)
        config = config.replace(database_url=embedded.dsn)
    try:
        asyncio.run(_main(config, args.seconds))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
