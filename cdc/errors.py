"""Typed CDC errors: each names the cause, whose fault it is, and the fix (``hint``).

Pure module (no IO imports). ``CDCError.retryable`` tells the worker whether to reconnect with
backoff (the server went away) or to stop and report (configuration the operator must fix).

    try:
        await worker.run()
    except CDCError as e:
        print(f"error: {e}\\nhint: {e.hint}")
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CDCError",
    "WalLevelNotLogical",
    "MissingReplicationPrivilege",
    "SlotInUse",
    "SlotPluginMismatch",
    "TableNotFound",
    "PublicationNotFound",
    "PublicationPermissionDenied",
    "PluginNotInstalled",
    "ReplicationProtocolError",
    "ConnectionLost",
    "ConnectionFailed",
    "ReplicaIdentityWarning",
    "InvalidArgument",
    "ReplicationRejected",
]


class CDCError(Exception):
    """Base of every CDC error. ``fault``: "config" (the operator fixes the setup), "server"
    (Postgres went away or misbehaved) or "client" (bad arguments). ``hint``: how to fix it."""

    fault: str = "config"
    retryable: bool = False

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class WalLevelNotLogical(CDCError):
    def __init__(self, current: str) -> None:
        super().__init__(
            f"the server has wal_level={current}; logical replication needs wal_level=logical",
            hint="run ALTER SYSTEM SET wal_level = logical (and max_wal_senders >= 1, "
                 "max_replication_slots >= 1) as a superuser, then restart Postgres",
        )
        self.current = current


class MissingReplicationPrivilege(CDCError):
    def __init__(self, role: str) -> None:
        super().__init__(
            f"role {role!r} has no REPLICATION privilege, so it cannot stream changes",
            hint=f'run ALTER ROLE "{role}" WITH REPLICATION as a superuser, or connect as a role '
                 "that has it (and allow it in pg_hba.conf for replication connections)",
        )
        self.role = role


class SlotInUse(CDCError):
    """Another process streams from the slot. Retryable only when the worker itself held the
    slot a moment ago (its old server process has not noticed the drop yet)."""

    def __init__(self, slot: str, pid: int | None) -> None:
        who = f"server process {pid}" if pid else "another process"
        super().__init__(
            f"replication slot {slot!r} is already active for {who}",
            hint="stop the other consumer (another nuvem-realtime or pg_recvlogical), or end it with "
                 f"SELECT pg_terminate_backend({pid or '<pid>'}), or use another slot name (--slot)",
        )
        self.slot = slot
        self.pid = pid


class SlotPluginMismatch(CDCError):
    def __init__(self, slot: str, has: str, wanted: str) -> None:
        super().__init__(
            f"replication slot {slot!r} uses the {has} plugin, not {wanted}",
            hint=f"use --plugin {has}, or another slot name, or drop the slot with "
                 f"SELECT pg_drop_replication_slot('{slot}')",
        )
        self.slot = slot


class TableNotFound(CDCError):
    def __init__(self, tables: list[str], publication: str | None = None) -> None:
        names = ", ".join(tables)
        where = f" for publication {publication!r}" if publication else ""
        super().__init__(
            f"table(s) {names}{where} do not exist in this database",
            hint="check the spelling and the schema (schema.table) in --tables, or create the "
                 "table first; use \\dt in psql to list tables",
        )
        self.tables = tables
        self.publication = publication


class PublicationNotFound(CDCError):
    def __init__(self, publication: str) -> None:
        super().__init__(
            f"publication {publication!r} does not exist and creating it was turned off",
            hint=f"create it (CREATE PUBLICATION {publication} FOR ALL TABLES), or let the worker "
                 "create it, or use --plugin wal2json which needs no publication",
        )
        self.publication = publication


class PublicationPermissionDenied(CDCError):
    def __init__(self, publication: str, detail: str) -> None:
        super().__init__(
            f"cannot create publication {publication!r}: {detail}",
            hint="FOR ALL TABLES needs a superuser and FOR TABLE needs table ownership: ask the owner "
                 f"to CREATE PUBLICATION {publication} ..., or use --plugin wal2json (REPLICATION only)",
        )
        self.publication = publication


class PluginNotInstalled(CDCError):
    def __init__(self, plugin: str, detail: str = "") -> None:
        super().__init__(
            f"the logical decoding plugin {plugin!r} is not installed on the server"
            + (f" ({detail})" if detail else ""),
            hint=f"install it on the database host (Debian/Ubuntu: apt-get install "
                 f"postgresql-<major>-{plugin}), or use --plugin pgoutput which ships with Postgres",
        )
        self.plugin = plugin


class ReplicationProtocolError(CDCError):
    """The server sent bytes that are not a replication protocol message we know."""

    fault = "server"

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="this is a bug or a server/version mismatch; please report it "
                                       "with the server version")


class ConnectionLost(CDCError):
    """The replication connection dropped (server restart, network). The worker reconnects."""

    fault = "server"
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"replication connection lost: {detail}",
                         hint="the worker reconnects with backoff; check that Postgres is up")


class ConnectionFailed(CDCError):
    """Could not connect at all (wrong URL, server down, authentication)."""

    fault = "server"
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"cannot connect to Postgres: {detail}",
                         hint="check --database-url (host, port, user, password, database) and "
                              "that the server accepts replication connections (pg_hba.conf)")


@dataclass(frozen=True, slots=True)
class ReplicaIdentityWarning:
    """Not an error: a watched table whose UPDATE/DELETE events will carry no old values.

    With pgoutput, Postgres even *rejects* UPDATE/DELETE on such a table once it is in a
    publication that publishes them, so fix it before going live."""

    table: str  # "schema.table"
    replica_identity: str  # "nothing" or "default" (without a primary key)

    @property
    def message(self) -> str:
        why = ("REPLICA IDENTITY NOTHING" if self.replica_identity == "nothing"
               else "no primary key (REPLICA IDENTITY DEFAULT)")
        return f"table {self.table} has {why}: UPDATE and DELETE events will have no old values or key"

    @property
    def hint(self) -> str:
        return (f"add a primary key, or run ALTER TABLE {self.table} REPLICA IDENTITY FULL "
                "(or USING INDEX on a unique, not-null index)")

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})"


class InvalidArgument(CDCError):
    """Bad input from the caller (a slot name, an LSN, a table list)."""

    fault = "client"

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)


class ReplicationRejected(CDCError):
    """The server refused a replication command for a reason not covered above (its message says
    why: e.g. an option the output plugin does not know, or a slot that does not exist)."""

    def __init__(self, command: str, error: Exception) -> None:
        detail = str(error).strip().replace("\n", "; ")
        super().__init__(f"the server rejected {command}: {detail}",
                         hint="check the slot name, plugin version and options; the server log has details")
        self.sqlstate = getattr(error, "sqlstate", None)
