"""Benchmark: SubscriptionIndex.match vs naive linear evaluation, 100k subscriptions on one table.

    python bench/filter_match.py [--subs 100000] [--changes 20000] [--linear-changes 100] [--linear-updates 10]
                                 [--seed 1]

Subscriptions: 90% ``user_id = X``, 5% ``status IN (...)`` (2-4 values), 5% ``amount BETWEEN lo AND hi``.
Changes: random INSERTs (and UPDATEs with the full old row, timed for the index only). Both matchers use
the same compiled predicates; the linear one evaluates every subscription (what a system without an
index does); the script asserts that both give the same subscriptions (INSERT) and the same
transitions (UPDATE). Two workloads are run:

- ``selective``: 1000 distinct statuses, ranges up to 200 wide on [0, 100000): few subscriptions
  match each change, so the time is the index's own overhead;
- ``broad``: 8 statuses, ranges up to 5000 wide: hundreds of subscriptions match each change and
  building the result list dominates (that cost is the same for any matcher that reports them).

Prints median and p99 microseconds per change, the mean number of matches, and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdc.events import ChangeEvent, ColumnInfo, TableSchema  # noqa: E402
from filters import SubscriptionIndex, compile_filter  # noqa: E402

SCHEMA = TableSchema("public", "orders", (
    ColumnInfo("id", 20, "int8", is_key=True),
    ColumnInfo("user_id", 20, "int8"),
    ColumnInfo("status", 25, "text"),
    ColumnInfo("amount", 1700, "numeric"),
    ColumnInfo("created_at", 1184, "timestamptz"),
), replica_identity="full")
USERS = 100_000
AMOUNT_RANGE = 100_000


def build_filters(n: int, statuses: list[str], max_width: int, rng: random.Random) -> list:
    cache: dict = {}
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.90:
            spec = f"user_id = {rng.randrange(1, USERS + 1)}"
        elif r < 0.95:
            picks = rng.sample(statuses, rng.randint(2, 4))
            spec = "status IN (" + ", ".join(f"'{s}'" for s in picks) + ")"
        else:
            lo = rng.randrange(0, AMOUNT_RANGE)
            spec = f"amount BETWEEN {lo} AND {lo + rng.randint(1, max_width)}"
        flt = cache.get(spec)
        if flt is None:
            flt = cache[spec] = compile_filter(spec, SCHEMA)
        out.append(flt)
    return out


def make_row(i: int, statuses: list[str], rng: random.Random) -> dict:
    return {"id": i, "user_id": rng.randrange(1, USERS + 1), "status": rng.choice(statuses),
            "amount": Decimal(rng.randrange(0, AMOUNT_RANGE * 100)) / 100,
            "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def run(name: str, args, statuses: list[str], max_width: int) -> None:
    rng = random.Random(args.seed)
    filters = build_filters(args.subs, statuses, max_width, rng)
    index = SubscriptionIndex(SCHEMA)
    t0 = time.perf_counter()
    for i, flt in enumerate(filters):
        index.add(i, flt)
    add_us = (time.perf_counter() - t0) / len(filters) * 1e6

    # Each change is built right before it is matched, as the CDC worker decodes then matches:
    # the event is fresh in the CPU cache, as it would be in the pipeline (building is not timed).
    rows = [make_row(i, statuses, rng) for i in range(args.changes)]

    def insert(r: dict) -> ChangeEvent:
        return ChangeEvent(schema="public", table="orders", type="INSERT", record=dict(r), primary_key={"id": r["id"]})

    def update(r: dict) -> ChangeEvent:
        return ChangeEvent(schema="public", table="orders", type="UPDATE", record=make_row(r["id"], statuses, rng),
                           old_record=dict(r), old_record_complete=True, primary_key={"id": r["id"]})

    inserts = [insert(r) for r in rows]  # for the linear run and the per-kind breakdown
    gc.disable()
    try:
        index_times, fanout = [], 0
        for r in rows:
            ev = insert(r)
            t = time.perf_counter()
            m = index.match(ev)
            index_times.append(time.perf_counter() - t)
            fanout += len(m)
        update_times = []
        for r in rows[: args.changes // 4]:
            ev = update(r)
            t = time.perf_counter()
            index.match(ev)
            update_times.append(time.perf_counter() - t)

        pairs = list(enumerate(filters))
        linear_times = []
        for ev in inserts[: args.linear_changes]:
            t = time.perf_counter()
            rec = ev.record
            got = [i for i, f in pairs if f.matches(rec)]
            linear_times.append(time.perf_counter() - t)
            expected = sorted(x.sub_id for x in index.match(ev))
            assert sorted(got) == expected, "index and linear evaluation disagree"
        # UPDATE with the full old row: the same transitions as evaluating both rows for every filter
        for r in rows[: args.linear_updates]:
            ev = update(r)
            got = []
            for i, f in pairs:
                nv, ov = f.matches(ev.record), f.matches(ev.old_record)
                if nv or ov:
                    got.append((i, "stay" if nv and ov else "enter" if nv else "leave"))
            assert sorted(got) == sorted(index.match(ev)), "index and linear evaluation disagree on an UPDATE"
    finally:
        gc.enable()

    # where the time goes: the same changes against an index of one kind of filter only
    parts = {}
    for kind in ("user_id", "status", "amount"):
        part = SubscriptionIndex(SCHEMA)
        for i, flt in enumerate(filters):
            if kind in flt.columns:
                part.add(i, flt)
        gc.disable()
        try:
            times = []
            for r in rows:
                ev = insert(r)
                t = time.perf_counter()
                part.match(ev)
                times.append(time.perf_counter() - t)
        finally:
            gc.enable()
        parts[kind] = (len(part), statistics.median(times) * 1e6)

    t0 = time.perf_counter()
    for i in range(len(filters)):
        index.remove(i)
    remove_us = (time.perf_counter() - t0) / len(filters) * 1e6

    med_i, p99_i = statistics.median(index_times) * 1e6, percentile(index_times, 0.99) * 1e6
    med_l, p99_l = statistics.median(linear_times) * 1e6, percentile(linear_times, 0.99) * 1e6
    print(f"[{name}] {args.subs} subscriptions, {len(rows)} changes (linear: {len(linear_times)}), "
          f"mean matches per change {fanout / len(rows):.1f}")
    print(f"  index  INSERT        median {med_i:9.1f} us   p99 {p99_i:9.1f} us")
    print(f"  index  UPDATE (FULL) median {statistics.median(update_times) * 1e6:9.1f} us   "
          f"p99 {percentile(update_times, 0.99) * 1e6:9.1f} us")
    print(f"  linear INSERT        median {med_l:9.1f} us   p99 {p99_l:9.1f} us")
    print(f"  ratio linear/index (median) {med_l / med_i:8.0f}x   (p99) {p99_l / p99_i:8.0f}x")
    print("  index INSERT median by kind alone: " + ", ".join(
        f"{kind} ({n} subs) {us:.1f} us" for kind, (n, us) in parts.items()))
    print(f"  add {add_us:.2f} us/subscription, remove {remove_us:.2f} us/subscription (GC on)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subs", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--linear-changes", type=int, default=100)
    ap.add_argument("--linear-updates", type=int, default=10, help="UPDATEs checked against linear evaluation")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_load()}")
    run("selective", args, [f"st_{i:04d}" for i in range(1000)], 200)
    run("broad", args, ["pending", "paid", "packed", "shipped", "delivered", "returned", "refunded", "cancelled"],
        5000)
    print(f"load average at the end {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
