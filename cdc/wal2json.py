"""Sans-IO decoder for the wal2json output plugin, ``format-version`` 2, into ``Transaction``s.

Each XLogData payload is one JSON object with an ``action``: B (begin), C (commit), I, U, D
(row changes), T (truncate), M (logical message: ignored). The decoder asks the plugin for the
options in ``WAL2JSON_OPTIONS``: xids, commit timestamps, LSNs, type names *and* OIDs, the
primary key, and numbers as strings (``numeric-data-types-as-string``) so that numeric values
stay exact and ``NaN``/``Infinity`` are not printed as ``null``.

What differs from pgoutput input (wal2json sends less):

- No Relation messages: a table's shape is learnt from the columns of its INSERTs/UPDATEs, and a
  ``SchemaChangeEvent`` comes out when that shape changes (and the first time a table is seen).
- Unchanged TOAST columns are simply absent from an UPDATE's columns. They are named in
  ``unchanged_toast`` when the table's shape is already known (a column the table has and the
  UPDATE lacks); right after a restart, before any INSERT/UPDATE of that table carried it, the
  column is absent without being named.
- ``is_key`` / ``primary_key`` come from the plugin's ``pk`` (the primary key) for INSERT, and
  from ``identity`` (the replica identity columns) for UPDATE/DELETE.
- bytea values are printed by wal2json as bare hex (``0a0b``); they are turned back into
  Postgres' ``\\x0a0b`` form.

Malformed input raises ``Wal2JsonError`` naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from cdc.assembler import TableMatcher
from cdc.events import ChangeEvent, ColumnInfo, SchemaChangeEvent, Transaction, parse_lsn
from cdc.values import BUILTIN_TYPE_NAMES, converter_for, format_type

__all__ = ["Wal2JsonError", "Wal2JsonDecoder", "WAL2JSON_OPTIONS", "add_tables_option",
           "typmod_from_type"]

WAL2JSON_OPTIONS: dict[str, str] = {
    "format-version": "2",
    "include-xids": "1",
    "include-timestamp": "1",
    "include-lsn": "1",
    "include-types": "1",
    "include-typmod": "1",
    "include-type-oids": "1",
    "include-pk": "1",
    "include-domain-data-type": "1",  # a domain's "type" is its base type's (its OID stays)
}

# numbers keep their exact text: floats are parsed as Decimal, then converted by column type
_decode_json = msgspec.json.Decoder(float_hook=Decimal).decode


class Wal2JsonError(ValueError):
    """A wal2json payload is not what format-version 2 prints. Whose fault: the stream (e.g. the
    slot was started with format-version 1, or options other than ``WAL2JSON_OPTIONS``).
    Hint: start replication with ``Wal2JsonDecoder.start_options()``."""


def _escape_table_name(name: str) -> str:
    return re.sub(r"([ ',.*\\])", r"\\\1", name)


def add_tables_option(tables: Iterable[str]) -> str:
    """wal2json's ``add-tables`` value for our ``tables`` filter (bare "t" means "*.t")."""
    out = []
    for t in tables:
        schema, dot, table = t.strip().partition(".")
        if dot:
            out.append(f"{_escape_table_name(schema)}.{_escape_table_name(table)}")
        elif schema:
            out.append(f"*.{_escape_table_name(schema)}")
    return ",".join(out)


_TYPMOD_RE = re.compile(r"^(?P<base>[a-z ]+?)\((?P<args>-?\d+(?:,-?\d+)?)\)(?P<rest>.*)$")


def typmod_from_type(type_text: str) -> int:
    """The typmod behind a wal2json type string like ``character varying(20)`` (-1 if none or
    not recoverable, e.g. interval field restrictions)."""
    text = type_text[:-2] if type_text.endswith("[]") else type_text
    m = _TYPMOD_RE.match(text)
    if not m:
        return -1
    base, args = m.group("base"), m.group("args")
    if base in ("character varying", "character"):
        return int(args) + 4
    if base == "numeric":
        p, _, s = args.partition(",")
        return ((int(p) << 16) | (int(s or 0) & 0x7FF)) + 4
    if base in ("time", "timestamp", "bit", "bit varying", "interval"):
        return int(args) if "," not in args else -1
    return -1


