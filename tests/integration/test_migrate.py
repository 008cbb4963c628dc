"""Migrations: applied in order, once each, also when several nodes start at the same time."""

from __future__ import annotations

import asyncio
import shutil

import psycopg
import pytest

from gateway.cli import main
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


def test_cli_migrate(pg_dsn, capsys, monkeypatch):
    monkeypatch.delenv("NUVEM_DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    assert "--database-url" in capsys.readouterr().err
    assert main(["migrate", "--database-url", pg_dsn]) == 0
    assert "0001_init.sql" in capsys.readouterr().out
    assert main(["migrate", "--database-url", pg_dsn]) == 0
    assert "up to date" in capsys.readouterr().out


def test_sql_dir_is_the_repository_sql_folder():
    assert SQL_DIR.name == "sql" and (SQL_DIR / "0001_init.sql").exists()
