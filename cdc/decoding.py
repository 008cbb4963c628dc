"""The one entry point the replication worker uses to turn XLogData payloads into transactions.

    dec = make_decoder("pgoutput", protocol_version=2, tables=["public.orders"])
    options = dec.start_options(publication="nuvem", tables=None)   # for START_REPLICATION
    for txn in dec.feed(payload, wal_start):                         # committed, in order
        await sink.deliver(txn); confirm(txn.end_lsn)

Pure: no sockets, no asyncio. Also the two renderings ``nuvem-realtime tail`` prints:
``render_event_json(txn)`` (``--format events``) and ``render_wal2json(txn)`` (``--format
wal2json``), each returning one JSON line (bytes, no newline) per output object.
"""

from __future__ import annotations

from typing import Protocol

from cdc.assembler import Assembler
from cdc.events import Transaction
from cdc.pgoutput import PgOutputReader
from cdc.values import CONNECTION_OPTIONS

__all__ = [
    "CONNECTION_OPTIONS",
    "Decoder",
    "DecoderConfigError",
    "PgOutputDecoder",
    "Wal2JsonDecoder",
    "make_decoder",
    "render_event_json",
    "render_wal2json",
]

PLUGINS = ("pgoutput", "wal2json")


class DecoderConfigError(ValueError):
    """A decoder was asked for something it cannot do (unknown plugin, protocol version, or
    pgoutput without a publication). Whose fault: the caller's configuration; the message names
    the setting to fix."""


class Decoder(Protocol):
    plugin: str  # "pgoutput" or "wal2json": the slot's output plugin

    def start_options(self, *, publication: str | None, tables: list[str] | None) -> dict[str, str]:
        """Options for START_REPLICATION ... LOGICAL lsn (k 'v', ...)."""
        ...

    def feed(self, payload: bytes, wal_start: int) -> list[Transaction]:
        """One XLogData payload (its WAL start LSN) in; the transactions it completed
        (committed), in commit order."""
        ...

    def in_transaction(self) -> bool:
        """True while a transaction (or a streamed one) is open."""
        ...


class PgOutputDecoder:
    """pgoutput protocol v1 or v2 (v2 adds streaming of large in-progress transactions)."""

    plugin = "pgoutput"

    def __init__(self, protocol_version: int = 1, tables: list[str] | None = None) -> None:
        if protocol_version not in (1, 2):
            raise DecoderConfigError(
                f"pgoutput protocol_version {protocol_version} is not supported: use 1 or 2")
        self.protocol_version = protocol_version
        self._reader = PgOutputReader()
        self._assembler = Assembler(tables)

    def start_options(self, *, publication: str | None, tables: list[str] | None = None) -> dict[str, str]:
        if not publication:
            raise DecoderConfigError(
                "pgoutput needs a publication: pass publication='name' (CREATE PUBLICATION ...),"
                " or use the wal2json plugin, which needs none")
        opts = {"proto_version": str(self.protocol_version), "publication_names": publication}
        if self.protocol_version >= 2:
            opts["streaming"] = "on"
        return opts

    def feed(self, payload: bytes, wal_start: int) -> list[Transaction]:
        txn = self._assembler.feed(self._reader.decode(payload), wal_start)
        return [txn] if txn is not None else []

    def in_transaction(self) -> bool:
        return self._assembler.in_transaction()


def make_decoder(plugin: str = "pgoutput", *, protocol_version: int = 1,
                 tables: list[str] | None = None) -> Decoder:
    """The decoder for a slot's output plugin. ``tables`` ("schema.table" or bare "table")
    keeps only those tables' changes; other transactions still come out, with no events."""
    if plugin == "pgoutput":
        return PgOutputDecoder(protocol_version, tables)
    if plugin == "wal2json":
        return Wal2JsonDecoder(tables=tables)
    raise DecoderConfigError(f"unknown output plugin {plugin!r}: use one of {', '.join(PLUGINS)}")
