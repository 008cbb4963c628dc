"""Sans-IO assembly of pgoutput messages into committed ``cdc.events.Transaction`` objects.

    asm = Assembler(tables=["public.orders"])
    for payload, wal_start in stream:
        for txn in asm.feed(decode(payload), wal_start):   # 0 or 1 committed transactions
            deliver(txn)

Contract:

- A transaction comes out once, at its Commit (or StreamCommit), with its events in WAL order.
  Rolled-back transactions never reach the output (pgoutput does not send them; streamed ones
  are dropped on StreamAbort, and an aborted subtransaction's changes are cut from the buffer).
- The relation cache is keyed by relation id and replaced by every Relation message. A Relation
  message that changes a table's columns (or is the first one seen for that table) makes the
  next change on that table be preceded by a ``SchemaChangeEvent``.
- Unchanged TOAST values are left out of ``record``/``old_record`` and named in
  ``unchanged_toast``, never turned into NULL.
- ``old_record`` follows REPLICA IDENTITY: the key columns (DEFAULT/INDEX, only when the key
  changed or on DELETE), the whole old row (FULL), ``None`` otherwise.
- With ``tables``, changes to other tables are dropped, but their transactions still come out
  (with no events) so the worker can confirm progress past them.
- A change on a relation id never described by a Relation message raises ``AssemblyError``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from cdc.events import ChangeEvent, ColumnInfo, SchemaChangeEvent, TableSchema, Transaction
from cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    PgOutputMessage,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
    StreamStop,
    Truncate,
    Type,
    Update,
    decode_tuple_into,
    pg_epoch_to_datetime,
)
from cdc.values import BUILTIN_TYPE_NAMES, converter_for, inline_kind

__all__ = ["AssemblyError", "Assembler", "TableMatcher", "compile_row_decoder"]

_REL_ID = struct.Struct(">I").unpack_from

_IDENTITY = {"d": "default", "n": "nothing", "f": "full", "i": "index"}


class AssemblyError(ValueError):
    """The message sequence is inconsistent (e.g. a change before any Relation message for its
    table, or a Commit without a Begin). Whose fault: the stream or the caller feeding it (for
    example starting mid-transaction). Hint: restart streaming from the slot's confirmed LSN."""


class TableMatcher:
    """``tables`` filter: "schema.table" matches exactly, a bare "table" matches any schema.
    ``None`` or an empty list matches everything."""

    def __init__(self, tables: Iterable[str] | None) -> None:
        self.qualified: set[tuple[str, str]] = set()
        self.bare: set[str] = set()
        self.all = not tables
        for t in tables or ():
            t = t.strip()
            if not t:
                continue
            schema, dot, table = t.partition(".")
            if dot:
                self.qualified.add((schema, table))
            else:
                self.bare.add(t)

    def __call__(self, schema: str, table: str) -> bool:
        return self.all or table in self.bare or (schema, table) in self.qualified


# -- compiled row decoders: the hot path of a stream of INSERTs / new-row UPDATEs ----------------

RowDecoder = Callable[[bytes, int, Any], "ChangeEvent | None"]

_U32_FROM = struct.Struct(">I").unpack_from

# a 1-D array literal whose elements need no unquoting: {a,b,NULL}
_SIMPLE_ARRAY = re.compile(r'\{[^{}"\\]*\}').fullmatch

_TYPED = {"int": "int({})", "numeric": "D({})", "float": "float({})", "bool": "BOOLS[{}]",
          "timestamptz": "FI({})", "timestamp": "FI({})", "date": "DFI({})"}


