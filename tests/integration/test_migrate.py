"""Migrations: applied in order, once each, also when several nodes start at the same time."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from gateway.migrate import SQL_DIR, MigrationError, migrate, migration_files


async def test_migrate_applies_every_file_once(pg_dsn):
    names = [p.name for p in migration_files()]
    assert names[0] == "0001_init.sql" and names == sorted(names)
    assert await migrate(pg_dsn) == names
    assert await migrate(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT name FROM nuvem_realtime.schema_migrations ORDER BY name").fetchall()
        assert [r[0] for r in rows] == names
        assert conn.execute("SELECT to_regclass('nuvem_realtime.history')").fetchone()[0] is not None


async def test_concurrent_starts_apply_each_file_exactly_once(pg_dsn):
    results = await asyncio.gather(*(migrate(pg_dsn) for _ in range(4)))
    applied = [name for r in results for name in r]
    assert sorted(applied) == [p.name for p in migration_files()]


async def test_a_failing_migration_names_the_file_and_applies_nothing_of_it(pg_dsn, tmp_path):
    for p in migration_files():
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "9999_broken.sql").write_text("CREATE TABLE nuvem_realtime.ok_table (x int);\nSELECT nonsense(;")
    with pytest.raises(MigrationError, match="9999_broken.sql"):
        await migrate(pg_dsn, tmp_path)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('nuvem_realtime.ok_table')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM nuvem_realtime.schema_migrations WHERE name = '9999_broken.sql'"
                            ).fetchone()[0] == 0


def test_cli_migrate(pg_dsn):
    # a subprocess: the real command line, and cli.main's global logging setup stays out of this process
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "NUVEM_DATABASE_URL"}
        return subprocess.run([sys.executable, "-m", "gateway.cli", "migrate", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    missing = cli()
    assert missing.returncode == 2 and "--database-url" in missing.stderr
    first = cli("--database-url", pg_dsn)
    assert first.returncode == 0 and "0001_init.sql" in first.stdout, first.stderr
    again = cli("--database-url", pg_dsn)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_sql_dir_is_the_repository_sql_folder():
    assert SQL_DIR.name == "sql" and (SQL_DIR / "0001_init.sql").exists()
