"""Pytest plugin: a throwaway Postgres cluster (``wal_level=logical``) for the whole session.

Fixtures:
- ``pg_server``: the session cluster (``.dsn``, ``.dsn_for(db)``, ``.restart()``). Set
  ``NUVEM_TEST_DATABASE_URL`` to use an existing server instead (restart tests then skip).
- ``pg_dsn``: a fresh, empty database on that cluster for one test, dropped afterwards
  (with any replication slots the test left in it).

A missing Postgres is an error that says how to fix it, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from cdc.local_postgres import LocalPostgres, PostgresNotFound


class ExternalPostgres:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def dsn_for(self, dbname: str) -> str:
        parts = urlsplit(self.dsn)
        return urlunsplit(parts._replace(path="/" + dbname))

    def restart(self, mode: str = "fast") -> None:
        pytest.skip("cannot restart an external server (NUVEM_TEST_DATABASE_URL is set)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres | ExternalPostgres]:
    url = os.environ.get("NUVEM_TEST_DATABASE_URL")
    if url:
        yield ExternalPostgres(url)
        return
    try:
        pg = LocalPostgres().start()
    except PostgresNotFound as e:
        pytest.fail(f"no Postgres to test against: {e}", pytrace=False)
    try:
        yield pg
    finally:
        pg.stop()


def _drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.Error:
                pass
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.dsn_for(name)
    finally:
        try:
            _drop_database(pg_server.dsn, name)
        except psycopg.OperationalError:
            pass  # the server itself may have been stopped by the test
