"""``nuvem-realtime tail``: print the change stream as JSON lines, like pg_recvlogical.

    nuvem-realtime tail --database-url URL [--tables orders,items] [--format events|wal2json]
                        [--limit N] [--slot NAME] [--temporary] [--plugin pgoutput|wal2json]
                        [--publication NAME]

stdout gets one JSON object per line, flushed after each transaction; logs and warnings go to
stderr. ``--limit N`` stops after N row changes (a transaction cut short is not confirmed, so a
persistent slot streams it again next time). ``--temporary`` uses a temporary slot and, unless
``--publication`` names an existing one, a publication of its own that is dropped at exit: nothing
is left behind. Exit status: 0 done (limit, Ctrl-C, SIGTERM, closed pipe), 1 a CDC error (the
message names cause and fix), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any, BinaryIO

from cdc.errors import CDCError

_FORMATS = ("events", "wal2json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("NUVEM_DATABASE_URL"),
                        help="Postgres URL (default: $NUVEM_DATABASE_URL); the role needs REPLICATION")
    parser.add_argument("--tables", default=None,
                        help="comma-separated tables to watch (schema.table or table); default: all")
    parser.add_argument("--format", choices=_FORMATS, default="events",
                        help="events: our change events; wal2json: what wal2json format-version 2 prints")
    parser.add_argument("--limit", type=int, default=0, help="stop after N row changes (0: no limit)")
    parser.add_argument("--slot", default=None,
                        help="replication slot (default: nuvem_tail, or nuvem_tail_<pid> with --temporary)")
    parser.add_argument("--temporary", action="store_true",
                        help="temporary slot (and publication): nothing is left behind at exit")
    parser.add_argument("--plugin", choices=("pgoutput", "wal2json"), default="pgoutput",
                        help="logical decoding plugin (wal2json needs no publication, only REPLICATION)")
    parser.add_argument("--publication", default=None,
                        help="pgoutput publication (default: nuvem_tail, or nuvem_tail_<pid> with --temporary)")
    parser.add_argument("--status-interval", type=float, default=10.0, help=argparse.SUPPRESS)


_PRIMARY_KEYS_SQL = (
    "SELECT n.nspname || '.' || c.relname,"
    "  coalesce((SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
    "    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)"
    "    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
    "    WHERE i.indrelid = c.oid AND i.indisprimary), '{}')"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')")


async def primary_keys(dsn: str) -> dict[str, list[str]]:
    """Every user table ("schema.table") -> its primary key columns in key order ([] if none),
    from pg_index: what the wal2json plugin prints as ``pk``, which the replication stream does
    not carry when the replica identity is not the primary key (FULL, USING INDEX)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (await conn.execute(_PRIMARY_KEYS_SQL)).fetchall()
    return {table: list(cols) for table, cols in rows}


class _LineSink:
    """Writes each transaction's lines, flushes per transaction, stops at the limit.

    For ``--format wal2json`` it reads the primary keys from the catalog (``primary_keys``) at
    the first transaction and again when a table it does not know, or a schema change, shows up.
    """

    def __init__(self, out: BinaryIO, fmt: str, limit: int, dsn: str | None = None) -> None:
        self.out = out
        self.fmt = fmt
        self.limit = limit
        self.dsn = dsn
        self.changes = 0
        self.worker: Any = None
        self.primary_keys: dict[str, list[str]] | None = None

    async def deliver(self, txn: Any) -> None:
        from cdc.events import ChangeEvent
        from cdc.worker import StopStreaming

        cut = False
        if self.limit:
            left = self.limit - self.changes
            kept, n = [], 0
            for ev in txn.events:
                if isinstance(ev, ChangeEvent):
                    if n == left:
                        cut = True
                        break
                    n += 1
                kept.append(ev)
            if cut:
                import msgspec
                txn = msgspec.structs.replace(txn, events=kept)
            self.changes += n
        else:
            self.changes += sum(1 for ev in txn.events if isinstance(ev, ChangeEvent))
        if self.fmt == "wal2json" and self.dsn is not None and self._keys_stale(txn):
            self.primary_keys = await primary_keys(self.dsn)
        try:
            self.out.write(b"".join(line + b"\n" for line in self._render(txn)))
            self.out.flush()
        except BrokenPipeError as e:  # `tail ... | head`: the reader is gone
            raise StopStreaming() from e
        if cut:
            raise StopStreaming()  # not confirmed: the rest of this transaction was not printed
        if self.limit and self.changes >= self.limit:
            self.worker.request_stop()

    def _keys_stale(self, txn: Any) -> bool:
        from cdc.events import SchemaChangeEvent

        if self.primary_keys is None:
            return True
        known = self.primary_keys
        return any(type(ev) is SchemaChangeEvent or f"{ev.schema}.{ev.table}" not in known
                   for ev in txn.events)

    def _render(self, txn: Any) -> list[bytes]:
        from cdc.decoding import render_event_json, render_wal2json

        if self.fmt == "events":
            return render_event_json(txn)
        schemas = getattr(self.worker.decoder, "type_schemas", None) if self.worker else None
        return render_wal2json(txn, primary_keys=self.primary_keys, type_schemas=schemas)


def _configure_logging() -> None:
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def run(args: argparse.Namespace) -> int:
    if not args.database_url:
        print("nuvem-realtime tail: error: no database URL: pass --database-url or set NUVEM_DATABASE_URL",
              file=sys.stderr)
        return 2
    if args.limit < 0:
        print("nuvem-realtime tail: error: --limit must be >= 0", file=sys.stderr)
        return 2
    _configure_logging()
    try:
        return asyncio.run(_tail(args))
    except CDCError as e:
        print(f"nuvem-realtime tail: error: {e.message}\nhint: {e.hint}", file=sys.stderr)
        return 1


async def _tail(args: argparse.Namespace) -> int:
    from cdc.worker import ReplicationWorker, drop_publication

    suffix = f"_{os.getpid()}" if args.temporary else ""
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    publication = args.publication or f"nuvem_tail{suffix}"
    sink = _LineSink(sys.stdout.buffer, args.format, args.limit, args.database_url)
    worker = ReplicationWorker(
        args.database_url, sink, slot=args.slot or f"nuvem_tail{suffix}", publication=publication,
        plugin=args.plugin, tables=tables, temporary=args.temporary,
        status_interval=args.status_interval)
    sink.worker = worker
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        await worker.run()
    finally:
        if args.temporary and worker.created_publication:
            with contextlib.suppress(Exception):
                await drop_publication(args.database_url, publication)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
