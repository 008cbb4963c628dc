import psycopg


def test_throwaway_cluster_is_logical_and_isolated(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        conn.execute("CREATE TABLE t (id int primary key)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