def compile_row_decoder(schema: TableSchema, converters: tuple[Callable[[str], Any], ...]) -> RowDecoder:
    """A function for one relation's shape: ``fn(buf, lsn, txn)`` takes an undecoded Insert, or
    Update carrying only the new row ('N' at offset 5), and returns its ``ChangeEvent`` (values
    converted, ``primary_key`` from the key columns, stamped with ``txn``'s commit LSN, time and
    xid), exactly as the general path (``decode_tuple_into`` + the converters) would.

    Each column is converted inline as ``cdc.values.inline_kind`` says, or by ``converters[i]``.
    The function returns None when the row needs the general path (an unchanged TOAST or binary
    value, a column count that does not match, a timestamp not printed in UTC) and may raise on
    any text its inline conversion does not take (e.g. ``infinity``): the caller then decodes the
    row with the general path, which gives the exact value or the precise error. So it never
    returns a value the general path would not.

    Generated once per Relation message: one straight-line block per column (no per-column calls
    or loops), the record built in one dict display. Column names enter the source only through
    ``repr``; everything else comes from fixed templates.
    """
    names = tuple(c.name for c in schema.columns)
    kinds = tuple(inline_kind(c.type_name) for c in schema.columns)
    if len(converters) != len(names) or not 0 < len(names) <= 1664:
        raise ValueError("compile_row_decoder: one converter per column, 1-1664 columns")
    ncols = struct.pack(">h", len(names))
    env: dict[str, Any] = {
        "U": _U32_FROM, "D": Decimal, "BOOLS": {"t": True, "f": False}, "FI": datetime.fromisoformat,
        "DFI": date.fromisoformat, "UTC": timezone.utc, "ChangeEvent": ChangeEvent,
        "SIMPLE_ARRAY": _SIMPLE_ARRAY, "SCHEMA": schema.schema, "TABLE": schema.table, "COLUMNS": schema.columns}
    for i, conv in enumerate(converters):
        env[f"C{i}"] = conv
    record = ", ".join(f"{n!r}: v{i}" for i, n in enumerate(names))
    pk = ", ".join(f"{c.name!r}: v{i}" for i, c in enumerate(schema.columns) if c.is_key)
    make_event = (f"return ChangeEvent(schema=SCHEMA, table=TABLE, type='INSERT' if buf[0] == 73 else"
                  f" 'UPDATE', record={{{record}}}, primary_key={{{pk}}}, columns=COLUMNS, lsn=lsn,"
                  f" commit_lsn=txn.commit_lsn, commit_timestamp=txn.commit_ts, xid=txn.xid)")
    lines = ["def row(buf, lsn, txn):",
             f"    if buf[6] != {ncols[0]} or buf[7] != {ncols[1]}:",
             "        return None",
             '    s = buf.decode("latin-1")  # one char per byte: the same offsets as in buf',
             "    if s.isascii():  # O(1) on a str: all ASCII, so every slice is the right text",
             *_row_body(kinds, ascii_only=True, indent="        "),
             "        " + make_event,
             "    # some byte >= 0x80: typed slices must be ASCII, text slices are re-decoded as UTF-8",
             *_row_body(kinds, ascii_only=False, indent="    "),
             "    " + make_event]
    exec(compile("\n".join(lines), f"<row decoder {schema.schema}.{schema.table}>", "exec"), env)  # noqa: S102
    return env["row"]


