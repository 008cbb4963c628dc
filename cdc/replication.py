"""The one module that speaks the streaming replication protocol, through psycopg 3 (asyncio).

    rc = await ReplicationConnection.connect(dsn)
    await rc.create_slot("s", "pgoutput")              # persistent; temporary=True for tail
    await rc.start("s", 0, {"proto_version": "1", "publication_names": "p"})
    while True:
        for msg in await rc.read_messages(timeout=1.0):   # XLogData / Keepalive, in stream order
            ...
        await rc.send_status(flushed)                     # confirm only what was delivered
    await rc.close()

Waiting uses the event loop's ``add_reader`` on the libpq socket: no busy polling, no SQL polling.
Every server error is mapped to a typed ``cdc.errors`` error; a dropped connection is
``ConnectionLost`` (retryable).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from cdc.errors import (CDCError, ConnectionFailed, ConnectionLost, InvalidArgument,
                        MissingReplicationPrivilege, PluginNotInstalled, ReplicationRejected, SlotInUse)
from cdc.replication_framing import Keepalive, XLogData, encode_status_update, parse_copy_message
from cdc.events import format_lsn, parse_lsn  # re-exported: the replication layer speaks LSNs

__all__ = ["ReplicationConnection", "SystemInfo", "SlotInfo", "check_slot_name", "map_error",
           "format_lsn", "parse_lsn",
           "XLogData", "Keepalive"]

_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
_ACTIVE_PID = re.compile(r"active for PID (\d+)")


@dataclass(frozen=True, slots=True)
class SystemInfo:
    systemid: str
    timeline: int
    xlogpos: int
    dbname: str | None


@dataclass(frozen=True, slots=True)
class SlotInfo:
    name: str
    consistent_point: int
    plugin: str


def check_slot_name(name: str) -> str:
    """Slot names are what Postgres allows: lower-case letters, digits and ``_``, at most 63."""
    if not _SLOT_NAME.match(name or ""):
        raise InvalidArgument(f"invalid replication slot name {name!r}",
                              hint="use only lower-case letters, digits and underscores (max 63)")
    return name


def map_error(err: psycopg.Error, *, slot: str | None = None, plugin: str | None = None) -> CDCError | None:
    """The typed error for a server error we know how to explain, else None."""
    state = err.sqlstate or ""
    text = str(err)
    if state == "55006" and slot is not None:  # object_in_use
        m = _ACTIVE_PID.search(text)
        return SlotInUse(slot, int(m.group(1)) if m else None)
    if state == "58P01" and plugin is not None:  # undefined_file: could not access file "x"
        return PluginNotInstalled(plugin, text.strip().splitlines()[0])
    if state == "42501" and "replication" in text:  # must be superuser or replication role
        return MissingReplicationPrivilege(_role_from(err))
    return None


def _role_from(err: psycopg.Error) -> str:
    conn = getattr(err, "pgconn", None)
    user = getattr(conn, "user", None) if conn is not None else None
    return user.decode() if isinstance(user, bytes) else (user or "?")


def _user_of(dsn: str) -> str:
    try:
        return conninfo_to_dict(dsn).get("user") or "?"
    except psycopg.Error:
        return "?"


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ReplicationConnection:
    """A ``replication=database`` connection. Not safe for concurrent use by several tasks."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn
        self._pgconn = conn.pgconn
        self._streaming = False
        self._waiter: asyncio.Future[bool] | None = None
        self.slot: str | None = None
        self.plugin: str | None = None

    @classmethod
    async def connect(cls, dsn: str, *, connect_timeout: float = 10.0,
                      options: str | None = None) -> "ReplicationConnection":
        """``options``: libpq session options (``-c datestyle=ISO ...``) the decoder relies on."""
        extra = {"options": options} if options else {}
        try:
            conn = await psycopg.AsyncConnection.connect(
                dsn, replication="database", autocommit=True, connect_timeout=max(1, int(connect_timeout)),
                **extra)
        except psycopg.Error as e:
            if "superuser or replication role" in str(e):  # no SQLSTATE on connection errors
                raise MissingReplicationPrivilege(_user_of(dsn)) from e
            raise ConnectionFailed(str(e).strip()) from e
        return cls(conn)

    @property
    def backend_pid(self) -> int:
        return self._pgconn.backend_pid

    @property
    def streaming(self) -> bool:
        return self._streaming

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def _command(self, sql: str, *, slot: str | None = None, plugin: str | None = None) -> list[tuple]:
        try:
            async with self._conn.cursor() as cur:
                await cur.execute(sql)
                return await cur.fetchall() if cur.description else []
        except psycopg.OperationalError as e:
            mapped = map_error(e, slot=slot, plugin=plugin)
            raise (mapped or ConnectionLost(str(e).strip())) from e
        except psycopg.Error as e:
            raise (map_error(e, slot=slot, plugin=plugin) or ReplicationRejected(sql.split()[0], e)) from e

    async def identify_system(self) -> SystemInfo:
        (systemid, timeline, xlogpos, dbname), = await self._command("IDENTIFY_SYSTEM")
        return SystemInfo(systemid, int(timeline), parse_lsn(xlogpos), dbname)

    async def create_slot(self, name: str, plugin: str, *, temporary: bool = False) -> SlotInfo:
        """CREATE_REPLICATION_SLOT ... LOGICAL plugin; a temporary slot lives as long as this connection."""
        check_slot_name(name)
        sql = (f"CREATE_REPLICATION_SLOT {_quote_ident(name)} {'TEMPORARY ' if temporary else ''}"
               f"LOGICAL {_quote_ident(plugin)} NOEXPORT_SNAPSHOT")
        (slot, point, _snap, out_plugin), = await self._command(sql, slot=name, plugin=plugin)
        return SlotInfo(slot, parse_lsn(point), out_plugin)

    async def drop_slot(self, name: str, *, wait: bool = True) -> None:
        check_slot_name(name)
        await self._command(f"DROP_REPLICATION_SLOT {_quote_ident(name)}{' WAIT' if wait else ''}", slot=name)

    async def start(self, slot: str, start_lsn: int = 0, options: dict[str, str] | None = None) -> None:
        """START_REPLICATION: from here on only read_messages/send_status/stop/close are allowed.

        The server streams transactions committed after max(start_lsn, the slot's confirmed_flush_lsn)."""
        check_slot_name(slot)
        opts = ", ".join(f"{_quote_ident(k)} {_quote_literal(str(v))}" for k, v in (options or {}).items())
        sql = f"START_REPLICATION SLOT {_quote_ident(slot)} LOGICAL {format_lsn(start_lsn)}"
        if opts:
            sql += f" ({opts})"
        try:
            cur = self._conn.cursor()
            await cur.execute(sql)
            status = cur.pgresult.status if cur.pgresult is not None else None
        except psycopg.Error as e:
            mapped = map_error(e, slot=slot, plugin=self.plugin)
            if mapped is None and isinstance(e, psycopg.OperationalError):
                mapped = ConnectionLost(str(e).strip())
            raise (mapped or ReplicationRejected("START_REPLICATION", e)) from e
        if status != pq.ExecStatus.COPY_BOTH:
            raise ConnectionLost(f"START_REPLICATION did not enter streaming mode (status {status})")
        self._streaming = True
        self.slot = slot

    async def read_messages(self, timeout: float | None = None, max_messages: int = 512) -> list[XLogData | Keepalive]:
        """Messages already received (at least one), waiting up to ``timeout`` s for the first.

        Returns [] on timeout. Raises ConnectionLost when the server or network goes away."""
        pgc = self._pgconn
        out: list[XLogData | Keepalive] = []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while len(out) < max_messages:
            try:
                n, data = pgc.get_copy_data(1)
            except psycopg.OperationalError as e:
                raise ConnectionLost(str(e).strip()) from e
            if n > 0:
                out.append(parse_copy_message(data))
                continue
            if n == -1:
                self._streaming = False
                raise self._stream_end_error()
            if out:
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            if not await self._wait(loop, remaining, write=False):
                break
            try:
                pgc.consume_input()
            except psycopg.OperationalError as e:
                raise ConnectionLost(str(e).strip()) from e
        return out

    def _stream_end_error(self) -> CDCError:
        res = self._pgconn.get_result()
        if res is not None and res.status == pq.ExecStatus.FATAL_ERROR:
            err = psycopg.errors.error_from_result(res, encoding="utf-8")
            return map_error(err, slot=self.slot, plugin=self.plugin) or ConnectionLost(str(err).strip())
        return ConnectionLost("the server ended the replication stream")

    async def send_status(self, flushed: int, *, written: int | None = None, reply_requested: bool = False) -> None:
        """Standby Status Update: the slot's confirmed_flush_lsn moves to ``flushed``."""
        buf = encode_status_update(max(written or 0, flushed), flushed, flushed, reply_requested=reply_requested)
        pgc = self._pgconn
        loop = asyncio.get_running_loop()
        try:
            while pgc.put_copy_data(buf) == 0:
                await self._wait(loop, None, write=True)
            while pgc.flush() == 1:
                await self._wait(loop, None, write=True)
        except psycopg.OperationalError as e:
            raise ConnectionLost(str(e).strip()) from e

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float | None, *, write: bool) -> bool:
        """Wait until the socket is readable (or writable); False on timeout."""
        fut = loop.create_future()

        def ready(value: bool = True) -> None:
            if not fut.done():
                fut.set_result(value)

        try:
            fd = self._pgconn.socket
        except psycopg.OperationalError as e:
            raise ConnectionLost(str(e).strip()) from e
        (loop.add_writer if write else loop.add_reader)(fd, ready)
        timer = loop.call_later(timeout, ready, False) if timeout is not None else None
        if not write:
            self._waiter = fut
        try:
            return await fut
        finally:
            self._waiter = None
            (loop.remove_writer if write else loop.remove_reader)(fd)
            if timer is not None:
                timer.cancel()

    def wake(self) -> None:
        """Make a pending ``read_messages`` return now (with what it has, maybe nothing)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    async def stop(self, timeout: float = 5.0) -> None:
        """End the stream cleanly (CopyDone) so the connection can run commands again."""
        if not self._streaming:
            return
        pgc = self._pgconn
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._streaming = False
        try:
            pgc.put_copy_end()
            while pgc.flush() == 1:
                await self._wait(loop, max(0.0, deadline - loop.time()), write=True)
            while True:  # drain what the server still sends, up to its CopyDone
                n, _ = pgc.get_copy_data(1)
                if n == -1:
                    break
                if n == 0:
                    if not await self._wait(loop, max(0.0, deadline - loop.time()), write=False):
                        raise ConnectionLost("timed out ending the replication stream")
                    pgc.consume_input()
            while True:  # the results of START_REPLICATION, then None
                while pgc.is_busy():
                    if not await self._wait(loop, max(0.0, deadline - loop.time()), write=False):
                        raise ConnectionLost("timed out ending the replication stream")
                    pgc.consume_input()
                res = pgc.get_result()
                if res is None:
                    break
        except psycopg.OperationalError as e:
            raise ConnectionLost(str(e).strip()) from e

    async def close(self) -> None:
        self._streaming = False
        await self._conn.close()
