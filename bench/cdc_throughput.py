"""CDC throughput: drain a 200k-row-change backlog with our stream (replication + decoder + worker
loop) and with pg_recvlogical (pgoutput, same publication), in the same run; print the ratio.

    python bench/cdc_throughput.py [--rows 200000] [--rounds 3] [--profile out.prof]

Setup: a throwaway cluster (cdc.local_postgres), one table, one publication, and before the backlog
is written, one slot per drain (so every drain reads exactly the same WAL). Backlog: one large
transaction of rows/2 INSERTs, then rows/2 changes in transactions of 10 rows (UPDATEs and
INSERTs alternating). Each drain runs alone (2 shared cores); the best round of each side counts.
Target: ours >= 0.8x pg_recvlogical.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from cdc.events import ChangeEvent, parse_lsn  # noqa: E402
from cdc.local_postgres import LocalPostgres  # noqa: E402
from cdc.sink import NullSink  # noqa: E402
from cdc.worker import ReplicationWorker  # noqa: E402

PUBLICATION = "bench_pub"


def build_backlog(dsn: str, rows: int, slots: list[str]) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2),"
                     " active boolean, created timestamptz NOT NULL DEFAULT now(), tags text[])")
        conn.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE bench")
        for s in slots:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (s,))
        big = rows // 2
        conn.execute("INSERT INTO bench (id, name, amount, active, tags) SELECT g, 'customer ' || g,"
                     " (g %% 10000) / 100.0, g %% 2 = 0, ARRAY['a', 'b'] FROM generate_series(1, %s) g", (big,))
        small_txns = (rows - big) // 10
        next_id = big + 1
        with conn.pipeline() as pipeline:
            for i in range(small_txns):
                if i % 2 == 0:
                    lo = (i * 10) % big + 1
                    conn.execute("UPDATE bench SET amount = amount + 1 WHERE id BETWEEN %s AND %s", (lo, lo + 9))
                else:
                    conn.execute("INSERT INTO bench (id, name, amount, active, tags) SELECT g, 'new ' || g,"
                                 " 1.5, true, ARRAY['c'] FROM generate_series(%s, %s) g", (next_id, next_id + 9))
                    next_id += 10
                pipeline.sync()  # ends the implicit transaction: one commit per statement
        return conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]


def drain_pg_recvlogical(pg: LocalPostgres, slot: str, endpos: str) -> float:
    exe = shutil.which("pg_recvlogical") or str(pg.bindir / "pg_recvlogical")
    t0 = time.perf_counter()
    subprocess.run([exe, "-d", pg.dsn, "--slot", slot, "--start", "--no-loop", "-o", "proto_version=1",
                    "-o", f"publication_names={PUBLICATION}", "--endpos", endpos, "-f", "/dev/null"],
                   check=True)
    return time.perf_counter() - t0


class _CountingSink(NullSink):
    """NullSink that counts row changes and stops the worker at ``endpos`` (like --endpos)."""

    def __init__(self, end: int) -> None:
        super().__init__()
        self.end = end
        self.rows = 0
        self.worker: ReplicationWorker | None = None

    async def deliver(self, txn) -> None:
        await super().deliver(txn)
        self.rows += sum(1 for e in txn.events if type(e) is ChangeEvent)
        if txn.end_lsn >= self.end and self.worker is not None:
            self.worker.request_stop()


def drain_ours(pg: LocalPostgres, slot: str, endpos: str, profile: str | None) -> tuple[float, int]:
    sink = _CountingSink(parse_lsn(endpos))
    worker = ReplicationWorker(pg.dsn, sink, slot=slot, publication=PUBLICATION, create_publication=False)
    sink.worker = worker

    async def main() -> float:
        await worker.prepare()
        t0 = time.perf_counter()
        await worker._stream_forever()  # noqa: SLF001 - prepare() is timed apart
        return time.perf_counter() - t0

    if profile:
        prof = cProfile.Profile()
        elapsed = prof.runcall(asyncio.run, main())
        prof.dump_stats(profile)
    else:
        elapsed = asyncio.run(main())
    return elapsed, sink.rows


def drain_transport_only(pg: LocalPostgres, slot: str, endpos: str) -> float:
    """Our replication layer alone (no decoding): where the time goes when compared with ours."""
    from cdc.replication import ReplicationConnection, XLogData

    end = parse_lsn(endpos)

    async def main() -> float:
        rc = await ReplicationConnection.connect(pg.dsn)
        t0 = time.perf_counter()
        await rc.start(slot, 0, {"proto_version": "1", "publication_names": PUBLICATION})
        done = False
        while not done:
            for m in await rc.read_messages(timeout=5):
                if type(m) is XLogData and m.payload[:1] == b"C" and int.from_bytes(m.payload[10:18]) >= end:
                    done = True
                elif type(m) is not XLogData and m.wal_end >= end:
                    done = True
        elapsed = time.perf_counter() - t0
        await rc.close()
        return elapsed

    return asyncio.run(main())


def capture_payloads(dsn: str, slot: str) -> list[tuple[bytes, int]]:
    """The slot's pgoutput messages (what the walsender sends us), for the decoder-only figure."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes("
                            "%s, NULL, NULL, 'proto_version', '1', 'publication_names', %s)",
                            (slot, PUBLICATION)).fetchall()
    return [(bytes(data), parse_lsn(lsn)) for lsn, data in rows]


