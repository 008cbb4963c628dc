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

from decimal import Decimal
from typing import Any, Protocol

import msgspec

from cdc.assembler import Assembler
from cdc.events import ChangeEvent, ColumnInfo, SchemaChangeEvent, Transaction, format_lsn
from cdc.pgoutput import PgOutputReader
from cdc.values import CONNECTION_OPTIONS, format_type
from cdc.wal2json import Wal2JsonDecoder
from cdc.wal2json_render import Wal2JsonOptions, render_wal2json

__all__ = [
    "CONNECTION_OPTIONS",
    "Decoder",
    "DecoderConfigError",
    "PgOutputDecoder",
    "Wal2JsonDecoder",
    "make_decoder",
    "render_event_json",
    "render_wal2json",
    "Wal2JsonOptions",
    "event_to_json_dict",
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
        self._feed_row_bytes = self._assembler.feed_row_bytes

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
        if payload.__class__ is not bytes:
            payload = bytes(payload)
        if self._feed_row_bytes(payload, wal_start):  # Insert/Update of a known table: one pass
            return []
        txn = self._assembler.feed(self._reader.decode(payload), wal_start)
        return [txn] if txn is not None else []

    def in_transaction(self) -> bool:
        return self._assembler.in_transaction()

    @property
    def type_schemas(self) -> dict[int, str]:
        """User-defined type OID -> schema, from Type messages (for ``render_wal2json``)."""
        return self._assembler.type_schemas


def make_decoder(plugin: str = "pgoutput", *, protocol_version: int = 1,
                 tables: list[str] | None = None) -> Decoder:
    """The decoder for a slot's output plugin. ``tables`` ("schema.table" or bare "table")
    keeps only those tables' changes; other transactions still come out, with no events."""
    if plugin == "pgoutput":
        return PgOutputDecoder(protocol_version, tables)
    if plugin == "wal2json":
        return Wal2JsonDecoder(tables=tables)
    raise DecoderConfigError(f"unknown output plugin {plugin!r}: use one of {', '.join(PLUGINS)}")


# ---------------------------------------------------------------------------------------------
# ``tail --format events``: one JSON object per event

_json = msgspec.json.Encoder(decimal_format="number")


def _plain(value: Any) -> Any:
    """JSON cannot hold NaN/Infinity: non-finite numbers become the strings Postgres prints."""
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: _plain(v) for k, v in row.items()}


def _columns(cols: tuple[ColumnInfo, ...] | None) -> list[dict[str, Any]] | None:
    if cols is None:
        return None
    return [{"name": c.name, "type": c.type_name, "sql_type": format_type(c.type_oid, c.type_modifier, c.type_name),
             "type_oid": c.type_oid, "type_modifier": c.type_modifier, "is_key": c.is_key} for c in cols]


def event_to_json_dict(ev: ChangeEvent | SchemaChangeEvent) -> dict[str, Any]:
    """The JSON shape of one event (see docs/cdc-events.md): LSNs as "16/B374D848" strings,
    datetimes ISO 8601, numeric as JSON numbers, non-finite numbers as "NaN"/"Infinity"."""
    common = {"schema": ev.schema, "table": ev.table, "lsn": format_lsn(ev.lsn),
              "commit_lsn": format_lsn(ev.commit_lsn), "commit_timestamp": ev.commit_timestamp,
              "xid": ev.xid}
    if isinstance(ev, SchemaChangeEvent):
        return {"kind": "schema_change", **common, "columns": _columns(ev.columns),
                "previous_columns": _columns(ev.previous_columns)}
    out: dict[str, Any] = {"kind": "change", "type": ev.type, **common}
    if ev.type == "TRUNCATE":
        out.update(truncated=ev.truncated, cascade=ev.cascade, restart_identity=ev.restart_identity)
        return out
    out.update(record=_row(ev.record), old_record=_row(ev.old_record),
               old_record_complete=ev.old_record_complete, primary_key=_row(ev.primary_key),
               unchanged_toast=ev.unchanged_toast)
    return out


def render_event_json(txn: Transaction) -> list[bytes]:
    """One JSON line (bytes, no newline) per event of ``txn``; nothing for an empty one."""
    return [_json.encode(event_to_json_dict(ev)) for ev in txn.events]