def _row_body(kinds: tuple[str, ...], *, ascii_only: bool, indent: str) -> list[str]:
    """Straight-line source reading column i's value into ``v<i>`` (see compile_row_decoder)."""
    out = ["p = 8"]
    for i, kind in enumerate(kinds):
        v = f"v{i}"
        if kind in ("str", "call", "str_array"):
            conv = [f"{v} = s[a:p]"]
            if not ascii_only:  # the latin-1 slice is right only if ASCII: else decode UTF-8
                conv.append(f"if not {v}.isascii(): {v} = buf[a:p].decode()")
            if kind == "call":
                conv.append(f"{v} = C{i}({v})")
            elif kind == "str_array":  # the common 1-D array of unquoted text elements
                conv += [f"if SIMPLE_ARRAY({v}):",
                         f"    {v} = {v}[1:-1].split(',') if len({v}) > 2 else []",
                         f"    if 'NULL' in {v}: {v} = [None if x == 'NULL' else x for x in {v}]",
                         "else:",
                         f"    {v} = C{i}({v})"]
        elif kind in _TYPED:
            if ascii_only:
                conv = [f"{v} = " + _TYPED[kind].format("s[a:p]")]
            else:  # typed output is ASCII; anything else: the general path decides
                conv = [f"{v} = s[a:p]", f"if not {v}.isascii(): return None",
                        f"{v} = " + _TYPED[kind].format(v)]
            if kind == "timestamptz":  # printed with another offset (or none): general path
                conv.append(f"if {v}.tzinfo is not UTC: return None")
            elif kind == "timestamp":
                conv.append(f"if {v}.tzinfo is not None: return None")
        else:
            raise ValueError(f"compile_row_decoder: unknown kind {kind!r}")
        out += ["if buf[p] == 116:",  # 't' text value
                "    a = p + 5",
                "    p = a + U(buf, p + 1)[0]",
                *("    " + c for c in conv),
                "elif buf[p] == 110:",  # 'n' NULL
                f"    {v} = None",
                "    p += 1",
                "else:",  # 'u' unchanged TOAST, 'b' binary: general path
                "    return None"]
    out.append("if p > len(buf): return None")
    return [indent + ln for ln in out]


class _RelationState:
    __slots__ = ("schema", "names", "converters", "key_idx", "wanted", "pending_schema_event",
                 "previous_columns", "fast_row")

    def __init__(self, schema: TableSchema, wanted: bool, previous: tuple[ColumnInfo, ...] | None,
                 changed: bool) -> None:
        self.schema = schema
        self.names = tuple(c.name for c in schema.columns)
        self.converters = tuple(converter_for(c.type_name) for c in schema.columns)
        self.key_idx = tuple(i for i, c in enumerate(schema.columns) if c.is_key)
        self.wanted = wanted
        self.fast_row: RowDecoder | None = None
        if wanted and self.names:
            self.fast_row = compile_row_decoder(schema, self.converters)
        self.pending_schema_event = changed
        self.previous_columns = previous


class _Pending:
    """Events of an open transaction (or a streamed one, keyed by its top-level xid)."""

    __slots__ = ("xid", "begin_lsn", "commit_lsn", "commit_ts", "events", "origin", "subxids")

    def __init__(self, xid: int, begin_lsn: int = 0, commit_lsn: int = 0,
                 commit_ts: datetime | None = None) -> None:
        self.xid = xid
        self.begin_lsn = begin_lsn
        self.commit_lsn = commit_lsn
        self.commit_ts = commit_ts
        self.events: list[ChangeEvent | SchemaChangeEvent] = []
        self.origin: str | None = None
        # streamed transactions only, parallel to events: the (sub)xid each event came from
        self.subxids: list[int] = []