# format_type spelling of a built-in type -> its typname ("integer" -> "int4")
_SQL_NAMES: dict[str, str] = {}
for _oid, _name in BUILTIN_TYPE_NAMES.items():
    if not _name.startswith("_"):
        _SQL_NAMES.setdefault(format_type(_oid, -1, _name).strip('"'), _name)
_SQL_NAMES.update({"character": "bpchar", "bit": "bit", "time": "time", "timestamp": "timestamp"})


def _type_name(oid: int | None, type_text: str | None) -> str:
    if oid is not None:
        name = BUILTIN_TYPE_NAMES.get(oid)
        if name:
            return name
    if not type_text:
        return "unknown"
    text = type_text
    is_array = text.endswith("[]")
    if is_array:
        text = text[:-2]
    text = re.sub(r"\(\d+(,-?\d+)?\)", "", text)  # typmods: numeric(10,2), timestamp(3) with ...
    if text.startswith("interval "):  # interval day to second
        text = "interval"
    builtin = _SQL_NAMES.get(text)
    if builtin:  # a domain over a built-in type (include-domain-data-type)
        return ("_" + builtin) if is_array else builtin
    if '"' in text:  # "my schema"."My Type" -> My Type
        parts = re.findall(r'"((?:[^"]|"")*)"|([^.]+)', text)
        text = (parts[-1][0].replace('""', '"') or parts[-1][1]) if parts else text
    else:
        text = text.rsplit(".", 1)[-1]
    return ("_" + text) if is_array else text


def _type_schema(type_text: str) -> str | None:
    text = re.sub(r"(\[\])?$", "", type_text)
    text = re.sub(r"\(.*\)$", "", text)
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', text)
    if len(parts) < 2:
        return None
    quoted, plain = parts[-2]
    return quoted.replace('""', '"') if quoted else plain


class _Table:
    __slots__ = ("columns", "names")

    def __init__(self, columns: tuple[ColumnInfo, ...]) -> None:
        self.columns = columns
        self.names = tuple(c.name for c in columns)


