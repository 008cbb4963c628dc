"""Schema migrations: ``sql/NNNN_*.sql`` applied in order, once each.

``nuvem-realtime migrate [--database-url URL]`` runs them by hand; the server runs them at
start. Applied names are recorded in ``nuvem_realtime.schema_migrations``; an advisory lock
makes concurrent starts (several nodes) apply each file exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path

import psycopg

import gateway

SQL_DIR = Path(gateway.__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_]+\.sql$")
_LOCK_ID = 0x6E7576656D  # "nuvem"


class MigrationError(RuntimeError):
    """A migration file failed; nothing of that file was applied (each runs in a transaction)."""


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    files = sorted(p for p in sql_dir.glob("*.sql") if _NAME.match(p.name))
    if not files:
        raise MigrationError(f"no migrations found in {sql_dir} (expected files like 0001_init.sql)")
    return files


async def migrate(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every not yet applied migration in order; return the names applied."""
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await conn.execute("CREATE SCHEMA IF NOT EXISTS nuvem_realtime")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS nuvem_realtime.schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            cur = await conn.execute("SELECT name FROM nuvem_realtime.schema_migrations")
            done = {r[0] for r in await cur.fetchall()}
            for path in migration_files(sql_dir):
                if path.name in done:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(path.read_text())
                        await conn.execute(
                            "INSERT INTO nuvem_realtime.schema_migrations (name) VALUES (%s)", (path.name,))
                except psycopg.Error as e:
                    raise MigrationError(f"migration {path.name} failed: {e}") from e
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None,
                        help="Postgres URL (default: $NUVEM_DATABASE_URL)")


def run(args: argparse.Namespace) -> int:
    dsn = args.database_url or os.environ.get("NUVEM_DATABASE_URL")
    if not dsn:
        print("nuvem-realtime migrate: no database; pass --database-url or set NUVEM_DATABASE_URL",
              file=sys.stderr)
        return 2
    try:
        names = asyncio.run(migrate(dsn))
    except (MigrationError, psycopg.OperationalError) as e:
        print(f"nuvem-realtime migrate: {e}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(names) if names else "schema is up to date")
    return 0