class Assembler:
    """See the module docstring."""

    def __init__(self, tables: Iterable[str] | None = None) -> None:
        self._match = TableMatcher(tables)
        self._relations: dict[int, _RelationState] = {}
        self._types: dict[int, str] = {}
        self.type_schemas: dict[int, str] = {}  # user-defined type OID -> its schema
        self._txn: _Pending | None = None
        self._streams: dict[int, _Pending] = {}
        self._stream_xid: int | None = None  # inside StreamStart .. StreamStop

    # -- queries ---------------------------------------------------------------------------
    def in_transaction(self) -> bool:
        return self._txn is not None or bool(self._streams) or self._stream_xid is not None

    def relation(self, relation_id: int) -> TableSchema | None:
        st = self._relations.get(relation_id)
        return st.schema if st else None

    # -- input -----------------------------------------------------------------------------
    def feed(self, msg: PgOutputMessage, lsn: int = 0) -> Transaction | None:
        """One decoded message (and the WAL position it was sent at); the committed transaction
        it completes, if any."""
        kind = type(msg)
        if kind is Insert or kind is Update or kind is Delete:
            self._change(msg, lsn)  # type: ignore[arg-type]
        elif kind is Begin:
            if self._txn is not None:
                raise AssemblyError(f"Begin of xid {msg.xid} while xid {self._txn.xid} is open")
            self._txn = _Pending(msg.xid, lsn, msg.final_lsn,  # type: ignore[union-attr]
                                 pg_epoch_to_datetime(msg.commit_timestamp))  # type: ignore[union-attr]
        elif kind is Commit:
            return self._commit(msg)  # type: ignore[arg-type]
        elif kind is Relation:
            self._relation(msg)  # type: ignore[arg-type]
        elif kind is Type:
            self._types[msg.type_oid] = msg.name  # type: ignore[union-attr]
            self.type_schemas[msg.type_oid] = msg.namespace  # type: ignore[union-attr]
        elif kind is Truncate:
            self._truncate(msg, lsn)  # type: ignore[arg-type]
        elif kind is StreamStart:
            self._stream_xid = msg.xid  # type: ignore[union-attr]
            if msg.xid not in self._streams:  # type: ignore[union-attr]
                self._streams[msg.xid] = _Pending(msg.xid, lsn)  # type: ignore[union-attr]
        elif kind is StreamStop:
            self._stream_xid = None
        elif kind is StreamCommit:
            return self._stream_commit(msg)  # type: ignore[arg-type]
        elif kind is StreamAbort:
            self._stream_abort(msg)  # type: ignore[arg-type]
        elif kind is Origin:
            if self._txn is not None:
                self._txn.origin = msg.name  # type: ignore[union-attr]
        elif kind is Message:
            pass  # logical decoding messages are not change events
        else:
            raise AssemblyError(f"unexpected message {msg!r}")
        return None

    def feed_row_bytes(self, buf: bytes, lsn: int = 0) -> bool:
        """Fast path for the bulk of a stream: an undecoded Insert, or Update carrying only the
        new row, of a known relation inside a plain (not streamed) transaction. Parses and
        converts in one pass; same result as ``feed(decode_message(buf), lsn)``. Returns False
        (having done nothing) for anything else: the caller then takes the general path."""
        txn = self._txn
        if txn is None or self._stream_xid is not None or len(buf) < 8 or buf[5] != 0x4E:
            return False
        kind = buf[0]
        if kind != 0x49 and kind != 0x55:  # 'I', 'U'
            return False
        st = self._relations.get(_REL_ID(buf, 1)[0])
        if st is None:
            return False
        if not st.wanted:
            return True
        if st.pending_schema_event:
            self._schema_event(st, txn, lsn, None)
        try:
            event = st.fast_row(buf, lsn, txn)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - text the inline path does not take: the general one decides
            event = None
        if event is None:
            record, toast = decode_tuple_into(buf, 6, st.names, st.converters)
            names = st.names
            schema = st.schema
            event = ChangeEvent(
                schema=schema.schema, table=schema.table, type="INSERT" if kind == 0x49 else "UPDATE",
                record=record, primary_key={names[i]: record[names[i]] for i in st.key_idx if names[i] in record},
                unchanged_toast=toast, columns=schema.columns, lsn=lsn, commit_lsn=txn.commit_lsn,
                commit_timestamp=txn.commit_ts, xid=txn.xid)
        txn.events.append(event)
        return True

    # -- helpers ---------------------------------------------------------------------------
    def _type_name(self, oid: int) -> str:
        return BUILTIN_TYPE_NAMES.get(oid) or self._types.get(oid) or "unknown"

    def _relation(self, msg: Relation) -> None:
        columns = tuple(
            ColumnInfo(c.name, c.type_oid, self._type_name(c.type_oid), c.type_modifier, c.is_key)
            for c in msg.columns)
        schema = TableSchema(msg.namespace, msg.name, columns,
                             _IDENTITY.get(msg.replica_identity, "default"),  # type: ignore[arg-type]
                             msg.relation_id)
        old = self._relations.get(msg.relation_id)
        if old is None:
            changed, previous = True, None
        else:
            changed = (old.schema.columns != columns or old.schema.schema != schema.schema
                       or old.schema.table != schema.table)
            previous = old.schema.columns if changed else old.previous_columns
            changed = changed or old.pending_schema_event
        self._relations[msg.relation_id] = _RelationState(
            schema, self._match(schema.schema, schema.table), previous, changed)

    def _open(self, xid: int | None) -> _Pending:
        if self._stream_xid is not None:
            return self._streams[self._stream_xid]
        if self._txn is None:
            raise AssemblyError("a change arrived outside a transaction (no Begin or StreamStart)")
        return self._txn

    def _state(self, relation_id: int) -> _RelationState:
        st = self._relations.get(relation_id)
        if st is None:
            raise AssemblyError(
                f"change for relation id {relation_id} before any Relation message describing it")
        return st

    def _append(self, pending: _Pending, event: ChangeEvent | SchemaChangeEvent, xid: int | None) -> None:
        pending.events.append(event)
        if pending is not self._txn:  # streamed: remember the subtransaction (for StreamAbort)
            pending.subxids.append(xid if xid is not None else pending.xid)

    def _schema_event(self, st: _RelationState, pending: _Pending, lsn: int, xid: int | None) -> None:
        st.pending_schema_event = False
        self._append(pending, SchemaChangeEvent(
            schema=st.schema.schema, table=st.schema.table, columns=st.schema.columns,
            previous_columns=st.previous_columns, lsn=lsn, commit_lsn=pending.commit_lsn,
            commit_timestamp=pending.commit_ts, xid=pending.xid), xid)

    def _row(self, st: _RelationState, values: tuple[Any, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
        if len(values) != len(st.names):
            raise AssemblyError(f"a row of {st.schema.schema}.{st.schema.table} has {len(values)}"
                                f" values, its Relation message {len(st.names)} columns")
        record: dict[str, Any] = {}
        toast: list[str] = []
        for name, conv, v in zip(st.names, st.converters, values):
            if v.__class__ is str:
                record[name] = conv(v)
            elif v is None:
                record[name] = None
            elif v is UNCHANGED_TOAST:
                toast.append(name)
            else:  # binary format value: keep the bytes' hex form like bytea output
                record[name] = "\\x" + v.hex()
        return record, (tuple(toast) if toast else ())

    def _change(self, msg: Insert | Update | Delete, lsn: int) -> None:
        st = self._state(msg.relation_id)
        pending = self._open(msg.xid)
        if not st.wanted:
            return
        if st.pending_schema_event:
            self._schema_event(st, pending, lsn, msg.xid)
        schema = st.schema
        keys = st.key_idx
        names = st.names
        old_record = None
        complete = False
        toast: tuple[str, ...] = ()
        if type(msg) is Insert:
            record, toast = self._row(st, msg.new)
            kind = "INSERT"
            pk = {names[i]: record[names[i]] for i in keys if names[i] in record}
        elif type(msg) is Update:
            record, toast = self._row(st, msg.new)
            kind = "UPDATE"
            if msg.old is not None:
                old_all, old_toast = self._row(st, msg.old)
                if msg.old_kind == "O":
                    old_record = old_all
                    complete = not old_toast
                else:
                    old_record = {names[i]: old_all.get(names[i]) for i in keys}
            pk = {names[i]: record[names[i]] for i in keys if names[i] in record}
            if old_record is not None and len(pk) < len(keys):
                for i in keys:  # a key column left out of the new row (unchanged TOAST)
                    if names[i] not in pk and names[i] in old_record:
                        pk[names[i]] = old_record[names[i]]
        else:
            old_all, old_toast = self._row(st, msg.old)
            kind = "DELETE"
            record = None
            if msg.old_kind == "O":
                old_record = old_all
                complete = not old_toast
                toast = old_toast
            else:
                old_record = {names[i]: old_all.get(names[i]) for i in keys}
            pk = {names[i]: old_all[names[i]] for i in keys if names[i] in old_all}
        self._append(pending, ChangeEvent(
            schema=schema.schema, table=schema.table, type=kind, record=record,  # type: ignore[arg-type]
            old_record=old_record, old_record_complete=complete, primary_key=pk,
            unchanged_toast=toast, columns=schema.columns, lsn=lsn, commit_lsn=pending.commit_lsn,
            commit_timestamp=pending.commit_ts, xid=pending.xid), msg.xid)

    def _truncate(self, msg: Truncate, lsn: int) -> None:
        pending = self._open(msg.xid)
        states = [self._state(r) for r in msg.relation_ids]
        truncated = tuple(f"{s.schema.schema}.{s.schema.table}" for s in states)
        for st in states:
            if not st.wanted:
                continue
            if st.pending_schema_event:
                self._schema_event(st, pending, lsn, msg.xid)
            self._append(pending, ChangeEvent(
                schema=st.schema.schema, table=st.schema.table, type="TRUNCATE",
                columns=st.schema.columns, lsn=lsn, commit_lsn=pending.commit_lsn,
                commit_timestamp=pending.commit_ts, xid=pending.xid, truncated=truncated,
                cascade=msg.cascade, restart_identity=msg.restart_identity), msg.xid)

    def _commit(self, msg: Commit) -> Transaction:
        p = self._txn
        if p is None:
            raise AssemblyError(f"Commit at {msg.commit_lsn:X} without a Begin")
        self._txn = None
        return Transaction(xid=p.xid, begin_lsn=p.begin_lsn, commit_lsn=msg.commit_lsn,
                           end_lsn=msg.end_lsn, commit_timestamp=pg_epoch_to_datetime(msg.commit_timestamp),
                           events=p.events, origin=p.origin)

    def _stream_commit(self, msg: StreamCommit) -> Transaction:
        p = self._streams.pop(msg.xid, None)
        if p is None:  # streamed but every chunk was empty for us: still a commit to confirm
            p = _Pending(msg.xid)
        ts = pg_epoch_to_datetime(msg.commit_timestamp)
        for ev in p.events:  # commit position and time are only known now
            ev.commit_lsn = msg.commit_lsn
            ev.commit_timestamp = ts
        return Transaction(xid=p.xid, begin_lsn=p.begin_lsn, commit_lsn=msg.commit_lsn,
                           end_lsn=msg.end_lsn, commit_timestamp=ts, events=p.events, origin=p.origin)

    def _stream_abort(self, msg: StreamAbort) -> None:
        p = self._streams.get(msg.xid)
        if p is None:
            return
        if msg.subxid == msg.xid:
            cut = 0
            del self._streams[msg.xid]
        else:
            # Changes after the subtransaction's first one belong to it or to its children (the
            # abort is decoded at its WAL position, before any later change): cut from there.
            try:
                cut = p.subxids.index(msg.subxid)
            except ValueError:
                return
        self._rearm_schema_events(p.events[cut:])
        del p.events[cut:]
        del p.subxids[cut:]

    def _rearm_schema_events(self, dropped: list[ChangeEvent | SchemaChangeEvent]) -> None:
        """A schema event thrown away with an aborted change must still reach consumers: the
        next change on that table (in any transaction) carries it again."""
        for ev in dropped:
            if type(ev) is not SchemaChangeEvent:
                continue
            for st in self._relations.values():
                if (st.schema.schema, st.schema.table) == (ev.schema, ev.table) and \
                        st.schema.columns == ev.columns and not st.pending_schema_event:
                    st.pending_schema_event = True
                    st.previous_columns = ev.previous_columns