class Wal2JsonDecoder:
    """The ``Decoder`` for a wal2json slot (see ``cdc.decoding``)."""

    plugin = "wal2json"

    def __init__(self, tables: list[str] | None = None, *, numeric_as_string: bool = False) -> None:
        self.numeric_as_string = numeric_as_string
        self._tables_filter = list(tables or [])
        self._match = TableMatcher(tables)
        self._known: dict[tuple[str, str], _Table] = {}
        self._txn: Transaction | None = None
        self.type_schemas: dict[int, str] = {}  # user-defined type OID -> schema (when printed)

    def start_options(self, *, publication: str | None = None,
                      tables: list[str] | None = None) -> dict[str, str]:
        opts = dict(WAL2JSON_OPTIONS)
        if self.numeric_as_string:
            opts["numeric-data-types-as-string"] = "1"
        wanted = tables if tables is not None else self._tables_filter
        if wanted:
            opts["add-tables"] = add_tables_option(wanted)
        return opts

    def in_transaction(self) -> bool:
        return self._txn is not None

    def feed(self, payload: bytes, wal_start: int) -> list[Transaction]:
        try:
            obj = _decode_json(payload)
        except msgspec.DecodeError as e:
            raise Wal2JsonError(f"wal2json payload is not JSON ({e}): {payload[:80]!r}") from e
        if not isinstance(obj, dict) or "action" not in obj:
            raise Wal2JsonError(
                f"wal2json payload has no 'action' (format-version 1 output?): {payload[:80]!r}")
        action = obj["action"]
        try:
            if action in ("I", "U", "D"):
                self._change(obj, wal_start)
            elif action == "B":
                self._begin(obj, wal_start)
            elif action == "C":
                return [self._commit(obj)]
            elif action == "T":
                self._truncate(obj, wal_start)
            elif action == "M":
                pass  # pg_logical_emit_message(): not a change event
            else:
                raise Wal2JsonError(f"unknown wal2json action {action!r}")
        except Wal2JsonError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise Wal2JsonError(
                f"wal2json {action!r} object lacks or mistypes a field ({type(e).__name__}: {e}):"
                f" {payload[:120]!r}") from e
        return []

    # -- actions ---------------------------------------------------------------------------
    def _begin(self, obj: dict[str, Any], wal_start: int) -> None:
        if self._txn is not None:
            raise Wal2JsonError(f"B for xid {obj.get('xid')} while xid {self._txn.xid} is open")
        ts = converter_for("timestamptz")(obj["timestamp"])
        if not isinstance(ts, datetime):
            raise Wal2JsonError(f"wal2json B has a bad timestamp {obj['timestamp']!r}")
        self._txn = Transaction(
            xid=int(obj["xid"]), begin_lsn=wal_start, commit_lsn=parse_lsn(obj["lsn"]),
            end_lsn=parse_lsn(obj["nextlsn"]), commit_timestamp=ts, events=[])

    def _commit(self, obj: dict[str, Any]) -> Transaction:
        txn = self._txn
        if txn is None:
            raise Wal2JsonError("wal2json C without a B")
        self._txn = None
        if "nextlsn" in obj:
            txn.end_lsn = parse_lsn(obj["nextlsn"])
        if "lsn" in obj:
            txn.commit_lsn = parse_lsn(obj["lsn"])
        return txn

    def _open(self) -> Transaction:
        if self._txn is None:
            raise Wal2JsonError("wal2json change outside a transaction (no B): start the slot"
                                " with include-transaction on (the default)")
        return self._txn

    def _truncate(self, obj: dict[str, Any], wal_start: int) -> None:
        txn = self._open()
        schema, table = obj["schema"], obj["table"]
        if not self._match(schema, table):
            return
        known = self._known.get((schema, table))
        lsn = parse_lsn(obj["lsn"]) if "lsn" in obj else wal_start
        # wal2json prints one T per table and no options: the group is what shares this LSN
        group = [f"{e.schema}.{e.table}" for e in txn.events
                 if isinstance(e, ChangeEvent) and e.type == "TRUNCATE" and e.lsn == lsn]
        group.append(f"{schema}.{table}")
        for e in txn.events:
            if isinstance(e, ChangeEvent) and e.type == "TRUNCATE" and e.lsn == lsn:
                e.truncated = tuple(group)
        txn.events.append(ChangeEvent(
            schema=schema, table=table, type="TRUNCATE", columns=known.columns if known else (),
            lsn=lsn, commit_lsn=txn.commit_lsn, commit_timestamp=txn.commit_timestamp,
            xid=txn.xid, truncated=tuple(group)))

    def _values(self, items: list[dict[str, Any]], key_names: set[str]) -> tuple[
            dict[str, Any], list[ColumnInfo]]:
        record: dict[str, Any] = {}
        infos: list[ColumnInfo] = []
        for col in items:
            name = col["name"]
            type_text = col.get("type")
            oid = col.get("typeoid")
            tname = _type_name(oid, type_text)
            if oid is not None and type_text and oid not in BUILTIN_TYPE_NAMES:
                schema = _type_schema(type_text)
                if schema:
                    self.type_schemas[int(oid)] = schema
            info = ColumnInfo(name, int(oid) if oid is not None else 0, tname,
                              typmod_from_type(type_text) if type_text else -1, name in key_names)
            infos.append(info)
            record[name] = _convert(col.get("value"), tname)
        return record, infos

    def _change(self, obj: dict[str, Any], wal_start: int) -> None:
        txn = self._open()
        schema, table = obj["schema"], obj["table"]
        if not self._match(schema, table):
            return
        action = obj["action"]
        lsn = parse_lsn(obj["lsn"]) if "lsn" in obj else wal_start
        pk_names = [c["name"] for c in obj.get("pk") or ()]
        identity_items = obj.get("identity")
        identity_names = [c["name"] for c in identity_items] if identity_items else []
        key_names = set(pk_names if action == "I" or not identity_names else identity_names)
        known = self._known.get((schema, table))

        record: dict[str, Any] | None = None
        toast: list[str] = []
        columns: tuple[ColumnInfo, ...]
        if action in ("I", "U"):
            record, infos = self._values(obj["columns"], key_names)
            present = {c.name for c in infos}
            if (action == "U" and known is not None and len(infos) < len(known.columns)
                    and present <= set(known.names)
                    and [n for n in known.names if n in present] == [c.name for c in infos]):
                # columns the table has but this UPDATE lacks: unchanged TOAST values
                toast = [n for n in known.names if n not in present]
                by_name = {c.name: c for c in infos}
                columns = tuple(by_name.get(c.name) or ColumnInfo(
                    c.name, c.type_oid, c.type_name, c.type_modifier, c.name in key_names)
                    for c in known.columns)
            else:
                columns = tuple(infos)
            self._learn(txn, schema, table, columns, known, lsn)
        else:
            columns = known.columns if known else ()

        old_record: dict[str, Any] | None = None
        complete = False
        if identity_items:
            old_all, _ = self._values(identity_items, key_names)
            all_names = set(known.names) if known else set(columns and (c.name for c in columns))
            is_full = (set(identity_names) >= all_names and len(identity_names) > len(pk_names)
                       and bool(all_names))
            if action == "D" and not all_names:
                is_full = len(identity_names) > len(pk_names) > 0
            if is_full:
                old_record, complete = old_all, True
            elif action == "D" or record is None or any(
                    n in record and record[n] != old_all[n] for n in identity_names):
                old_record = old_all  # key changed (or DELETE): the old key
        if action == "D":
            src = old_record or {}
            pk = {n: src[n] for n in (identity_names if not complete or not pk_names else pk_names)
                  if n in src}
            if complete:
                pk = {n: src[n] for n in identity_names}
            kind = "DELETE"
        else:
            assert record is not None
            names = identity_names if (action == "U" and identity_names) else pk_names
            pk = {n: record[n] for n in names if n in record}
            if old_record is not None:
                for n in names:
                    if n not in pk and n in old_record:
                        pk[n] = old_record[n]
            kind = "INSERT" if action == "I" else "UPDATE"
        txn.events.append(ChangeEvent(
            schema=schema, table=table, type=kind, record=record,  # type: ignore[arg-type]
            old_record=old_record, old_record_complete=complete, primary_key=pk,
            unchanged_toast=tuple(toast), columns=columns, lsn=lsn, commit_lsn=txn.commit_lsn,
            commit_timestamp=txn.commit_timestamp, xid=txn.xid))

    def _learn(self, txn: Transaction, schema: str, table: str, columns: tuple[ColumnInfo, ...],
               known: _Table | None, lsn: int) -> None:
        shape = tuple((c.name, c.type_name, c.type_modifier) for c in columns)
        if known is not None and shape == tuple(
                (c.name, c.type_name, c.type_modifier) for c in known.columns):
            return
        self._known[(schema, table)] = _Table(columns)
        txn.events.append(SchemaChangeEvent(
            schema=schema, table=table, columns=columns,
            previous_columns=known.columns if known else None, lsn=lsn,
            commit_lsn=txn.commit_lsn, commit_timestamp=txn.commit_timestamp, xid=txn.xid))


def _convert(value: Any, type_name: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)):  # a JSON number, exact text kept
        if type_name == "numeric":
            return Decimal(value)
        if type_name in ("float4", "float8"):
            return float(value)
        return value
    if type_name == "bytea":
        return "\\x" + value
    return converter_for(type_name)(value)
