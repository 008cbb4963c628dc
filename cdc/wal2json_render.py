"""Sans-IO rendering of a ``Transaction`` as the lines the wal2json plugin prints for it
(``format-version`` 2), so existing wal2json consumers can read our stream.

``render_wal2json(txn)`` returns one JSON line (bytes, no newline) per wal2json object, equal to
what ``pg_recvlogical -P wal2json -o format-version=2`` prints with this option set (the default
``Wal2JsonOptions()``)::

    format-version=2  include-xids=1  include-timestamp=1  include-lsn=1  include-pk=1
    include-types=1   include-typmod=1  include-type-oids=0

Objects: ``{"action":"B",...}``, one ``I``/``U``/``D`` per row change with ``columns``
[{name, type, value}], ``identity`` (old key / old row) and ``pk`` [{name, type}], one ``T`` per
truncated table, ``{"action":"C",...}``. Values are printed like the plugin: numbers (int2/4/8,
oid, float4/8, numeric) as JSON numbers (``null`` for NaN/Infinity, as the plugin does), booleans
as true/false, everything else as the Postgres text output in a JSON string (bytea as bare hex,
json/jsonb as a string). Unchanged TOAST columns are left out of ``columns`` (as the plugin does).

Known differences (see docs/cdc-events.md): ``pk`` is the table's primary key in the plugin's
output; we only know the replica identity columns unless ``primary_keys`` is given (they are the
same for REPLICA IDENTITY DEFAULT). A transaction with no row changes (DDL only) prints nothing
here, while the plugin prints an empty B/C pair (pgoutput in Postgres 15+ skips empty ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from cdc.events import ChangeEvent, ColumnInfo, Transaction, format_lsn
from cdc.values import BUILTIN_TYPE_NAMES, format_type, to_pg_text

__all__ = ["Wal2JsonOptions", "render_wal2json"]

_NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "oid", "float4", "float8", "numeric"})
_ACTIONS = {"INSERT": "I", "UPDATE": "U", "DELETE": "D"}
_enc = msgspec.json.encode


@dataclass(frozen=True)
class Wal2JsonOptions:
    """The plugin options the rendering reproduces (names as in wal2json)."""

    include_xids: bool = True
    include_timestamp: bool = True
    include_lsn: bool = True
    include_pk: bool = True
    include_type_oids: bool = False
    numeric_data_types_as_string: bool = False

    def plugin_options(self) -> dict[str, str]:
        """The same set as wal2json plugin options (for pg_recvlogical -o / START_REPLICATION)."""
        b = lambda v: "1" if v else "0"  # noqa: E731
        return {
            "format-version": "2", "include-xids": b(self.include_xids),
            "include-timestamp": b(self.include_timestamp), "include-lsn": b(self.include_lsn),
            "include-pk": b(self.include_pk), "include-types": "1", "include-typmod": "1",
            "include-type-oids": b(self.include_type_oids),
        } | ({"numeric-data-types-as-string": "1"} if self.numeric_data_types_as_string else {})


DEFAULT_OPTIONS = Wal2JsonOptions()


def _value_json(value: Any, col: ColumnInfo, opts: Wal2JsonOptions) -> bytes:
    if value is None:
        return b"null"
    tname = col.type_name
    if isinstance(value, bool) and tname == "bool":
        return b"true" if value else b"false"
    text = to_pg_text(value, tname)
    assert text is not None
    if tname in _NUMERIC_TYPES:
        if opts.numeric_data_types_as_string:
            return _enc(text)
        if isinstance(value, (float, Decimal)) and not _finite(value):
            return b"null"
        return text.encode()
    if tname == "bytea" and text.startswith("\\x"):
        text = text[2:]
    return _enc(text)


def _finite(v: float | Decimal) -> bool:
    return v.is_finite() if isinstance(v, Decimal) else (v == v and v not in (float("inf"), float("-inf")))


def _type_json(col: ColumnInfo, opts: Wal2JsonOptions, type_schemas: Mapping[int, str] | None) -> bytes:
    schema = None
    if col.type_oid not in BUILTIN_TYPE_NAMES:
        schema = (type_schemas or {}).get(col.type_oid, "public")
    out = b'"type":' + _enc(format_type(col.type_oid, col.type_modifier, col.type_name, schema))
    if opts.include_type_oids:
        out += b',"typeoid":' + str(col.type_oid).encode()
    return out


def _columns_json(cols: Sequence[ColumnInfo], values: Mapping[str, Any], opts: Wal2JsonOptions,
                  type_schemas: Mapping[int, str] | None) -> bytes:
    parts = []
    for c in cols:
        if c.name not in values:
            continue
        parts.append(b'{"name":' + _enc(c.name) + b"," + _type_json(c, opts, type_schemas) + b',"value":'
                     + _value_json(values[c.name], c, opts) + b"}")
    return b"[" + b",".join(parts) + b"]"


def _header(action: str, txn: Transaction, opts: Wal2JsonOptions) -> bytes:
    out = b'{"action":"' + action.encode() + b'"'
    if opts.include_xids:
        out += b',"xid":' + str(txn.xid).encode()
    if opts.include_timestamp:
        out += b',"timestamp":' + _enc(to_pg_text(txn.commit_timestamp, "timestamptz"))
    return out


def _txn_line(action: str, txn: Transaction, opts: Wal2JsonOptions) -> bytes:
    out = _header(action, txn, opts)
    if opts.include_lsn:
        out += (b',"lsn":"' + format_lsn(txn.commit_lsn).encode() + b'","nextlsn":"'
                + format_lsn(txn.end_lsn).encode() + b'"')
    return out + b"}"


def _change_line(ev: ChangeEvent, txn: Transaction, opts: Wal2JsonOptions,
                 primary_keys: Mapping[str, Sequence[str]] | None,
                 type_schemas: Mapping[int, str] | None) -> bytes:
    out = _header(_ACTIONS.get(ev.type, "T"), txn, opts)
    if opts.include_lsn:
        out += b',"lsn":"' + format_lsn(ev.lsn).encode() + b'"'
    out += b',"schema":' + _enc(ev.schema) + b',"table":' + _enc(ev.table)
    if ev.type == "TRUNCATE":
        return out + b"}"
    cols = ev.columns
    if ev.type != "DELETE":
        out += b',"columns":' + _columns_json(cols, ev.record or {}, opts, type_schemas)
    if ev.type != "INSERT":
        if ev.old_record is not None:
            identity: Mapping[str, Any] = ev.old_record
        else:  # key unchanged: the plugin prints the identity from the new row
            identity = ev.primary_key
        if identity:
            out += b',"identity":' + _columns_json(cols, identity, opts, type_schemas)
    if opts.include_pk:
        qualified = f"{ev.schema}.{ev.table}"
        if primary_keys is not None and qualified in primary_keys:
            pk_names = list(primary_keys[qualified])
        else:
            pk_names = [c.name for c in cols if c.is_key]
        by_name = {c.name: c for c in cols}
        out += b',"pk":[' + b",".join(
            b'{"name":' + _enc(n) + b"," + _type_json(by_name[n], opts, type_schemas) + b"}"
            for n in pk_names if n in by_name) + b"]"
    return out + b"}"


def render_wal2json(txn: Transaction, options: Wal2JsonOptions = DEFAULT_OPTIONS, *,
                    primary_keys: Mapping[str, Sequence[str]] | None = None,
                    type_schemas: Mapping[int, str] | None = None) -> list[bytes]:
    """The wal2json format-version 2 lines for ``txn`` (see the module docstring).

    ``primary_keys`` maps "schema.table" to its primary key column names, for tables whose
    replica identity is not their primary key (FULL, USING INDEX, NOTHING).
    ``type_schemas`` maps a user-defined type's OID to its schema (``decoder.type_schemas``):
    the plugin prints such types schema-qualified (``public.mood``) to a client with an empty
    search_path such as pg_recvlogical; unknown ones are qualified with ``public``."""
    changes = [e for e in txn.events if isinstance(e, ChangeEvent)]
    if not changes:
        return []
    lines = [_txn_line("B", txn, options)]
    lines.extend(_change_line(e, txn, options, primary_keys, type_schemas) for e in changes)
    lines.append(_txn_line("C", txn, options))
    return lines
