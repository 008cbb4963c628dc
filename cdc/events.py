"""The change event model: what the CDC worker hands downstream (filters, gateway, ``tail``).

Stable contract (consumers depend on it):

- A ``Transaction`` groups the events of one committed transaction, in WAL order. Rolled-back
  transactions never appear.
- ``ChangeEvent.record`` holds the new row (INSERT, UPDATE) as ``{column: value}``; values are
  JSON-friendly Python values converted by type (see ``cdc.values``): int, ``Decimal`` (numeric,
  exact), float (incl. nan/inf), bool, str, ``datetime``/``date``/``time``, dict/list (json/jsonb),
  lists (arrays), ``None`` for SQL NULL.
- Columns whose value is an *unchanged TOAST* datum (UPDATE that did not touch a large value) are
  left out of ``record`` and named in ``unchanged_toast``: never reported as null.
- ``old_record`` holds what the table's REPLICA IDENTITY sends: the key columns (DEFAULT/INDEX),
  the whole old row (FULL), or ``None`` (NOTHING, or an UPDATE that did not change the key).
  ``old_record_complete`` says whether it is the full old row (FULL).
- ``primary_key`` maps the replica identity key columns to their values (from the new row for
  INSERT/UPDATE, from the old key for DELETE); empty when the table has no key.
- LSNs are ints (``cdc.events.format_lsn`` renders ``16/B374D848``); ``commit_timestamp`` is an
  aware UTC ``datetime``.
- A ``SchemaChangeEvent`` precedes the first change that uses a table's new shape when a Relation
  message changes its columns (e.g. ``ALTER TABLE ... ADD COLUMN``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "ChangeType",
    "ColumnInfo",
    "TableSchema",
    "ChangeEvent",
    "SchemaChangeEvent",
    "Transaction",
    "format_lsn",
    "parse_lsn",
]

ChangeType = Literal["INSERT", "UPDATE", "DELETE", "TRUNCATE"]
ReplicaIdentity = Literal["default", "nothing", "full", "index"]


class ColumnInfo(msgspec.Struct, frozen=True):
    """One column of a table as the replication stream describes it."""

    name: str
    type_oid: int
    type_name: str  # e.g. "int4", "numeric", "_text" (arrays start with "_"), "timestamptz"
    type_modifier: int = -1
    is_key: bool = False  # part of the replica identity key


class TableSchema(msgspec.Struct, frozen=True):
    """A table's columns, from a Relation message (pgoutput) or the catalog (wal2json)."""

    schema: str
    table: str
    columns: tuple[ColumnInfo, ...]
    replica_identity: ReplicaIdentity = "default"
    relation_id: int = 0

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_key)

    def column(self, name: str) -> ColumnInfo | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


class ChangeEvent(msgspec.Struct, kw_only=True, tag_field="kind", tag="change", gc=False):
    schema: str
    table: str
    type: ChangeType
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None
    old_record_complete: bool = False
    primary_key: dict[str, Any] = {}
    unchanged_toast: tuple[str, ...] = ()
    columns: tuple[ColumnInfo, ...] = ()
    lsn: int = 0  # the WAL position of this change
    commit_lsn: int = 0
    commit_timestamp: datetime | None = None
    xid: int = 0
    # TRUNCATE only: every table truncated together, with the options
    truncated: tuple[str, ...] = ()  # "schema.table"
    cascade: bool = False
    restart_identity: bool = False


class SchemaChangeEvent(msgspec.Struct, kw_only=True, tag_field="kind", tag="schema_change", gc=False):
    schema: str
    table: str
    columns: tuple[ColumnInfo, ...]
    previous_columns: tuple[ColumnInfo, ...] | None = None  # None: first time seen
    lsn: int = 0
    commit_lsn: int = 0
    commit_timestamp: datetime | None = None
    xid: int = 0


class Transaction(msgspec.Struct, kw_only=True, gc=False):
    xid: int
    begin_lsn: int = 0
    commit_lsn: int
    end_lsn: int  # confirm up to this LSN once every event here is delivered
    commit_timestamp: datetime
    events: list[ChangeEvent | SchemaChangeEvent] = []
    origin: str | None = None


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    if not _ or not hi or not lo:
        raise ValueError(f"not an LSN: {text!r} (expected the form 16/B374D848)")
    return (int(hi, 16) << 32) | int(lo, 16)
