"""Change data capture: Postgres logical replication (pgoutput or wal2json) into change events."""
