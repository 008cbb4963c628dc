"""The replication worker: Postgres WAL -> decoded transactions -> a ChangeSink, at-least-once.

Explicit steps (``run()``):

1. check the server: ``wal_level=logical``, the role has REPLICATION, the watched tables exist;
   warn about tables whose replica identity gives UPDATE/DELETE no old values;
2. ensure the publication (pgoutput only; FOR ALL TABLES, or the given tables);
3. ensure the slot (persistent, created when missing; or temporary, per connection);
4. stream from the slot's confirmed position, decode, ``sink.deliver(txn)`` each transaction;
5. confirm: the slot's confirmed_flush_lsn moves to a transaction's end only after ``deliver``
   returned for it and for everything before it. When a stretch of WAL holds nothing to deliver
   (idle, unwatched tables, filtered or empty transactions) the keepalive's position is confirmed
   once no transaction is open, so the slot never pins WAL.

Faults: a dropped connection or a Postgres restart -> reconnect with exponential backoff (capped at
``max_backoff``) and resume from the last confirmed LSN; a sink that raises -> the same (the
undelivered transaction is streamed again). Nothing unconfirmed is lost; a transaction delivered but
not yet confirmed may be delivered twice. Configuration problems found at start (``cdc.errors``)
are raised from ``run()``; once streaming, only a fatal error (e.g. the slot was dropped) ends it.

A temporary slot lives only as long as its connection: after a reconnect it is created anew, and
changes committed while disconnected are not seen (tail's ``--temporary`` trade-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from typing import TYPE_CHECKING, Any

import psycopg
import structlog
from psycopg import sql

from cdc.errors import (CDCError, ConnectionFailed, ConnectionLost, InvalidArgument,
                        MissingReplicationPrivilege, PublicationNotFound, PublicationPermissionDenied,
                        ReplicaIdentityWarning, SlotInUse, SlotPluginMismatch, TableNotFound,
                        WalLevelNotLogical)
from cdc.events import parse_lsn
from cdc.replication import ReplicationConnection, XLogData, check_slot_name

if TYPE_CHECKING:
    from cdc.events import Transaction
    from cdc.sink import ChangeSink

__all__ = ["ReplicationWorker", "StopStreaming", "drop_publication"]

log = structlog.get_logger("cdc.worker")

_PLUGINS = ("pgoutput", "wal2json")
_SLOT_RELEASE_GRACE = 1.5  # s to wait at start for a slot whose previous owner is exiting
_FIRST_BACKOFF = 0.1


class StopStreaming(Exception):
    """Raise from ``ChangeSink.deliver`` to stop the worker without confirming that transaction
    (``tail --limit`` cutting a transaction short). ``run()`` then returns normally."""


class _SinkFailed(Exception):
    """``deliver`` raised (the cause): retried by reconnecting from the confirmed LSN."""


class ReplicationWorker:
    """Streams one database's changes into ``sink``. ``confirmed_lsn``: last LSN confirmed to
    Postgres. ``warnings``: replica identity problems found at start. ``created_publication``:
    True when this worker created its publication (``drop_publication`` undoes it).
    ``started``: an Event set while the stream is up. ``reconnects``: retries so far."""

    def __init__(self, dsn: str, sink: ChangeSink, *, slot: str = "nuvem_realtime",
                 publication: str = "nuvem_realtime", plugin: str = "pgoutput",
                 tables: list[str] | None = None, temporary: bool = False,
                 create_publication: bool = True, status_interval: float = 10.0,
                 max_backoff: float = 30.0, protocol_version: int = 1) -> None:
        if plugin not in _PLUGINS:
            raise InvalidArgument(f"unknown output plugin {plugin!r}",
                                  hint=f"use one of: {', '.join(_PLUGINS)}")
        if status_interval <= 0 or max_backoff <= 0:
            raise InvalidArgument("status_interval and max_backoff must be > 0",
                                  hint="status_interval ~10 s (below wal_sender_timeout), max_backoff ~30 s")
        self.dsn = dsn
        self.sink = sink
        self.slot = check_slot_name(slot)
        self.publication = publication
        self.plugin = plugin
        self.tables = [t.strip() for t in tables if t.strip()] if tables else None
        self.temporary = temporary
        self.create_publication = create_publication
        self.status_interval = status_interval
        self.max_backoff = max_backoff
        self.protocol_version = protocol_version  # pgoutput 2 streams large in-progress transactions

        self.confirmed_lsn = 0
        self.warnings: list[ReplicaIdentityWarning] = []
        self.created_publication = False
        self.reconnects = 0
        self.started = asyncio.Event()  # set while streaming (after START_REPLICATION succeeded)
        self._flushable = 0  # highest LSN safe to confirm: everything before it was delivered
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        self._rc: ReplicationConnection | None = None
        self._last_pid: int | None = None
        self._resolved_tables: list[str] | None = None
        self._started_streaming = False
        self.decoder: Any = None  # the current connection's decoder (tail reads its type_schemas)

    # -- public -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Prepare, then stream until ``stop()`` or cancellation; reconnect on connection loss."""
        self._running = True
        self._done.clear()
        try:
            await self.prepare()
            await self._stream_forever()
        finally:
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """Finish the transaction being delivered, confirm, close the stream, and return."""
        self.request_stop()
        if self._running:
            await self._done.wait()

    def request_stop(self) -> None:
        """Like ``stop()`` but without waiting (safe inside ``deliver`` or a signal handler)."""
        self._stopping = True
        self._stop_event.set()
        if self._rc is not None:
            self._rc.wake()

    async def prepare(self) -> None:
        """Steps 1-3 (server checks, publication, persistent slot). ``run()`` calls it."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        except psycopg.Error as e:
            raise ConnectionFailed(str(e).strip()) from e
        async with conn:
            await self._check_server(conn)
            self._resolved_tables = await self._resolve_tables(conn)
            if self.plugin == "pgoutput":
                await self._ensure_publication(conn)
            self.warnings = await self._replica_identity_warnings(conn)
            for w in self.warnings:
                log.warning("replica_identity", table=w.table, replica_identity=w.replica_identity,
                            message=w.message, hint=w.hint)
                if self.plugin == "wal2json":  # worse than no old values: no event at all
                    log.warning("wal2json_drops_update_delete", table=w.table,
                                message=wal2json_drop_message(w.table), hint=w.hint)
            if not self.temporary:
                await self._ensure_slot(conn)

    # -- step 1: checks -----------------------------------------------------------------------

    async def _check_server(self, conn: psycopg.AsyncConnection) -> None:
        level = (await (await conn.execute("SHOW wal_level")).fetchone())[0]
        if level != "logical":
            raise WalLevelNotLogical(level)
        role, can_replicate = await (await conn.execute(
            "SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")).fetchone()
        if not can_replicate:
            raise MissingReplicationPrivilege(role)

    async def _resolve_tables(self, conn: psycopg.AsyncConnection) -> list[str] | None:
        """The watched tables as "schema.table", or None for all; missing ones are an error."""
        if not self.tables:
            return None
        found: list[str] = []
        missing: list[str] = []
        for name in self.tables:
            try:
                row = await (await conn.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')", (name,))).fetchone()
            except psycopg.errors.InvalidName:
                row = None
            if row is None:
                missing.append(name)
            else:
                found.append(f"{row[0]}.{row[1]}")
        if missing:
            raise TableNotFound(missing, self.publication if self.plugin == "pgoutput" else None)
        return found

    async def _replica_identity_warnings(self, conn: psycopg.AsyncConnection) -> list[ReplicaIdentityWarning]:
        if self._resolved_tables is not None:
            scope, params = "AND (n.nspname || '.' || c.relname) = ANY(%s)", (self._resolved_tables,)
        elif self.plugin == "pgoutput":
            scope = ("AND EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = %s"
                     " AND p.schemaname = n.nspname AND p.tablename = c.relname)")
            params = (self.publication,)
        else:
            scope, params = "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'", ()
        rows = await (await conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.relreplident,"
            "  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind IN ('r', 'p') {scope} ORDER BY 1", params)).fetchall()
        out = []
        for table, ident, has_pk in rows:
            if ident == "n":
                out.append(ReplicaIdentityWarning(table, "nothing"))
            elif ident == "d" and not has_pk:
                out.append(ReplicaIdentityWarning(table, "default"))
        return out

    # -- step 2: publication ------------------------------------------------------------------

    async def _ensure_publication(self, conn: psycopg.AsyncConnection) -> None:
        row = await (await conn.execute(
            "SELECT puballtables FROM pg_publication WHERE pubname = %s", (self.publication,))).fetchone()
        pub = sql.Identifier(self.publication)
        tables = self._resolved_tables
        if row is None:
            if not self.create_publication:
                raise PublicationNotFound(self.publication)
            if tables:
                target = sql.SQL("FOR TABLE {}").format(sql.SQL(", ").join(_table_ident(t) for t in tables))
            else:
                target = sql.SQL("FOR ALL TABLES")
            try:
                await conn.execute(sql.SQL("CREATE PUBLICATION {} {}").format(pub, target))
            except psycopg.errors.InsufficientPrivilege as e:
                raise PublicationPermissionDenied(self.publication, str(e).strip()) from e
            except psycopg.errors.UndefinedTable as e:
                raise TableNotFound([str(e).strip()], self.publication) from e
            except psycopg.errors.DuplicateObject:
                return  # created concurrently by another worker
            self.created_publication = True
            log.info("publication_created", publication=self.publication, tables=tables or "ALL")
            return
        if row[0] or not tables:
            return
        published = {f"{s}.{t}" for s, t in await (await conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (self.publication,))).fetchall()}
        missing = [t for t in tables if t not in published]
        if not missing:
            return
        if not self.create_publication:
            raise InvalidArgument(
                f"publication {self.publication!r} does not publish {', '.join(missing)}",
                hint=f"ALTER PUBLICATION {self.publication} ADD TABLE {', '.join(missing)}, or use "
                     "another --publication")
        try:
            await conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                pub, sql.SQL(", ").join(_table_ident(t) for t in missing)))
        except psycopg.errors.InsufficientPrivilege as e:
            raise PublicationPermissionDenied(self.publication, str(e).strip()) from e
        log.info("publication_extended", publication=self.publication, added=missing)

    # -- step 3: slot -------------------------------------------------------------------------

    async def _slot_row(self, conn: psycopg.AsyncConnection) -> tuple[Any, ...] | None:
        return await (await conn.execute(
            "SELECT s.plugin, s.active_pid, s.confirmed_flush_lsn::text, s.database,"
            " current_database() FROM pg_replication_slots s WHERE s.slot_name = %s",
            (self.slot,))).fetchone()

    async def _ensure_slot(self, conn: psycopg.AsyncConnection) -> None:
        row = await self._slot_row(conn)
        if row is None:
            rc = await ReplicationConnection.connect(self.dsn)
            try:
                info = await rc.create_slot(self.slot, self.plugin)
            finally:
                await rc.close()
            self.confirmed_lsn = self._flushable = info.consistent_point
            log.info("slot_created", slot=self.slot, plugin=self.plugin, lsn=_fmt(info.consistent_point))
            return
        plugin, active_pid, confirmed, database, current_db = row
        if plugin != self.plugin:
            raise SlotPluginMismatch(self.slot, plugin, self.plugin)
        if database != current_db:
            raise InvalidArgument(f"replication slot {self.slot!r} belongs to database {database!r}, "
                                  f"not {current_db!r}", hint="use another --slot name for this database")
        waited = 0.0
        while active_pid is not None and waited < _SLOT_RELEASE_GRACE:
            await asyncio.sleep(0.1)  # a previous owner that just exited releases it promptly
            waited += 0.1
            active_pid = (await self._slot_row(conn))[1]
        if active_pid is not None:
            raise SlotInUse(self.slot, active_pid)
        if confirmed:
            self.confirmed_lsn = self._flushable = parse_lsn(confirmed)

    # -- steps 4-5: stream, deliver, confirm --------------------------------------------------

    async def _stream_forever(self) -> None:
        attempt = 0
        streamed_before = False
        while not self._stopping:
            try:
                await self._stream_once()
                return  # stopped
            except StopStreaming:
                return
            except SlotInUse as e:
                if not streamed_before:
                    raise
                await self._release_own_slot(e)
                err: BaseException = e
            except CDCError as e:
                if not e.retryable:
                    raise
                err = e
            except psycopg.OperationalError as e:
                err = e
            except _SinkFailed as e:  # redeliver from the last confirmed LSN
                log.error("sink_failed", error=repr(e.__cause__), confirmed_lsn=_fmt(self.confirmed_lsn),
                          exc_info=e.__cause__)
                err = e.__cause__ or e
            if self._started_streaming:
                attempt = 0
                streamed_before = True
            delay = min(self.max_backoff, _FIRST_BACKOFF * 2 ** attempt) * random.uniform(0.7, 1.0)
            attempt += 1
            self.reconnects += 1
            log.warning("replication_retry", error=str(err), delay=round(delay, 2), attempt=attempt,
                        confirmed_lsn=_fmt(self.confirmed_lsn))
            with contextlib.suppress(asyncio.TimeoutError):  # stop() cuts the backoff short
                await asyncio.wait_for(self._stop_event.wait(), delay)

    async def _release_own_slot(self, e: SlotInUse) -> None:
        """Our previous server process may still hold the slot after a network drop: end it."""
        if e.pid is None or e.pid != self._last_pid:
            return
        try:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (e.pid,))
        except psycopg.Error:
            pass

    async def _stream_once(self) -> None:
        from cdc.decoding import CONNECTION_OPTIONS, make_decoder

        self._started_streaming = False
        rc = await ReplicationConnection.connect(self.dsn, options=CONNECTION_OPTIONS)
        rc.plugin = self.plugin
        self._rc = rc
        self._last_pid = rc.backend_pid
        try:
            if self.temporary:
                info = await rc.create_slot(self.slot, self.plugin, temporary=True)
                if self.reconnects:
                    log.warning("temporary_slot_recreated", slot=self.slot,
                                note="changes committed while disconnected are not seen")
                self.confirmed_lsn = self._flushable = max(self._flushable, info.consistent_point)
            decoder = self.decoder = make_decoder(self.plugin, tables=self._resolved_tables,
                                                  protocol_version=self.protocol_version)
            options = decoder.start_options(
                publication=self.publication if self.plugin == "pgoutput" else None,
                tables=self._resolved_tables)
            await rc.start(self.slot, self.confirmed_lsn, options)
            self._started_streaming = True
            self.started.set()
            log.info("replication_started", slot=self.slot, plugin=self.plugin, lsn=_fmt(self.confirmed_lsn))
            await self._pump(rc, decoder)
        finally:
            self._rc = None
            self.started.clear()
            await self._close(rc)

    async def _pump(self, rc: ReplicationConnection, decoder: Any) -> None:
        loop = asyncio.get_running_loop()
        deliver = self.sink.deliver
        feed = decoder.feed
        next_status = loop.time() + self.status_interval
        while not self._stopping:
            msgs = await rc.read_messages(timeout=max(0.0, next_status - loop.time()))
            reply = False
            # The cyclic GC waits while a read batch is decoded (no await in between, so only
            # this loop allocates) and runs at the next await: once per batch instead of every
            # 700 new containers, which spares repeated full collections over the events of a
            # large transaction. Re-enabled around every await and on any exit.
            defer_gc = gc.isenabled()
            if defer_gc:
                gc.disable()
            try:
                for m in msgs:
                    if type(m) is XLogData:
                        txns = feed(m.payload, m.wal_start)
                        if not txns:  # the usual case: a change inside an open transaction
                            continue
                        for txn in txns:
                            if txn.events:
                                if defer_gc:
                                    gc.enable()
                                try:
                                    await deliver(txn)
                                except StopStreaming:
                                    raise
                                except Exception as e:
                                    raise _SinkFailed() from e
                                finally:
                                    if defer_gc:
                                        gc.disable()
                            if txn.end_lsn > self._flushable:
                                self._flushable = txn.end_lsn
                            if self._stopping:
                                return
                    else:  # keepalive: everything before wal_end was sent, and all of it is handled
                        if not decoder.in_transaction() and m.wal_end > self._flushable:
                            self._flushable = m.wal_end
                            reply = True
                        reply = reply or m.reply_requested
            finally:
                if defer_gc:
                    gc.enable()
            now = loop.time()
            if reply or now >= next_status:
                await self._confirm(rc)
                next_status = now + self.status_interval

    async def _confirm(self, rc: ReplicationConnection) -> None:
        flushed = self._flushable
        await rc.send_status(flushed)
        self.confirmed_lsn = flushed

    async def _close(self, rc: ReplicationConnection) -> None:
        """Confirm what was delivered, end the stream (CopyDone) and close; best effort."""
        try:
            if not rc.closed and rc.streaming:
                await asyncio.wait_for(self._confirm(rc), 2.0)
                await rc.stop(timeout=2.0)
        except (CDCError, psycopg.Error, asyncio.TimeoutError, OSError):
            pass
        finally:
            await rc.close()


def wal2json_drop_message(table: str) -> str:
    """What the worker logs at start, with ``plugin="wal2json"``, for a watched table that has no
    replica identity (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key)."""
    return (f"with the wal2json plugin, UPDATE and DELETE on {table} are not streamed at all:"
            " wal2json skips changes of a table without a replica identity (only a server log"
            " WARNING says so); INSERT and TRUNCATE still come through")


def _table_ident(name: str) -> sql.Composable:
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table)


def _fmt(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


async def drop_publication(dsn: str, name: str) -> None:
    """DROP PUBLICATION IF EXISTS (``tail --temporary`` cleans up the publication it created)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