def decode_only(payloads: list[tuple[bytes, int]], rows: int) -> float:
    """Our decoder alone (make_decoder('pgoutput').feed) over captured payloads; GC on as usual."""
    from cdc.decoding import make_decoder

    decoder = make_decoder("pgoutput")
    feed = decoder.feed
    seen = 0
    t0 = time.perf_counter()
    for payload, lsn in payloads:
        for txn in feed(payload, lsn):
            seen += sum(1 for e in txn.events if type(e) is ChangeEvent)
    elapsed = time.perf_counter() - t0
    if seen != rows:
        raise SystemExit(f"error: the decoder saw {seen} row changes, expected {rows}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default=None, help="write a cProfile of our last drain to this file")
    args = ap.parse_args()
    import structlog
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))

    with LocalPostgres() as pg:
        ours = [f"ours_{i}" for i in range(args.rounds)]
        peer = [f"peer_{i}" for i in range(args.rounds)]
        transport = [f"transport_{i}" for i in range(args.rounds)]
        t0 = time.perf_counter()
        endpos = build_backlog(pg.dsn, args.rows, ours + peer + transport + ["decoder_only"])
        print(f"backlog: {args.rows} row changes written in {time.perf_counter() - t0:.1f}s, end {endpos}"
              f" (load average {os.getloadavg()[0]:.1f})")
        best = {"peer": float("inf"), "ours": float("inf"), "transport": float("inf"), "decoder": float("inf")}
        payloads: list[tuple[bytes, int]] = []
        ratios: list[float] = []
        for i in range(args.rounds):
            tp = drain_pg_recvlogical(pg, peer[i], endpos)
            to, n = drain_ours(pg, ours[i], endpos, args.profile if i == args.rounds - 1 else None)
            if n != args.rows:
                print(f"error: our drain saw {n} row changes, expected {args.rows}", file=sys.stderr)
                return 1
            tt = drain_transport_only(pg, transport[i], endpos)
            if not payloads:
                payloads = capture_payloads(pg.dsn, "decoder_only")
            td = decode_only(payloads, args.rows)
            print(f"round {i + 1}: pg_recvlogical {args.rows / tp:,.0f} rows/s ({tp:.2f}s)   "
                  f"ours {args.rows / to:,.0f} rows/s ({to:.2f}s, {tp / to:.2f}x)   "
                  f"replication layer only {args.rows / tt:,.0f} rows/s ({tt:.2f}s)   "
                  f"decoder only {args.rows / td:,.0f} rows/s ({td:.2f}s)")
            ratios.append(tp / to)
            for key, t in (("peer", tp), ("ours", to), ("transport", tt), ("decoder", td)):
                best[key] = min(best[key], t)
        rp, ro, rt, rd = (args.rows / best[k] for k in ("peer", "ours", "transport", "decoder"))
        print(f"best of {args.rounds} rounds:")
        print(f"  pg_recvlogical (pgoutput -> /dev/null): {rp:,.0f} rows/s")
        print(f"  ours (replication + pgoutput decoder + worker loop -> NullSink): {ro:,.0f} rows/s")
        print(f"  ours, replication layer only (no decoding): {rt:,.0f} rows/s ({rt / rp:.2f}x)")
        print(f"  ours, decoder only (captured payloads, no IO): {rd:,.0f} rows/s")
        ratios.sort()
        print(f"  per-round ratio (same conditions): min {ratios[0]:.2f}x, median {ratios[len(ratios) // 2]:.2f}x,"
              f" max {ratios[-1]:.2f}x; load average now {os.getloadavg()[0]:.1f}")
        print(f"ratio ours/pg_recvlogical (best of each): {ro / rp:.2f}x (target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
