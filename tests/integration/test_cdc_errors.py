"""Bad input and failure: each case gives a typed error that names the cause and the fix."""

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from cdc.errors import (InvalidArgument, MissingReplicationPrivilege, PluginNotInstalled,
                        PublicationNotFound, PublicationPermissionDenied, SlotInUse,
                        SlotPluginMismatch, TableNotFound, WalLevelNotLogical)
from cdc.local_postgres import LocalPostgres
from cdc.replication import ReplicationConnection
from cdc.worker import ReplicationWorker


class NullSink:
    async def deliver(self, txn) -> None:
        pass


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


def _role(pg_dsn: str, *, replication: bool) -> str:
    name = "r_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN {'REPLICATION' if replication else 'NOREPLICATION'}")
        conn.execute(f"GRANT ALL ON SCHEMA public TO {name}")
    return name


def _sql(dsn: str, *stmts: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in stmts:
            conn.execute(s)


@pytest.mark.slow
async def test_wal_level_minimal_names_setting_and_restart():
    with LocalPostgres(settings={"wal_level": "minimal", "max_wal_senders": "0"}) as pg:
        w = ReplicationWorker(pg.dsn, NullSink())
        with pytest.raises(WalLevelNotLogical) as e:
            await w.run()
    assert "wal_level=minimal" in e.value.message
    assert "wal_level = logical" in e.value.hint and "restart" in e.value.hint


async def test_missing_replication_privilege(pg_dsn):
    role = _role(pg_dsn, replication=False)
    with pytest.raises(MissingReplicationPrivilege) as e:
        await ReplicationWorker(_as_user(pg_dsn, role), NullSink()).run()
    assert role in e.value.message and f'ALTER ROLE "{role}" WITH REPLICATION' in e.value.hint
    # the replication connection itself reports the same cause
    with pytest.raises(MissingReplicationPrivilege):
        await ReplicationConnection.connect(_as_user(pg_dsn, role))


async def test_slot_active_in_another_process_names_pid(pg_dsn):
    _sql(pg_dsn, "CREATE PUBLICATION busy FOR ALL TABLES")
    rc = await ReplicationConnection.connect(pg_dsn)
    try:
        await rc.create_slot("busy_slot", "pgoutput")
        await rc.start("busy_slot", 0, {"proto_version": "1", "publication_names": "busy"})
        w = ReplicationWorker(pg_dsn, NullSink(), slot="busy_slot", publication="busy")
        with pytest.raises(SlotInUse) as e:
            await w.run()
        assert e.value.pid == rc.backend_pid
        assert f"server process {rc.backend_pid}" in e.value.message
        assert f"pg_terminate_backend({rc.backend_pid})" in e.value.hint and "--slot" in e.value.hint
        # a second START_REPLICATION on the same slot maps the server error the same way
        other = await ReplicationConnection.connect(pg_dsn)
        with pytest.raises(SlotInUse) as e2:
            await other.start("busy_slot", 0, {"proto_version": "1", "publication_names": "busy"})
        assert e2.value.pid == rc.backend_pid
        await other.close()
    finally:
        await rc.close()


async def test_publication_naming_missing_table(pg_dsn):
    _sql(pg_dsn, "CREATE TABLE orders (id int primary key)")
    w = ReplicationWorker(pg_dsn, NullSink(), tables=["orders", "public.no_such_table"], slot="s_missing")
    with pytest.raises(TableNotFound) as e:
        await w.run()
    assert e.value.tables == ["public.no_such_table"]
    assert "no_such_table" in e.value.message and "nuvem_realtime" in e.value.message
    assert "--tables" in e.value.hint
    with psycopg.connect(pg_dsn) as conn:  # nothing was created on the way
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_missing'"
                            ).fetchone()[0] == 0


