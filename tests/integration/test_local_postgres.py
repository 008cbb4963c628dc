import psycopg


def test_throwaway_cluster_is_logical_and_isolated(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        conn.execute("CREATE TABLE t (id int primary key)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_embedded_cluster_under_a_private_folder_survives_restart(tmp_path):
    """As root the server runs unprivileged; a data dir below a mode-700 folder must still work."""
    import os
    import shutil

    from cdc.local_postgres import LocalPostgres

    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    data = private / ".nuvem" / "pgdata"
    pg = LocalPostgres(data_dir=data, keep=True).start()
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        pg.stop()
        pg = LocalPostgres(data_dir=data, keep=True).start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone()[0] == "still here"
    finally:
        pg.stop()
        real = os.path.realpath(data)
        if real != str(data):
            shutil.rmtree(os.path.dirname(real), ignore_errors=True)