@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
async def test_replica_identity_without_old_values_is_a_warning(pg_dsn, plugin):
    _sql(pg_dsn, "CREATE TABLE keyed (id int primary key)", "CREATE TABLE nokey (v text)",
         "CREATE TABLE nothing_ri (id int primary key)", "ALTER TABLE nothing_ri REPLICA IDENTITY NOTHING",
         "CREATE TABLE full_ri (v text)", "ALTER TABLE full_ri REPLICA IDENTITY FULL")
    w = ReplicationWorker(pg_dsn, NullSink(), plugin=plugin, slot=f"ri_{plugin}", publication="ri")
    await w.prepare()  # not fatal
    got = {(x.table, x.replica_identity) for x in w.warnings}
    assert got == {("public.nokey", "default"), ("public.nothing_ri", "nothing")}
    text = {x.table: str(x) for x in w.warnings}
    assert "no primary key" in text["public.nokey"] and "REPLICA IDENTITY FULL" in text["public.nokey"]
    assert "no old values" in text["public.nothing_ri"]


@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
async def test_wal2json_warns_at_start_that_it_drops_update_delete_of_tables_without_identity(pg_dsn, plugin):
    from structlog.testing import capture_logs

    _sql(pg_dsn, "CREATE TABLE keyed (id int primary key)", "CREATE TABLE nokey (v text)",
         "CREATE TABLE nothing_ri (id int primary key)", "ALTER TABLE nothing_ri REPLICA IDENTITY NOTHING")
    w = ReplicationWorker(pg_dsn, NullSink(), plugin=plugin, slot=f"drop_{plugin}", publication="drop")
    with capture_logs() as logs:
        await w.prepare()
    dropped = {e["table"]: e for e in logs if e["event"] == "wal2json_drops_update_delete"}
    if plugin == "pgoutput":  # Postgres itself refuses such UPDATE/DELETE: no silent drop to warn of
        assert dropped == {}
        return
    assert set(dropped) == {"public.nokey", "public.nothing_ri"}
    for table, e in dropped.items():
        assert e["log_level"] == "warning"
        assert f"UPDATE and DELETE on {table} are not streamed at all" in e["message"]
        assert "REPLICA IDENTITY FULL" in e["hint"]


async def test_plugin_not_installed(pg_dsn):
    rc = await ReplicationConnection.connect(pg_dsn)
    try:
        with pytest.raises(PluginNotInstalled) as e:
            await rc.create_slot("s_plugin", "no_such_plugin")
    finally:
        await rc.close()
    assert "'no_such_plugin' is not installed" in e.value.message
    assert "apt-get install" in e.value.hint and "pgoutput" in e.value.hint


async def test_publication_missing_and_not_allowed_to_create(pg_dsn):
    w = ReplicationWorker(pg_dsn, NullSink(), publication="absent", create_publication=False, slot="s_abs")
    with pytest.raises(PublicationNotFound) as e:
        await w.run()
    assert "'absent' does not exist" in e.value.message and "CREATE PUBLICATION absent" in e.value.hint


async def test_for_all_tables_needs_superuser(pg_dsn):
    role = _role(pg_dsn, replication=True)
    w = ReplicationWorker(_as_user(pg_dsn, role), NullSink(), slot="s_perm")
    with pytest.raises(PublicationPermissionDenied) as e:
        await w.run()
    assert "nuvem_realtime" in e.value.message and "--plugin wal2json" in e.value.hint


async def test_existing_slot_with_other_plugin(pg_dsn):
    _sql(pg_dsn, "SELECT pg_create_logical_replication_slot('s_w2j', 'wal2json')")
    with pytest.raises(SlotPluginMismatch) as e:
        await ReplicationWorker(pg_dsn, NullSink(), slot="s_w2j").run()
    assert "wal2json plugin, not pgoutput" in e.value.message and "--plugin wal2json" in e.value.hint


@pytest.mark.parametrize("kwargs,needle", [
    ({"slot": "Bad-Name"}, "invalid replication slot name 'Bad-Name'"),
    ({"plugin": "test_decoding"}, "unknown output plugin 'test_decoding'"),
    ({"status_interval": 0}, "must be > 0"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(InvalidArgument, match=needle) as e:
        ReplicationWorker("postgresql://x", NullSink(), **kwargs)
    assert e.value.fault == "client" and e.value.hint
